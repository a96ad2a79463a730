"""A Redis bus that makes several servers one: ``serve --workers N --broker redis://...`` and
``ws_notebook.start(broker=...)``.

Every server (a *worker*) that joins the same Redis:

- publishes each ``broadcast`` to ``wsn:bc:ENDPOINT`` and delivers those of other workers to its
  own clients of that endpoint (its own publications come back to it and are skipped: each
  payload names the worker that made it);
- receives sends and closes for its clients on ``wsn:w:WORKER`` (``ws_notebook.client(id)`` of
  a client on another worker is a :class:`RemoteClient` whose ``send`` goes there);
- keeps its open clients in the hash ``wsn:clients:WORKER`` (client id to endpoint), which
  expires ``REGISTRY_TTL`` seconds after its last refresh, so a dead worker's clients disappear
  from every count within seconds. Each worker reads the others' hashes every
  ``REFRESH_SECONDS``: a client opened on another worker is seen here within about a second.

One connection publishes, in order, so messages from one sender to one endpoint keep their
order on every receiver. While Redis is unreachable, local delivery goes on; what is published
meanwhile (broadcasts, and sends and closes for clients of other workers) is counted, per
endpoint, and recorded as an ``error`` event of the endpoint's log when the outage starts and
when it ends ("N messages ... were not delivered to other workers"). A send or close that Redis
took but no worker was subscribed to receive (that worker died, or is reconnecting) is recorded
at once. Cross-worker delivery resumes by itself once Redis answers again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import socket
import threading
import time
from typing import TYPE_CHECKING, Any, cast

from . import connection
from .codes import CloseCode
from .connection import ConnectionClosed, Frame, encode
from .errors import Error

if TYPE_CHECKING:
    from redis.typing import EncodableT

    from .endpoint import Endpoint
    from .registry import Registry
    from .server import Server

__all__ = ["BROKER_ENV", "Broker", "RemoteClient"]

logger = logging.getLogger("ws_notebook")

BROKER_ENV = "WS_NOTEBOOK_BROKER"
PREFIX = "wsn:"
REGISTRY_TTL = 5  # seconds a worker's client list lives after its last refresh
REFRESH_SECONDS = 1.0
RETRY_SECONDS = 0.5
BATCH = 1000  # queued publications sent in one pipeline at most


class BrokerError(Error, RuntimeError):
    """redis-py is missing, or the broker URL is not a redis:// URL."""


class RemoteClient:
    """A client connected to another worker: its id and endpoint, ``send`` and ``close``.

    Its counters and address are kept by its own worker; ``handler`` is the endpoint's handler
    as mounted here ("" when this server does not serve that endpoint).
    """

    state = "remote"
    open = True

    def __init__(self, broker: Broker, client_id: str, endpoint: str, worker: str) -> None:
        self._broker = broker
        self.id = client_id
        self.endpoint = endpoint
        self.worker = worker
        self.path = f"/websockets/service/{endpoint}"
        mounted = broker.registry.find(endpoint)
        self.handler = mounted.descriptor.handler if mounted is not None else ""

    def __repr__(self) -> str:
        return f"<RemoteClient {self.id} of {self.endpoint!r} on worker {self.worker}>"

    def send(self, message: Any) -> None:
        """Hand the message to the client's worker (returns None: nothing here to await)."""
        op = {"op": "send", "c": self.id}
        self._broker._queue_op(self.worker, self.endpoint, op, encode(message))

    def close(self, code: int = CloseCode.NORMAL, reason: str = "") -> None:
        op = {"op": "close", "c": self.id, "code": code, "reason": reason}
        self._broker._queue_op(self.worker, self.endpoint, op, None)


def _safe(url: str) -> str:
    """The URL without its password, for logs."""
    scheme, sep, rest = url.partition("://")
    if "@" in rest:
        rest = "***@" + rest.rpartition("@")[2]
    return scheme + sep + rest


def _pack(header: dict[str, Any], frame: Frame | None) -> bytes:
    data = b""
    if frame is not None:
        header["b"] = frame.binary
        message = frame.message
        data = message if isinstance(message, bytes) else message.encode("utf-8")
    return json.dumps(header).encode() + b"\n" + data


def _lost(counts: dict[str, int]) -> str:
    """What an outage lost, in words: "3 messages broadcast here ... and 2 sends ..."."""
    parts = []
    if counts.get("broadcast"):
        parts.append(f"{_many(counts['broadcast'], 'message')} broadcast here during it")
    if counts.get("send"):
        parts.append(f"{_many(counts['send'], 'message')} sent to clients of other workers")
    if counts.get("close"):
        parts.append(f"{_many(counts['close'], 'close')} of clients of other workers")
    return (
        " and ".join(parts) + " were not delivered to other workers (this worker's own clients "
        "got its broadcasts)"
    )


def _many(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def _unpack(payload: bytes) -> tuple[dict[str, Any], str | bytes]:
    head, _, data = payload.partition(b"\n")
    header = json.loads(head)
    return header, data if header.get("b") else data.decode("utf-8")


class Broker:
    """One worker's membership of the bus; ``await start()`` on the server's loop."""

    def __init__(self, url: str, server: Server, name: str | None = None) -> None:
        try:
            import redis.asyncio as aioredis
        except ImportError as error:
            raise BrokerError(
                "a broker needs redis-py: pip install 'ws_notebook[scale]' (or redis>=5)"
            ) from error
        if not url.startswith(("redis://", "rediss://", "unix://")):
            raise BrokerError(f"broker {url!r}: expected redis://HOST:PORT/DB")
        self.url = url
        self.safe_url = _safe(url)
        self.server = server
        self.registry: Registry = server.registry
        self.short = secrets.token_hex(3)  # in channel names and client ids
        self.worker_id = name or f"{socket.gethostname()}:{os.getpid()}:{self.short}"
        options = {
            "socket_connect_timeout": 1,
            "socket_timeout": 2,
            "health_check_interval": 5,
            "client_name": f"ws-notebook:{self.short}",  # which worker, in Redis's CLIENT LIST
        }
        self._redis = aioredis.from_url(url, **options)
        self._sub_redis = aioredis.from_url(url, **options)
        self._queue: asyncio.Queue[tuple[str, Any]] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = 0
        self._tasks: list[asyncio.Task] = []
        self.closed = False
        self.up = False
        self.down_since: float | None = None
        # endpoint: {"broadcast" | "send" | "close": how many} not published during an outage
        self.lost: dict[str, dict[str, int]] = {}
        self.others: dict[str, dict[str, str]] = {}  # worker: {client id: endpoint}

    # --- lifecycle ---------------------------------------------------------------------------

    def attach(self) -> None:
        """Hook into the server's registry (on its loop); publications wait for ``start``."""
        if self._queue is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._thread = threading.get_ident()
        self._queue = asyncio.Queue()
        connection.id_suffix = f".{self.short}"  # client ids unique across workers
        self.registry.bus = self
        for endpoint in self.registry:
            endpoint.bus = self
        self.registry.subscribe(self._heard)

    async def start(self) -> None:
        """Join the bus; an unreachable Redis is logged and retried, local serving goes on."""
        self.attach()
        failure: Exception | None = None
        try:
            await self._redis.ping()
        except Exception as error:  # noqa: BLE001 - any failure to reach Redis is an outage
            failure = error
        if self.closed:  # left (ws_notebook.stop()) while Redis was being reached
            return
        if failure is None:
            self._set_up()
        else:
            self._set_down(failure)
        self._tasks = [
            asyncio.create_task(self._publisher(), name="ws-notebook broker publisher"),
            asyncio.create_task(self._subscriber(), name="ws-notebook broker subscriber"),
            asyncio.create_task(self._refresher(), name="ws-notebook broker registry"),
        ]

    def close(self) -> asyncio.Task | None:
        """Leave the bus from plain code (``ws_notebook.stop()``): detach from the registry at
        once; the task returned stops the bus's tasks, removes this worker's clients from the
        Redis registry and closes the connections (None: the loop is gone; the entries expire
        within ``REGISTRY_TTL`` seconds)."""
        if self.closed:
            return None
        self.closed = True
        self.registry.unsubscribe(self._heard)
        if self.registry.bus is self:
            self.registry.bus = None
            for endpoint in self.registry:
                endpoint.bus = None
            if connection.id_suffix == f".{self.short}":
                connection.id_suffix = ""
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        if self._loop is None or self._loop.is_closed():
            return None
        return self._loop.create_task(self._leave(tasks), name="ws-notebook broker leaving")

    async def aclose(self) -> None:
        """Leave the bus: stop the tasks and remove this worker's clients from the registry."""
        leaving = self.close()
        if leaving is not None:
            await leaving

    async def _leave(self, tasks: list[asyncio.Task]) -> None:
        # redis-py can turn a cancellation that meets its own socket timeout into a
        # TimeoutError it retries: a task still running is cancelled again (the loops also
        # end once they see ``closed``).
        pending = set(tasks)
        for _ in range(10):
            if not pending:
                break
            _done, pending = await asyncio.wait(pending, timeout=0.5)
            for task in pending:
                task.cancel()
        with contextlib.suppress(Exception):
            await self._redis.delete(self._key(self.short))
        for client in (self._redis, self._sub_redis):
            with contextlib.suppress(Exception):
                await client.aclose()

    # --- what the core calls ---------------------------------------------------------------

    def publish(self, endpoint: str, frame: Frame) -> None:
        """A broadcast made here: to every other worker (from any thread)."""
        self._put(("bc", (endpoint, _pack({"o": self.short}, frame))))

    def remote_count(self, endpoint: str | None = None) -> int:
        return sum(
            1
            for clients in self.others.values()
            for name in clients.values()
            if endpoint is None or name == endpoint
        )

    def remote_clients(self, endpoint: str | None = None) -> list[RemoteClient]:
        return [
            RemoteClient(self, client_id, name, worker)
            for worker, clients in self.others.items()
            for client_id, name in clients.items()
            if endpoint is None or name == endpoint
        ]

    def remote_client(self, client_id: str) -> RemoteClient | None:
        for worker, clients in self.others.items():
            if client_id in clients:
                return RemoteClient(self, client_id, clients[client_id], worker)
        return None

    # --- internals -----------------------------------------------------------------------------

    @staticmethod
    def _key(worker: str) -> str:
        return f"{PREFIX}clients:{worker}"

    def _put(self, item: tuple[str, Any]) -> None:
        if self._loop is None or self._queue is None or self.closed:
            return
        if threading.get_ident() == self._thread:
            self._queue.put_nowait(item)
        else:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, item)

    def _queue_op(
        self, worker: str, endpoint: str, header: dict[str, Any], frame: Frame | None
    ) -> None:
        header["o"] = self.short
        self._put(("op", (worker, _pack(header, frame), endpoint, header["op"], header["c"])))

    def _heard(self, endpoint: Endpoint, event: Any) -> None:
        if event.kind == "open":
            self._put(("join", (event.client, endpoint.name)))
        elif event.kind == "close":
            self._put(("leave", event.client))

    def _set_up(self) -> None:
        if self.down_since is not None:
            seconds = time.time() - self.down_since
            for name, counts in self.lost.items():  # before the log line, printed in order
                endpoint = self.registry.find(name)
                if endpoint is not None:
                    endpoint.log.record(
                        "error",
                        "-",
                        detail=f"broker outage of {seconds:.1f} s ended: {_lost(counts)}",
                    )
            self.lost.clear()
            logger.warning(
                "broker %s reachable again after %.1f s: cross-worker delivery resumes",
                self.safe_url,
                seconds,
            )
        self.up = True
        self.down_since = None
        self._put(("rewrite", None))  # our hash, written whole (at start, after an outage)

    def _set_down(self, error: BaseException) -> None:
        if not self.up and self.down_since is not None:
            return
        self.up = False
        self.down_since = time.time()
        text = (
            f"broker {self.safe_url} unreachable ({type(error).__name__}: {error}); serving this "
        )
        text += "worker's clients only until it is back"
        logger.error("%s", text)
        for endpoint in self.registry:
            endpoint.log.record("error", "-", detail=text)

    def _count_lost(self, endpoint: str, kind: str) -> None:
        counts = self.lost.setdefault(endpoint, {})
        counts[kind] = counts.get(kind, 0) + 1

    def _undelivered(self, endpoint: str, kind: str, client_id: str, worker: str) -> None:
        """A send or close Redis took that no worker received: its worker is gone or away."""
        found = self.registry.find(endpoint)
        what = "message" if kind == "send" else "close"
        text = f"{what} for {client_id} lost: its worker {worker} does not listen on the broker"
        logger.warning("%s (%s)", text, endpoint)
        if found is not None:
            found.log.record("error", client_id, detail=text)

    async def _publisher(self) -> None:
        """Publishes (in order) and keeps this worker's entries; counts what an outage loses.

        What queued up meanwhile goes in one pipeline (one round trip, in order): a burst of
        broadcasts does not wait for Redis's answer to each before sending the next.
        """
        assert self._queue is not None
        queue = self._queue
        key = self._key(self.short)
        while not self.closed:
            batch = [await queue.get()]
            while not queue.empty() and len(batch) < BATCH:
                batch.append(queue.get_nowait())
            if not self.up:
                for kind, item in batch:  # registry changes are written whole once Redis is back
                    self._count_if_message(kind, item)
                continue
            commands: list[int] = []  # how many answers each item of the batch gets
            try:
                async with self._redis.pipeline(transaction=False) as pipe:
                    for kind, item in batch:
                        if kind == "bc":
                            pipe.publish(f"{PREFIX}bc:{item[0]}", item[1])
                            commands.append(1)
                        elif kind == "op":
                            pipe.publish(f"{PREFIX}w:{item[0]}", item[1])
                            commands.append(1)
                        elif kind == "join":
                            pipe.hset(key, item[0], item[1])
                            pipe.expire(key, REGISTRY_TTL)
                            commands.append(2)
                        elif kind == "leave":
                            pipe.hdel(key, item)
                            commands.append(1)
                        elif kind == "rewrite":
                            commands.append(self._rewrite(pipe, key))
                    answers = iter(await pipe.execute())
            except asyncio.CancelledError:
                raise
            except Exception as error:  # noqa: BLE001 - the broker is down
                for kind, item in batch:  # not known to have reached Redis: counted as lost
                    self._count_if_message(kind, item)
                self._set_down(error)
                continue
            for (kind, item), count in zip(batch, commands, strict=True):
                received = [next(answers) for _ in range(count)][0]
                if kind == "op" and not received:
                    worker, _payload, endpoint, op, client_id = item
                    self._undelivered(endpoint, op, client_id, worker)

    def _rewrite(self, pipe: Any, key: str) -> int:
        """This worker's hash, whole, in the publisher's pipeline (returns how many commands).

        Taken in order with the joins and leaves: the registry is read as the pipeline is
        built, so every join or leave queued before is in it, and replaying those queued behind
        it changes nothing. (Written from another connection, a join could reach Redis between
        the read and the write and be erased until the next outage.)
        """
        mine: dict[EncodableT, EncodableT] = {c.id: c.endpoint for c in self.registry.clients()}
        pipe.delete(key)
        if mine:
            pipe.hset(key, mapping=mine)
            pipe.expire(key, REGISTRY_TTL)
        return 3 if mine else 1

    def _count_if_message(self, kind: str, item: Any) -> None:
        if kind == "bc":
            self._count_lost(item[0], "broadcast")
        elif kind == "op":
            self._count_lost(item[2], item[3])

    async def _refresher(self) -> None:
        """Keeps this worker's entry alive, reads the others', and notices an outage's end."""
        redis = self._redis
        key = self._key(self.short)
        while not self.closed:
            try:
                if not self.up:
                    await redis.ping()
                    self._set_up()
                await redis.expire(key, REGISTRY_TTL)
                others: dict[str, dict[str, str]] = {}
                # Without decode_responses, Redis answers bytes.
                async for found in redis.scan_iter(match=f"{PREFIX}clients:*", count=500):
                    name = cast(bytes, found).decode().rpartition(":")[2]
                    if name != self.short:
                        entries = cast("dict[bytes, bytes]", await redis.hgetall(found))
                        others[name] = {k.decode(): v.decode() for k, v in entries.items()}
                self.others = others
            except asyncio.CancelledError:
                raise
            except Exception as error:  # noqa: BLE001
                self._set_down(error)
            await asyncio.sleep(REFRESH_SECONDS if self.up else RETRY_SECONDS)

    async def _subscriber(self) -> None:
        """Delivers other workers' broadcasts, and sends and closes for clients here."""
        while not self.closed:
            pubsub = self._sub_redis.pubsub()
            try:
                await pubsub.psubscribe(f"{PREFIX}bc:*")
                await pubsub.subscribe(f"{PREFIX}w:{self.short}")
                while not self.closed:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    if message is not None:
                        self._received(message["channel"].decode(), message["data"])
            except asyncio.CancelledError:
                raise
            except Exception as error:  # noqa: BLE001
                self._set_down(error)
                await asyncio.sleep(RETRY_SECONDS)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()

    def _received(self, channel: str, payload: bytes) -> None:
        try:
            header, message = _unpack(payload)
        except ValueError:
            logger.warning("broker: ignored a message on %s that is not ours", channel)
            return
        if header.get("o") == self.short:  # our own publication, already delivered here
            return
        if channel.startswith(f"{PREFIX}bc:"):
            endpoint = self.registry.find(channel[len(PREFIX) + 3 :])
            if endpoint is not None:
                endpoint.broadcast(message, _relay=False)
            return
        client = self.registry.client(header.get("c", ""))
        if client is None:
            return
        with contextlib.suppress(ConnectionClosed):
            if header.get("op") == "send":
                client.send(message)
            elif header.get("op") == "close":
                client.close(header.get("code", CloseCode.NORMAL), header.get("reason", ""))
