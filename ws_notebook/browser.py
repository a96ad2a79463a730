"""A WebSocket client that runs in the notebook page itself, for trying endpoints from a browser.

The page may reach the kernel's port directly (a local Jupyter) or only through
jupyter-server-proxy (JupyterHub, Binder: ``{base_url}proxy/{port}/...`` on the page's own host,
``wss:`` when the page is ``https:``). The widget works out which from the page: it asks the
proxy path for the server's ``GET /websockets`` listing first and falls back to the direct URL.

A page on JupyterHub or Binder is not on loopback, so the server lets it in only with its page
token (see ``ws_notebook.access``). The widget asks the kernel for it over the widget's comm
each time it is displayed: it is never a widget trait, so it is never saved in the notebook.
"""

from __future__ import annotations

import html
from typing import Any

import anywidget
import traitlets

from . import api
from .server import SERVICE_PATH, ServerError

__all__ = ["KERNEL_WATCH_JS", "STATIC_NOTE", "BrowserClient", "with_static_html"]

STATIC_NOTE = (
    "A static snapshot, taken when this widget was displayed (the live widget needs the kernel, "
    "or the widget state saved with the notebook). Run the cell to see it live."
)


def with_static_html(bundle: Any, snapshot: str) -> Any:
    """A widget's display bundle with a ``text/html`` snapshot beside its widget view.

    A front end without the widget manager (a notebook viewer, an exported page), and
    JupyterLab or Notebook 7 showing an untrusted notebook (the widget renderer is not "safe",
    so a safe one wins), show the snapshot instead of the widget's ``text/plain`` repr or an
    error. A trusted notebook always shows the widget view (the widget renderer ranks first),
    which needs the widget state saved in the notebook (see ``keepInSavedNotebook``).
    """
    data, metadata = bundle if isinstance(bundle, tuple) else (bundle, None)
    data = {**data, "text/html": f'<div class="ws-notebook-snapshot">{snapshot}</div>'}
    return data if metadata is None else (data, metadata)


# Shared with the live panel: a widget's view outlives its kernel, so it must notice; and a saved
# notebook must keep what the widget showed.
KERNEL_WATCH_JS = r"""
const KERNEL_GONE = ["starting", "restarting", "autorestarting", "dead"];
const STATE_MIME = "application/vnd.jupyter.widget-state+json";
const VIEW_MIME = "application/vnd.jupyter.widget-view+json";
const OURS = ["ws-notebook-panel", "ws-notebook-browser-client"];  // our widgets' DOM classes

// Calls gone(why) once the page's kernel is gone: "saved" for a view restored from the widget
// state saved in the notebook, with no kernel behind it (ipywidgets marks it disconnected),
// "restarted" when the kernel restarts or dies. ipywidgets marks every model's comm dead when the
// page restarts the kernel; a restart from elsewhere (the REST API, another tab) shows only as
// the kernel's status, which JupyterLab's widget manager lets us watch.
function watchKernel(model, el, gone) {
  keepInSavedNotebook(model);
  let done = false;
  const once = (why) => { if (!done) { done = true; gone(why); } };
  if (el.classList.contains("jupyter-widgets-disconnected")) once("saved");
  model.on("comm_live_update", () => once("restarted"));
  const kernel = model.widget_manager && model.widget_manager.kernel;
  const changed = (_, status) => { if (KERNEL_GONE.includes(status)) once("restarted"); };
  if (kernel && kernel.statusChanged) kernel.statusChanged.connect(changed);
  return () => { if (kernel && kernel.statusChanged) kernel.statusChanged.disconnect(changed); };
}

// With default settings JupyterLab and Notebook 7 save no widget state with the notebook, so
// once reopened every widget output says "Error displaying widget: model not found". When the
// page saves the notebook, write the state of this package's widgets that its outputs show (and
// of the widgets they hold) into the notebook's widget metadata, which the widget manager loads
// when the notebook is opened again: they then show their last state. Other widgets' saved
// state is left as it is (Settings > Save Widget State Automatically saves theirs too). The hook
// uses ipywidgets 8's document context (`_context`, JupyterLab 4 and Notebook 7); elsewhere it
// does nothing.
function keepInSavedNotebook(model) {
  const manager = model.widget_manager;
  const context = manager && manager._context;
  if (!context || !context.saveState || !context.model || !manager.get_state_sync) return;
  const hooked = (window.wsnbSaveHooks = window.wsnbSaveHooks || new WeakSet());
  if (hooked.has(context)) return;  // one hook per notebook, whichever widget's code came first
  hooked.add(context);
  context.saveState.connect((_, state) => {
    if (state !== "started") return;  // the metadata is written into the file after this
    try { saveOurState(manager, context.model); }
    catch (error) { console.error("ws_notebook: widget state not saved", error); }
  });
}

function ours(entry) {
  const classes = (entry && entry.state && entry.state._dom_classes) || [];
  return OURS.some((name) => classes.includes(name));
}

// The entries of `state` reachable from `roots` through "IPY_MODEL_<id>" references.
function reachable(state, roots) {
  const found = {}, todo = [...roots];
  while (todo.length) {
    const id = todo.pop();
    if (found[id] || !state[id]) continue;
    found[id] = state[id];
    JSON.stringify(state[id].state, (_, value) => {
      if (typeof value === "string" && value.startsWith("IPY_MODEL_")) todo.push(value.slice(10));
      return value;
    });
  }
  return found;
}

function saveOurState(manager, notebook) {
  const live = manager.get_state_sync({ drop_defaults: true });
  const shown = [];
  for (const cell of notebook.toJSON().cells) {
    for (const output of cell.outputs || []) {
      const view = output.data && output.data[VIEW_MIME];
      if (view && view.model_id) shown.push(view.model_id);
    }
  }
  const fresh = reachable(live.state, shown.filter((id) => ours(live.state[id])));
  const get = (key) => notebook.getMetadata ? notebook.getMetadata(key) : notebook.metadata.get(key);
  const saved = ((get("widgets") || {})[STATE_MIME] || {}).state || {};
  const stale = reachable(saved, Object.keys(saved).filter((id) => ours(saved[id])));
  if (!Object.keys(fresh).length && !Object.keys(stale).length) return;
  const state = {};
  for (const [id, entry] of Object.entries(saved)) if (!stale[id]) state[id] = entry;
  Object.assign(state, fresh);
  const widgets = { [STATE_MIME]: {
    version_major: live.version_major, version_minor: live.version_minor, state } };
  if (notebook.setMetadata) notebook.setMetadata("widgets", widgets);
  else notebook.metadata.set("widgets", widgets);
}
"""

_ESM = (
    KERNEL_WATCH_JS
    + r"""
const LOOPBACK = ["127.0.0.1", "localhost", "[::1]", "::1"];

function jupyterBaseUrl() {
  const config = document.getElementById("jupyter-config-data");
  try { return JSON.parse(config.textContent).baseUrl || "/"; } catch (e) { return "/"; }
}

// The server's page token, asked of the kernel over the widget's comm (never saved state).
function askToken(model) {
  return new Promise((resolve) => {
    const answer = (message) => {
      if (message && message.kind === "token") {
        model.off("msg:custom", answer);
        resolve(message.token);
      }
    };
    model.on("msg:custom", answer);
    model.send({ kind: "token?" });
  });
}

// Which URL reaches the kernel's server from this page: through Jupyter's proxy if it answers,
// else straight to host:port (a local Jupyter, where the page is on loopback too).
async function endpointUrl(model, token) {
  const port = model.get("port"), mode = model.get("mode");
  const path = `${model.get("path")}?token=${encodeURIComponent(token)}`;
  const page = window.location;
  const proxied = `${page.protocol === "https:" ? "wss:" : "ws:"}//${page.host}` +
                  `${jupyterBaseUrl()}proxy/${port}${path}`;
  const direct = `${model.get("scheme")}://${model.get("host")}:${port}${path}`;
  if (mode === "direct") return direct;
  if (mode === "proxy") return proxied;
  try {
    const listing = proxied.replace(/^ws/, "http").replace(/\/service\/[^/?]+/, "");
    const answer = await fetch(listing, { credentials: "same-origin" });
    if (answer.ok) return proxied;
  } catch (e) { /* no proxy here */ }
  return direct;
}

function render({ model, el }) {
  el.classList.add("ws-notebook-browser-client");
  el.innerHTML = `
    <div class="wsnb-status">connecting…</div>
    <div class="wsnb-note" style="display: none; color: #664d03; background: #fff3cd"></div>
    <div><input class="wsnb-input" placeholder="message" style="width: 60%">
    <button class="wsnb-send">Send</button> <button class="wsnb-close">Close</button>
    <button class="wsnb-reconnect" style="display: none">Reconnect</button></div>
    <ol class="wsnb-messages" style="font-family: monospace; max-height: 16em; overflow: auto"></ol>`;
  const status = el.querySelector(".wsnb-status");
  const note = el.querySelector(".wsnb-note");
  const input = el.querySelector(".wsnb-input");
  const list = el.querySelector(".wsnb-messages");
  const reconnect = el.querySelector(".wsnb-reconnect");
  let socket = null, url = "", removed = false, kernelGone = false, current = "not connected";

  function show(text, kind) {
    const item = document.createElement("li");
    item.className = `wsnb-${kind}`;
    item.textContent = text;
    list.appendChild(item);
    while (list.children.length > model.get("max_messages")) list.removeChild(list.firstChild);
    list.scrollTop = list.scrollHeight;
  }
  function explain(text) {
    note.textContent = text;
    note.style.display = text ? "" : "none";
  }
  function report(state) {
    const shown = url.replace(/token=[^&]+/, "token=***");  // never display the token
    current = state;
    status.textContent = `${state}: ${shown}`;
    model.set("state", state);
    model.set("url", shown);
    model.save_changes();
  }
  function send() {
    if (!input.value) return;
    if (!socket || socket.readyState !== WebSocket.OPEN) {  // say so: never drop it silently
      show(`not sent (${current}): ${input.value}`, "error");
      return;
    }
    socket.send(input.value);
    show(`→ ${input.value}`, "sent");
    model.set("sent", model.get("sent") + 1);
    model.save_changes();
    input.value = "";
  }
  function connect() {
    if (removed || !url) return;
    reconnect.style.display = "none";
    explain(kernelGone ? "the kernel restarted: this works only if the endpoint's cell " +
                         "ran again on the same port" : "");
    socket = new WebSocket(url);
    socket.binaryType = "arraybuffer";
    socket.onopen = () => { report("open"); explain(""); };
    socket.onmessage = (event) => {
      const text = typeof event.data === "string" ? event.data
        : `<${event.data.byteLength} bytes>`;
      show(`← ${text}`, "received");
      model.set("received", model.get("received") + 1);
      model.set("last_message", text);
      model.save_changes();
    };
    socket.onclose = (event) => {
      if (removed) return;
      report(`closed (${event.code}${event.reason ? " " + event.reason : ""})`);
      reconnect.style.display = "";
      if (kernelGone) {
        explain("the kernel restarted, so this endpoint is gone: run its %%websocket cell " +
                "and this cell again (or Reconnect once the endpoint serves again)");
      } else if (event.code === 1006) {
        explain("the connection failed or dropped: is the endpoint mounted and the server " +
                "running (%websocket list)? Reconnect to try again");
      }
    };
  }

  const unwatch = watchKernel(model, el, (why) => {
    kernelGone = true;
    if (!socket) status.textContent = "not connected";
    explain(why === "saved"
      ? "no kernel behind this saved client: run its cells again to connect"
      : "the kernel restarted: this client's endpoint is gone until its cell runs again");
  });
  const noAnswer = setTimeout(() => kernelGone || explain(
    "no answer from the kernel (busy, or not running: a saved notebook has no kernel " +
    "behind it): run this cell again to connect"), 10000);
  askToken(model).then((token) => endpointUrl(model, token)).then((found) => {
    clearTimeout(noAnswer);
    url = found;
    connect();
  });
  el.querySelector(".wsnb-send").onclick = send;
  el.querySelector(".wsnb-close").onclick = () => socket && socket.close(1000, "closed by user");
  reconnect.onclick = connect;
  input.onkeydown = (event) => { if (event.key === "Enter") send(); };
  // Browsers only let a page close with 1000 or 3000-4999.
  return () => {
    removed = true;
    clearTimeout(noAnswer);
    unwatch();
    if (socket) socket.close(1000, "view removed");
  };
}
export default { render };
"""
)


class BrowserClient(anywidget.AnyWidget):
    """A ``WebSocket`` opened by the page to an endpoint, with a send box and received messages.

    A view outlives its socket and its kernel: when the socket closes it offers Reconnect, says
    why when the kernel restarted or is missing (a reopened notebook), and a message it cannot
    send is shown as not sent, never dropped silently.

    ``state``, ``url``, ``sent``, ``received`` and ``last_message`` are reported back by the page,
    so a notebook (or a test) can see what the browser saw.
    """

    _esm = _ESM
    endpoint = traitlets.Unicode().tag(sync=True)
    host = traitlets.Unicode().tag(sync=True)
    port = traitlets.Int().tag(sync=True)
    path = traitlets.Unicode().tag(sync=True)
    scheme = traitlets.Unicode("ws").tag(sync=True)
    mode = traitlets.Enum(["auto", "direct", "proxy"], default_value="auto").tag(sync=True)
    max_messages = traitlets.Int(200).tag(sync=True)
    state = traitlets.Unicode("connecting").tag(sync=True)
    url = traitlets.Unicode().tag(sync=True)
    sent = traitlets.Int(0).tag(sync=True)
    received = traitlets.Int(0).tag(sync=True)
    last_message = traitlets.Unicode().tag(sync=True)

    def __init__(self, endpoint: str, mode: str = "auto", **kwargs: object) -> None:
        server = api.default_server()
        server.registry.get(endpoint)  # an unknown name is an error now, not in the page
        if not server.running:
            raise ServerError("the server is stopped: %websocket start (or ws_notebook.start())")
        host = "127.0.0.1" if server.host in ("", "0.0.0.0", "::") else server.host
        super().__init__(
            endpoint=endpoint,
            host=host,
            port=server.port,
            path=f"{SERVICE_PATH}{endpoint}",
            scheme=server.scheme,
            mode=mode,
            **kwargs,
        )
        self.add_class("ws-notebook-browser-client")  # the page saves our widgets' state by it
        self.on_msg(self._answer)

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        url = f"{self.scheme}://{self.host}:{self.port}{self.path}"
        snapshot = (
            f"<b>browser client</b> of endpoint <b>{html.escape(self.endpoint)}</b> "
            f"<code>{html.escape(url)}</code><br><small>{html.escape(STATIC_NOTE)}</small>"
        )
        return with_static_html(super()._repr_mimebundle_(**kwargs), snapshot)

    def _answer(self, _: object, content: object, buffers: object) -> None:
        """The page asks for the token when it displays the widget: send it over the comm."""
        if isinstance(content, dict) and content.get("kind") == "token?":
            self.send({"kind": "token", "token": api.default_server().page_token})
