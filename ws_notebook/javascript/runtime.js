/*
 * ws_notebook's JavaScript runtime: evaluated once in each V8 context, before the handler
 * module and the modules it imports (see ws_notebook/javascript/__init__.py).
 *
 * It gives handlers what the codbex platform gives them: require() / import of "sdk/net"
 * (Dirigible 4: "net/v4/websockets") with the websockets API (the client registry and the
 * event context), and a console. JavaScript here cannot call Python while it runs: the live
 * clients come in with each event, and what a handler does (console output, sends, closes)
 * is collected as "actions" and carried out by Python, in order, when the call returns.
 *
 * Python calls:
 *   __ws_define(path, resolved, esm, factory, json)  a module: its wrapped code, or JSON
 *   __ws_load(path)           run the handler module; say what it exports
 *   __ws_b()                  events, in order, and what they came to (see __ws_b)
 *   __ws_drain()              what is left after async work or a stop
 */
(function (global) {
  "use strict";

  const METHODS = ["onopen", "onmessage", "onerror", "onclose"];
  const HANDLER_NAMES = [
    ["onOpen", "on_open"],
    ["onMessage", "on_message"],
    ["onError", "on_error"],
    ["onClose", "on_close"],
  ];

  const definitions = new Map(); // path -> { factory, resolved, json }
  const modules = new Map(); // path -> module object, once it started loading
  let actions = []; // what handlers did, for Python: [kind, ...]
  let event = null; // the event being handled: { method, message, error }
  let clients = null; // the live clients for this event: [[id, uri, handler, endpoint], ...]
  let handlers = [null, null, null, null];
  let self = undefined; // `this` for handler calls: the handler module's exports

  // --- stack traces: keep the frames of every error whose stack is read -------------------
  const framesOf = new WeakMap();
  Error.prepareStackTrace = function (error, sites) {
    const frames = [];
    for (const site of sites) {
      frames.push([
        site.getScriptNameOrSourceURL() || site.getFileName() || "",
        site.getLineNumber() || 0,
        site.getColumnNumber() || 0,
        site.getFunctionName() || "",
      ]);
    }
    try {
      framesOf.set(error, frames);
    } catch (ignored) {
      // not an object: nothing to keep
    }
    let head;
    try {
      head = String(error);
    } catch (ignored) {
      head = "Error";
    }
    return head + sites.map((site) => "\n    at " + site).join("");
  };

  function text(value) {
    try {
      return String(value);
    } catch (ignored) {
      return Object.prototype.toString.call(value);
    }
  }

  // An error as Python reports it: its text ("TypeError: ..."), stack, and frames.
  function describe(error) {
    if (error !== null && typeof error === "object" && "stack" in error) {
      const stack = text(error.stack);
      return [text(error), stack, framesOf.get(error) || []];
    }
    if (error !== null && typeof error === "object") {
      let shown;
      try {
        shown = JSON.stringify(error);
      } catch (ignored) {
        shown = undefined;
      }
      return [shown === undefined ? text(error) : shown, "", []];
    }
    return [text(error), "", []];
  }

  // --- base64, for binary messages ----------------------------------------------------------
  const ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  const INDEX = new Uint8Array(128);
  for (let i = 0; i < ALPHABET.length; i++) INDEX[ALPHABET.charCodeAt(i)] = i;

  function toBase64(bytes) {
    let out = "";
    let i = 0;
    for (; i + 2 < bytes.length; i += 3) {
      const n = (bytes[i] << 16) | (bytes[i + 1] << 8) | bytes[i + 2];
      out += ALPHABET[n >> 18] + ALPHABET[(n >> 12) & 63] + ALPHABET[(n >> 6) & 63] + ALPHABET[n & 63];
    }
    if (i < bytes.length) {
      const rest = bytes.length - i;
      const n = (bytes[i] << 16) | (rest > 1 ? bytes[i + 1] << 8 : 0);
      out += ALPHABET[n >> 18] + ALPHABET[(n >> 12) & 63];
      out += rest > 1 ? ALPHABET[(n >> 6) & 63] + "=" : "==";
    }
    return out;
  }

  function fromBase64(data) {
    const clean = data.replace(/=+$/, "");
    const bytes = new Uint8Array(Math.floor((clean.length * 3) / 4));
    let j = 0;
    for (let i = 0; i < clean.length; i += 4) {
      const n =
        (INDEX[clean.charCodeAt(i)] << 18) |
        (INDEX[clean.charCodeAt(i + 1)] << 12) |
        ((i + 2 < clean.length ? INDEX[clean.charCodeAt(i + 2)] : 0) << 6) |
        (i + 3 < clean.length ? INDEX[clean.charCodeAt(i + 3)] : 0);
      bytes[j++] = n >> 16;
      if (i + 2 < clean.length) bytes[j++] = (n >> 8) & 255;
      if (i + 3 < clean.length) bytes[j++] = n & 255;
    }
    return bytes;
  }

  function binaryOf(value) {
    if (value instanceof ArrayBuffer) return new Uint8Array(value);
    if (ArrayBuffer.isView(value)) {
      return new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
    }
    return null;
  }

  // A value to send: [1, text] for a text frame, [2, base64] for binary, null for nothing.
  function outgoing(value) {
    if (value === undefined || value === null) return null;
    if (typeof value === "string") return [1, value];
    const bytes = binaryOf(value);
    if (bytes !== null) return [2, toBase64(bytes)];
    if (typeof value === "object") {
      const json = JSON.stringify(value);
      return json === undefined ? null : [1, json];
    }
    return [1, text(value)];
  }

  // --- console --------------------------------------------------------------------------------
  function show(value) {
    if (typeof value === "string") return value;
    if (value instanceof Error) return text(value.stack || value);
    if (value !== null && typeof value === "object") {
      try {
        const json = JSON.stringify(value);
        if (json !== undefined) return json;
      } catch (ignored) {
        // cyclic, or a BigInt inside: fall back to its string form
      }
    }
    return text(value);
  }

  function writer(stream) {
    return function (...values) {
      actions.push(["o", stream, values.map(show).join(" ")]);
    };
  }

  const console = {
    log: writer(1),
    info: writer(1),
    debug: writer(1),
    warn: writer(2),
    error: writer(2),
    trace: function (...values) {
      const stack = text(new Error("").stack).split("\n").slice(2).join("\n");
      actions.push(["o", 2, ["Trace:", ...values.map(show)].join(" ") + "\n" + stack]);
    },
  };
  global.console = console;

  // --- sdk/net websockets -----------------------------------------------------------------------
  class WebsocketClient {
    constructor(id, uri, handler, endpoint) {
      this.id = id;
      this.uri = uri;
      this.handler = handler;
      this.endpoint = endpoint;
    }
    getId() {
      return this.id;
    }
    getUri() {
      return this.uri;
    }
    getHandler() {
      return this.handler;
    }
    send(message) {
      const frame = outgoing(message);
      if (frame !== null) actions.push(["s", this.id, frame[0], frame[1]]);
    }
    close() {
      actions.push(["c", this.id]);
    }
  }

  let created = 0; // outbound connections this context opened: their names end with the count

  function live(name) {
    if (clients === null) {
      if (event === null) return []; // while the module loads: no event, no clients yet
      throw new Error(
        "websockets." + name + "(): the client list was not passed to this module " +
          "(ws_notebook passes it to modules whose source mentions getClient)"
      );
    }
    return clients;
  }

  function client(entry) {
    return new WebsocketClient(entry[0], entry[1], entry[2], entry[3]);
  }

  function withoutExtension(handler) {
    const slash = handler.lastIndexOf("/");
    const dot = handler.lastIndexOf(".");
    return dot > slash ? handler.slice(0, dot) : handler;
  }

  const websockets = {
    getClients() {
      return live("getClients").map(client);
    },
    getClient(id) {
      const entry = live("getClient").find((item) => item[0] === String(id));
      return entry === undefined ? null : client(entry);
    },
    getClientByHandler(handler) {
      const wanted = withoutExtension(String(handler).replace(/^\/+/, ""));
      const entry = live("getClientByHandler").find(
        (item) => withoutExtension(item[2].replace(/^\/+/, "")) === wanted
      );
      return entry === undefined ? null : client(entry);
    },
    getMessage() {
      return event === null ? undefined : event.message;
    },
    getError() {
      return event === null ? undefined : event.error;
    },
    getMethod() {
      return event === null ? undefined : event.method;
    },
    isOnOpen() {
      return event !== null && event.method === "onopen";
    },
    isOnMessage() {
      return event !== null && event.method === "onmessage";
    },
    isOnError() {
      return event !== null && event.method === "onerror";
    },
    isOnClose() {
      return event !== null && event.method === "onclose";
    },
    // An outbound connection (ws_notebook.outbound) whose events the handler module (a path
    // in the workspace, as a descriptor's handler) handles. It opens once this event's handler
    // returns; what is sent meanwhile goes out once it is open. The client returned is named
    // for the connection: its id is the connection's name in ws_notebook's list.
    createWebsocket(uri, handler) {
      if (handler === undefined || handler === null || String(handler) === "") {
        throw new Error(
          "websockets.createWebsocket(uri, handler): the handler module is missing (a path " +
            "such as my-project/client-handler.js)"
        );
      }
      const module = String(handler);
      const last = withoutExtension(module.replace(/\/+$/, "")).split("/").pop();
      created += 1;
      const name = ((last.replace(/[^A-Za-z0-9._-]+/g, "-") || "outbound") + "-" + created).slice(-128);
      actions.push(["w", String(uri), module, name]);
      return new WebsocketClient(name, String(uri), module, name);
    },
  };

  // sdk/net: reading a member it does not have is an error naming it, not a silent undefined.
  const net = new Proxy(Object.freeze({ websockets: websockets }), {
    get(target, name) {
      if (name in target || typeof name === "symbol" || name === "then" || name === "__esModule") {
        return target[name];
      }
      throw new Error(
        "sdk/net has no " + JSON.stringify(name) + " here: ws_notebook provides only websockets"
      );
    },
  });

  const BUILTINS = new Map([
    ["sdk/net", net],
    ["sdk/net/websockets", websockets],
    ["net/v4/websockets", websockets],
  ]);

  // --- modules --------------------------------------------------------------------------------
  function requireFrom(path, resolved) {
    return function require(specifier) {
      const name = String(specifier);
      if (BUILTINS.has(name)) return BUILTINS.get(name);
      if (Object.prototype.hasOwnProperty.call(resolved, name)) return load(resolved[name]);
      throw new Error(
        "Cannot find module " + JSON.stringify(name) + " from " + path + " (handlers can " +
          "require sdk/net and, by a string literal, modules beside them such as ./util.js)"
      );
    };
  }

  function load(path) {
    if (modules.has(path)) return modules.get(path).exports; // loaded, or loading (a cycle)
    const definition = definitions.get(path);
    const module = { id: path, filename: path, exports: {}, loaded: false };
    modules.set(path, module);
    if (definition.json !== undefined) {
      module.exports = JSON.parse(definition.json);
    } else {
      const slash = path.lastIndexOf("/");
      const folder = slash >= 0 ? path.slice(0, slash) : ".";
      if (definition.esm) {
        Object.defineProperty(module.exports, "__esModule", { value: true });
      }
      const require = requireFrom(path, definition.resolved);
      definition.factory.call(
        module.exports, module.exports, require, module, path, folder, module.exports
      );
    }
    module.loaded = true;
    return module.exports;
  }

  global.__ws_define = function (path, resolved, esm, factory, json) {
    definitions.set(path, { resolved: resolved, esm: esm, factory: factory, json: json });
  };

  // Run the handler module; returns JSON: [found event indexes, problems, exported functions]
  // or, when it threw, [null, error].
  global.__ws_load = function (path) {
    let exported;
    try {
      exported = load(path);
    } catch (error) {
      actions.length = 0;
      return JSON.stringify([null, describe(error)]);
    }
    let source = exported;
    const has = (object) => HANDLER_NAMES.some((names) => names.some((n) => n in object));
    if (
      exported !== null && typeof exported === "object" && !has(exported) &&
      exported.default !== null && typeof exported.default === "object" && has(exported.default)
    ) {
      source = exported.default; // export default { onMessage(message) {...} }
    }
    const found = [];
    const problems = [];
    if (source !== null && (typeof source === "object" || typeof source === "function")) {
      HANDLER_NAMES.forEach((names, index) => {
        const [codbex, python] = names;
        if (codbex in source && python in source) {
          problems.push("both " + codbex + " and " + python + " are exported; keep one of them");
          return;
        }
        const name = codbex in source ? codbex : python in source ? python : null;
        if (name === null) return;
        if (typeof source[name] !== "function") {
          problems.push(name + " is " + typeof source[name] + ", not a function");
          return;
        }
        handlers[index] = source[name];
        found.push(index);
      });
    }
    self = source;
    const functions = [];
    if (source !== null && typeof source === "object") {
      for (const key of Object.keys(source)) {
        if (typeof source[key] === "function") functions.push(key);
      }
    }
    return JSON.stringify([found, problems, functions, actions.splice(0)]);
  };

  // One event. code: the handler's index (0 open, 1 message, 2 error, 3 close), plus 4 when
  // data is base64 of a binary message. Returns [reply, actions, error, pending]: reply as
  // outgoing() gives it, error as describe() gives it, pending 1 when the handler returned a
  // promise (its reactions run when the script ends: see __ws_drain).
  function dispatch(code, from, data) {
    const index = code & 3;
    const value = code & 4 ? fromBase64(data) : data;
    event = {
      method: METHODS[index],
      message: index === 1 ? value : undefined,
      error: index === 2 ? value : undefined,
    };
    let reply = null;
    let error = null;
    let pending = 0;
    try {
      const handler = handlers[index];
      const result = index === 1 || index === 2
        ? handler.call(self, value, from)
        : handler.call(self, from);
      if (result !== null && typeof result === "object" && typeof result.then === "function") {
        pending = 1;
        Promise.resolve(result).then(
          (settled) => {
            if (index !== 1) return;
            const frame = outgoing(settled);
            if (frame !== null) actions.push(["s", from, frame[0], frame[1]]);
          },
          (failure) => {
            actions.push(["e", from, describe(failure)]);
          }
        );
      } else if (index === 1) {
        reply = outgoing(result);
      }
    } catch (failure) {
      error = describe(failure);
    }
    event = null;
    return [reply, actions.splice(0), error, pending];
  }

  let batch = null; // the results of the events run so far by the running __ws_b call

  // Only a text reply: the result as the text itself (what most events come to).
  function compact(result) {
    const [reply, did, error, pending] = result;
    const plain = reply !== null && reply[0] === 1 && did.length === 0 && error === null;
    return plain && !pending ? reply[1] : result;
  }

  // Events in order. `this` (a string: what Python passes a function with the least work) is
  // a line of JSON, [[[code, from, length], ...], clients], then the events' data one after
  // the other, each `length` UTF-16 units long (-1: no data), so that a message is copied but
  // never escaped; clients are the live clients (null when the module does not ask for them)
  // for all of them. Stops after an event whose handler threw (Python reports it, runs
  // onError, then sends the rest again) and after BUDGET ms, so that the time limit stays one
  // of a call, not of a batch. Returns JSON: the results of the events run, as dispatch()
  // gives them, compact(); or, when the one event only replied a text, "=" and the text.
  const BUDGET = 50;
  global.__ws_b = function () {
    const input = this;
    const header = input.indexOf("\n");
    const [events, live] = JSON.parse(input.slice(0, header));
    clients = live;
    batch = [];
    const started = Date.now();
    let at = header + 1;
    for (let i = 0; i < events.length; i++) {
      const [code, from, length] = events[i];
      const data = length < 0 ? null : input.slice(at, (at += length));
      const result = dispatch(code, from, data);
      batch.push(result);
      if (result[2] !== null || Date.now() - started > BUDGET) break;
    }
    const done = batch.map(compact);
    batch = null;
    clients = null;
    if (done.length === 1 && typeof done[0] === "string") return "=" + done[0];
    return JSON.stringify(done);
  };

  // After a call was stopped (time or memory limit): [results of the events it finished,
  // the actions of the one it stopped]. After a batch with promises: [[], what their
  // reactions did]. Either way the state of the call is reset.
  global.__ws_drain = function () {
    const done = batch || [];
    batch = null;
    event = null;
    clients = null;
    return JSON.stringify([done, actions.splice(0)]);
  };
})(globalThis);
