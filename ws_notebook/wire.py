"""Keeping connections alive while the kernel is busy: a thread that minds the wire, not the work.

The server lives on the kernel's event loop, so while a cell blocks (``time.sleep``, a long
computation) nothing is read and no ping is answered: clients with a keepalive (the
``websockets`` library, Node's ``ws`` with heartbeats) give up after about 40 s, and new clients
time out in their handshake. Here a helper thread, the *wire keeper*, notices that the loop has
not run for ``STALL_AFTER`` seconds and keeps the wire alive until it runs again:

- it answers the clients' pings and notes the pongs to the server's own pings, so nobody is
  closed for a ping timeout during or right after the block;
- it accepts new connections and answers their WebSocket handshake (the same decision the
  server will make, see ``Server.upgrade_answer``), so they open in time;
- it takes in what clients send and holds it for the loop, unparsed (``WireSocket.held``):
  otherwise a client that sends more than the socket buffers hold would have its pings stuck
  behind its own data. When the loop runs again the server reads the held bytes first, then the
  socket, as always: in order, once each, and handlers run on the main thread as they always
  do. What is held is bounded (``HOLD_PER_CONNECTION``, ``HOLD_IN_ALL``); past that, data waits
  in the socket buffers and in the client (TCP flow control): nothing is lost, but pings behind
  it are answered only when the loop runs.

Why this design and not all socket I/O in a thread with handlers sent to the kernel loop: a
hop between two threads' loops costs about 85 µs there and back on these machines, more than a
whole 64-byte echo (55-75 µs), so that design would roughly halve the sequential echo rate.
The keeper costs the loop a lock around each ``send``/``recv`` (about 0.1 µs) and a wake-up
every ``CHECK_EVERY`` seconds; the ``busy kernel`` rows of ``benchmarks/compare.py`` measure it.

Sharing a socket with the loop follows two rules. Reads: the keeper reads only while the loop
reads nothing (it stops watching a connection the loop has read from), and it parses frames
from a boundary the protocol records (``EndpointProtocol.frame_end``); the bytes the loop has
read but not parsed yet are in the stream's buffer, which the keeper copies while the loop
cannot read (the socket's lock). Writes: the keeper writes a pong only between the loop's
frames (nothing half-sent, nothing queued in the stream), under the same lock; a pong that
does not go out whole goes first on the loop's next write.

Limits: a TLS connection is encrypted inside its stream, so the keeper leaves it alone (its
clients rely on their keepalive timeout, 40 s by default). A C call that holds the GIL for its
whole run stops every Python thread, this one too (and most such calls release it).
"""

from __future__ import annotations

import contextlib
import logging
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

from tornado.iostream import IOStream

from .codes import FIN, CloseCode, Opcode
from .tornado_internals import bytes_parsed, pong_received, read_now, unread, unread_size

__all__ = ["KeptServer", "OpenConnection", "Waiting", "WireKeeper", "WireSocket", "WireStream"]

logger = logging.getLogger("ws_notebook")

CHECK_EVERY = 0.1  # seconds between looks at the loop, and between passes while it is stalled
STALL_AFTER = 0.4  # seconds without the loop running before the keeper steps in
HOLD_PER_CONNECTION = 16 * 1024 * 1024  # bytes taken in and held per connection while stalled
HOLD_IN_ALL = 64 * 1024 * 1024  # ... and for all connections together
READ_AT_ONCE = 256 * 1024
CONTROL_FRAME_AT_MOST = 14 + 125  # bytes: the longest header, and a control frame's payload
REPORT_EVERY = 1.0  # seconds between reports of what waits, while it waits
HEAD_AT_MOST = 64 * 1024  # bytes of a handshake request looked at (the server's header limit)

_PING, _PONG = Opcode.PING, Opcode.PONG
_CLOSE_FRAME = FIN | Opcode.CLOSE


class WireSocket(socket.socket):
    """A connection's socket, shared by the loop and the keeper.

    The loop reads and writes through a :class:`WireStream`, which takes ``lock`` and counts
    what was read, so the keeper can look at a consistent position and write a frame only
    between two of the loop's. ``held`` is what the keeper took in while the loop was stalled:
    the loop's reads get it before the socket's bytes. ``answered`` is set when the keeper
    answered the handshake: the server's own answer is then not sent again.
    """

    @classmethod
    def adopt(cls, sock: socket.socket) -> WireSocket:
        wire = cls(sock.family, sock.type, sock.proto, fileno=sock.detach())
        wire.setblocking(False)
        return wire

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lock = threading.Lock()
        self.received = 0  # bytes the loop has read
        self.held = bytearray()  # bytes the keeper took in for the loop: they come next
        self.half_sent = False  # the loop's last send did not take all it was given
        self.ponged = 0  # where the last ping the keeper answered ends: not answered again
        self.unsent = b""  # the end of a keeper's frame the socket did not take: goes first
        self.touched = False  # the loop has used the socket (the keeper leaves its handshake)
        self.answered = False  # the keeper sent "101 Switching Protocols"
        self.refused: str | None = None  # the server refused what the keeper had accepted
        self.waited: Waiting | None = None  # messages that came before the server opened it

    @property
    def keeper_wrote(self) -> bool:
        """The keeper wrote something the loop's next write must come after or replace."""
        return bool(self.unsent) or self.answered or self.refused is not None

    def write_after_keeper(self, data: Any) -> int:
        """The loop's write when ``keeper_wrote`` (with ``lock`` held): rare, so not fast."""
        self.touched = True
        if self.unsent and not self._send_unsent():
            return 0  # the stream tries again when the socket is writable
        if self.answered:
            return self._instead_of_answer(data)
        if self.refused is not None:
            return len(data)  # the rest of a refusal the client can no longer read
        sent = self.send(data)
        self.half_sent = sent < len(data)
        return sent

    def _send_unsent(self) -> bool:
        """Send what is left of the keeper's frame; True once it is all out."""
        try:
            sent = self.send(self.unsent)
        except BlockingIOError:
            return False
        self.unsent = self.unsent[sent:]
        return not self.unsent

    def _instead_of_answer(self, data: Any) -> int:
        """The server's handshake answer, when the keeper already sent one: not sent twice.

        The answer is the first thing the server writes. If it is not a 101 (the endpoint went
        away meanwhile, say), the client already took the keeper's: it gets a close frame
        saying why instead, and the rest of the server's answer is dropped.
        """
        data = bytes(data)
        end = data.find(b"\r\n\r\n")
        if end < 0:  # not a whole response head: write what comes as the server sends it
            self.answered = False
            return self.send(data)
        self.answered = False
        status = data[: data.find(b"\r\n")].decode("latin-1")
        if " 101 " not in status + " ":
            self.refused = status
            reason = f"the server refused after all: {status}"[:123].encode()
            frame = (
                bytes((_CLOSE_FRAME, 2 + len(reason)))
                + struct.pack("!H", CloseCode.POLICY_VIOLATION)
                + reason
            )
            with contextlib.suppress(OSError):
                self.send(frame)
                self.shutdown(socket.SHUT_RDWR)  # the server would wait for another request
            return len(data)
        rest = data[end + 4 :]
        if not rest:
            return len(data)
        return end + 4 + self.send(rest)


class WireStream(IOStream):
    """The stream of a :class:`WireSocket`: the loop's reads and writes, under its lock.

    These replace Tornado's own ``read_from_fd``/``write_to_fd`` (one Python call each, as
    before), and ``send_now`` is the way around the stream's buffer that ``Client`` takes for a
    frame nothing waits before: the socket's C methods stay on the hot path.
    """

    socket: WireSocket

    def read_from_fd(self, buf: bytearray | memoryview) -> int | None:
        wire = self.socket
        with wire.lock:
            wire.touched = True
            try:
                if wire.held:
                    count = min(len(wire.held), len(buf))
                    buf[:count] = wire.held[:count]
                    del wire.held[:count]
                else:
                    count = wire.recv_into(buf, len(buf))
            except BlockingIOError:
                return None
            finally:
                del buf  # as Tornado does: no reference to its buffer is kept
            wire.received += count
            return count

    def write_to_fd(self, data: memoryview) -> int:
        wire = self.socket
        with wire.lock:
            try:
                if wire.keeper_wrote:
                    return wire.write_after_keeper(data)
                wire.touched = True
                sent = wire.send(data)
                wire.half_sent = sent < len(data)
                return sent
            finally:
                del data

    def send_now(self, frame: tuple[bytes, ...]) -> int:
        """Write a frame's parts straight to the socket (the caller checked that nothing is
        queued before them); how many bytes it took. Raises ``BlockingIOError`` as ``send``."""
        wire = self.socket
        with wire.lock:
            if wire.keeper_wrote:
                return wire.write_after_keeper(b"".join(frame))
            wire.touched = True
            if len(frame) == 1:
                sent = wire.send(frame[0])
                wire.half_sent = sent < len(frame[0])
            else:
                sent = wire.sendmsg(frame)
                wire.half_sent = sent < len(frame[0]) + len(frame[1])
            return sent


@dataclass
class Waiting:
    """Messages of one connection that wait for the kernel: how many, since when."""

    endpoint: str
    client: str  # the client's id, or "" for a connection the server has not opened yet
    messages: int = 0
    since: float = field(default_factory=time.time)


class OpenConnection(NamedTuple):
    """A connection the keeper minds while the loop is stalled."""

    protocol: Any  # its EndpointProtocol
    endpoint: str  # the endpoint's name (or the SockJS prefix) and the client's id, for reports
    client: str
    # A text message its client expects at least this often (seconds) from a live server, as a
    # STOMP heart-beat: the keeper sends it while the loop cannot.
    beat: tuple[str, float] | None = None


@dataclass
class _Watched:
    """What the keeper knows of one connection during a stall."""

    wire: WireSocket
    endpoint: str
    client: str
    protocol: Any = None  # the EndpointProtocol, once the server has opened the connection
    stream: Any = None
    known: bytes = b""  # bytes from ``start`` the loop had read but not parsed, at the stall
    start: int = 0  # where ``known`` starts, in the socket's ``received`` count
    scan: int = 0  # where the next frame not looked at starts, same count
    seen: int = 0  # the socket's ``received`` when the keeper began to watch it
    beat: tuple[bytes, float] | None = None  # a keepalive frame to send, and how often
    next_beat: float = 0.0  # when to send it next (monotonic)
    waiting: Waiting | None = None
    address: Any = None  # of a connection the keeper accepted


class KeptServer(Protocol):
    """What the keeper asks of the server (``Server`` has these)."""

    def open_connections(self) -> list[OpenConnection]:
        """The open connections of the stalled loop."""

    def divert(self, head: bytes, sock: socket.socket, address: Any) -> bool:
        """Hand a new connection to the loop of a threaded endpoint, if it is for one."""

    def upgrade_answer(self, head: bytes) -> str | None:
        """The endpoint a handshake request opens, if the server will surely accept it."""

    def handle_connection(self, sock: socket.socket, address: Any) -> None:
        """Take a new connection as if just accepted (on the loop)."""

    def handle_answered(self, sock: socket.socket, address: Any) -> None:
        """Take a connection whose handshake the keeper answered (on the loop)."""

    def waited(self, waits: list[Waiting], seconds: float) -> None:
        """The loop runs again (on the loop): what waited for it, and how long it stalled."""

    def report_waiting(self, waiting: list[Waiting]) -> None:
        """What waits now (from the keeper's thread, while the loop is stalled)."""


class WireKeeper:
    """The thread that keeps a server's connections alive while its loop is stalled."""

    def __init__(self, loop: Any, listening: list[socket.socket], server: KeptServer) -> None:
        self.loop = loop
        self.listening = listening
        self.server = server
        self.beat = time.monotonic()  # when the loop last ran the keeper's probe
        self._probing = False
        self.stalled_since: float | None = None  # wall-clock time, for the log
        self._watched: dict[int, _Watched] = {}  # by file descriptor, during a stall
        self._holding: list[_Watched] = []  # open connections the keeper took bytes in for
        self._held = 0  # bytes held for all connections
        self._stop = threading.Event()
        self._mutex = threading.Lock()  # one pass at a time, and not while the stall ends
        self._reported = 0.0  # when what waits was last reported
        self._thread = threading.Thread(target=self._run, name="ws_notebook wire", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread and wait for it (from the loop's thread)."""
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    @property
    def stalled(self) -> bool:
        return self.stalled_since is not None

    def _run(self) -> None:
        while not self._stop.wait(CHECK_EVERY):
            try:
                if not self._probing:
                    self._probing = True
                    self.loop.call_soon_threadsafe(self._alive)
            except RuntimeError:  # the loop is closed: the kernel is going away
                return
            if time.monotonic() - self.beat < STALL_AFTER:
                continue
            try:
                with self._mutex:
                    self._keep()
            except Exception:  # never let the keeper die: log, and try again next pass
                logger.exception("the wire keeper failed in a pass; it goes on")

    def _alive(self) -> None:
        """On the loop: it runs. Ends a stall, telling the server what waited."""
        self.beat = time.monotonic()
        self._probing = False
        if self.stalled_since is None:
            return
        with self._mutex:
            watched = list(self._watched.values())
            holding, self._holding = self._holding, []
            seconds = time.time() - self.stalled_since
            self.stalled_since = None
            self._watched = {}
        for undecided in (w for w in watched if not w.endpoint and not w.wire.touched):
            self.server.handle_connection(undecided.wire, undecided.address)
        for kept in holding:
            # Its read waits for the socket to be readable, which bytes the keeper took in
            # do not make it: read now, as the loop would have.
            if kept.wire.held and not kept.stream.closed():
                read_now(kept.stream)
        waits = [w.waiting for w in watched if w.waiting is not None and w.client]
        self.server.waited(waits, seconds)

    # -- one pass while the loop is stalled --------------------------------------------------

    def _keep(self) -> None:
        if self.stalled_since is None:
            self.stalled_since = time.time() - (time.monotonic() - self.beat)
            self._held = 0
            self._watch_open_connections()
        self._accept()
        changed = False
        for watched in list(self._watched.values()):
            if self.stalled_since is None:  # the loop runs again: it has the wire
                return
            changed |= self._look(watched)
        waiting = [w.waiting for w in self._watched.values() if w.waiting]
        now = time.monotonic()
        if changed or (waiting and now - self._reported >= REPORT_EVERY):
            self._reported = now
            self.server.report_waiting(waiting)

    def _watch_open_connections(self) -> None:
        stalled_at = self.beat  # monotonic
        for protocol, endpoint, client, beat in self.server.open_connections():
            stream = getattr(protocol, "stream", None)
            wire = getattr(stream, "socket", None)
            if not isinstance(wire, WireSocket):
                continue  # TLS, or already closed
            with wire.lock:
                watched = _Watched(wire, endpoint, client, protocol, stream, seen=wire.received)
                if beat is not None:
                    # Its last beat went out at most one period before the stall; its client
                    # gives up after two silent periods: the first from here goes at half of one.
                    text, every = beat
                    watched.beat = (_text_frame(text), every)
                    watched.next_beat = stalled_at + every / 2
                if self._known_bytes(watched):
                    self._watched[wire.fileno()] = watched
                    self._held += len(wire.held)

    @staticmethod
    def _known_bytes(watched: _Watched) -> bool:
        """Where frames start, and the bytes read but not parsed; False if that is unknown.

        Called with the socket's lock held, so the loop reads nothing meanwhile; it is stalled,
        so it parses nothing either.
        """
        protocol, stream, wire = watched.protocol, watched.stream, watched.wire
        base = getattr(protocol, "wire_base", None)
        if base is None:
            return False  # not reading frames yet
        parsed = base + bytes_parsed(protocol)
        taken = wire.received - unread_size(stream)  # what the stream handed out
        # Bytes the stream handed to a read whose coroutine has not resumed yet (the loop
        # stalled in between): they are that read's result, and come before the buffer.
        pending = b""
        if taken != parsed:
            read = getattr(protocol, "pending_read", None)
            if read is None or not read.done() or read.cancelled() or read.exception():
                return False
            pending = read.result()
            if len(pending) != taken - parsed:
                return False
        boundary = protocol.frame_end
        if boundary >= parsed:
            watched.start = watched.scan = boundary
            if boundary < wire.received:
                watched.known = (pending + unread(stream))[boundary - parsed :]
            return True
        # The frame's first two bytes are parsed, its extended length is awaited: the frame
        # starts two bytes back, and the protocol kept those two.
        if parsed - boundary != 2:
            return False
        watched.start = watched.scan = boundary
        watched.known = protocol.frame_head + pending + unread(stream)
        return True

    def _accept(self) -> None:
        for listening in self.listening:
            for _ in range(128):
                try:
                    sock, address = listening.accept()
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:  # out of descriptors, say: the loop's acceptor reports it
                    break
                wire = WireSocket.adopt(sock)
                self._watched[wire.fileno()] = _Watched(wire, "", "", address=address)

    def _look(self, watched: _Watched) -> bool:
        """Take in what a connection sent; answer its handshake and pings. True if more waits."""
        wire = watched.wire
        with wire.lock:
            if wire.touched and (watched.protocol is None or wire.received != watched.seen):
                self._watched.pop(wire.fileno(), None)  # the loop reads it: it has it now
                return False
            if not watched.endpoint:
                return self._handshake(watched)
            if not self._take_in(watched):
                self._watched.pop(wire.fileno(), None)
                return False
            if watched.beat is not None and time.monotonic() >= watched.next_beat:
                frame, every = watched.beat
                if self._write(watched, frame):
                    watched.next_beat += every
            return self._frames(watched)

    def _handshake(self, watched: _Watched) -> bool:
        wire = watched.wire
        try:  # only peeked: the loop reads the request itself if the keeper does not answer
            data = wire.recv(HEAD_AT_MOST, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            return False
        except OSError:
            self._watched.pop(wire.fileno(), None)
            return False
        end = data.find(b"\r\n\r\n")
        if end < 0:
            return False
        head = data[: end + 4]
        if self.server.divert(head, wire, watched.address):  # a threaded endpoint's loop has it
            self._watched.pop(wire.fileno(), None)
            return False
        endpoint = self.server.upgrade_answer(head)
        if endpoint is None or not self._write(watched, _switching(head)):
            # Not one the keeper is sure of: the server answers when its loop runs.
            self._watched.pop(wire.fileno(), None)
            self.loop.call_soon_threadsafe(self.server.handle_connection, wire, watched.address)
            return False
        wire.answered = True
        self.loop.call_soon_threadsafe(self.server.handle_answered, wire, watched.address)
        watched.endpoint = endpoint
        watched.start = watched.scan = end + 4  # frames follow the request, which is held too
        self._take_in(watched)
        return self._frames(watched) or True

    def _take_in(self, watched: _Watched) -> bool:
        """Read what the socket holds into ``wire.held``, within bounds; False if it broke."""
        wire = watched.wire
        room = min(HOLD_PER_CONNECTION - len(wire.held), HOLD_IN_ALL - self._held)
        if room > 0 and watched.protocol is not None and not wire.held:
            self._holding.append(watched)
        while room > 0:
            try:
                data = socket.socket.recv(wire, min(room, READ_AT_ONCE))
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                return False  # what was held comes first; the loop then meets the error
            if not data:
                break  # the end of the stream: the loop meets it after what is held
            wire.held += data
            self._held += len(data)
            room -= len(data)
        return True

    def _bytes(self, watched: _Watched, start: int, end: int) -> bytes:
        """The connection's bytes from ``start`` to ``end`` (in its ``received`` count), from
        those the loop had read but not parsed and those held for it."""
        wire, out = watched.wire, b""
        if start < wire.received:
            out = watched.known[start - watched.start : min(end, wire.received) - watched.start]
            start = wire.received
        if start < end:
            out += wire.held[start - wire.received : end - wire.received]
        return out

    def _frames(self, watched: _Watched) -> bool:
        """Look at the frames from ``watched.scan`` on. True if it found new messages."""
        available = watched.wire.received + len(watched.wire.held)
        new_messages = 0
        while True:
            at = watched.scan
            head = self._bytes(watched, at, min(at + CONTROL_FRAME_AT_MOST, available))
            frame = _frame_at(head, available - at)
            if frame is None:
                break
            opcode, payload, length = frame
            if opcode == _PING and payload is not None:
                if not self._write(watched, bytes((FIN | _PONG, len(payload))) + payload):
                    break  # the loop's output is half written: answer this ping next pass
                watched.wire.ponged = at + length
            elif opcode == _PONG and watched.protocol is not None:
                pong_received(watched.protocol)  # the server's ping was answered in time
            elif opcode in (Opcode.TEXT, Opcode.BINARY, Opcode.CONTINUATION):
                new_messages += opcode != Opcode.CONTINUATION
            watched.scan = at + length
        if not new_messages:
            return False
        if watched.waiting is None:
            watched.waiting = Waiting(watched.endpoint, watched.client)
            if watched.protocol is None:  # the server logs it when it opens the connection
                watched.wire.waited = watched.waiting
        watched.waiting.messages += new_messages
        return True

    @staticmethod
    def _write(watched: _Watched, frame: bytes) -> bool:
        """Write a frame of the keeper's between two of the loop's; False: not now, the loop's
        output is half written (try again next pass). A closing or broken connection gets
        nothing, and counts as done."""
        wire, stream = watched.wire, watched.stream
        if wire.half_sent or wire.unsent or (stream is not None and stream.writing()):
            return False
        if watched.protocol is not None and watched.protocol.server_terminated:
            return True
        try:
            sent = socket.socket.send(wire, frame)
        except BlockingIOError:
            sent = 0
        except OSError:
            return True
        wire.unsent = frame[sent:]
        return True

    def close_all(self, reason: str) -> None:
        """Tell every open connection 1001 (going away) from this thread: the kernel is going
        away while its loop is stalled, so the server cannot say it itself."""
        code_and_reason = struct.pack("!H", CloseCode.GOING_AWAY) + reason.encode()[:123]
        frame = bytes((_CLOSE_FRAME, len(code_and_reason))) + code_and_reason
        for protocol, endpoint, client, _ in self.server.open_connections():
            wire = getattr(getattr(protocol, "stream", None), "socket", None)
            if not isinstance(wire, WireSocket):
                continue
            with wire.lock:
                watched = _Watched(wire, endpoint, client, protocol, protocol.stream)
                if self._write(watched, frame):
                    protocol.server_terminated = True
                    with contextlib.suppress(OSError):
                        wire.shutdown(socket.SHUT_WR)


def _text_frame(text: str) -> bytes:
    """A short text message, framed as a server sends it."""
    payload = text.encode()
    assert len(payload) < 126, "a keepalive is short"
    return bytes((FIN | Opcode.TEXT, len(payload))) + payload


def _switching(head: bytes) -> bytes:
    """The "101 Switching Protocols" answer to a WebSocket handshake request."""
    from tornado.websocket import WebSocketProtocol13

    key = ""
    for line in head.decode("latin-1").split("\r\n")[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "sec-websocket-key":
            key = value.strip()
    accept = WebSocketProtocol13.compute_accept_value(key)
    return (
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Accept: {accept}\r\n\r\n"
    ).encode("latin-1")


def _frame_at(head: bytes, available: int) -> tuple[int, bytes | None, int] | None:
    """The client frame ``head`` starts (its first bytes, a control frame's payload included),
    when ``available`` bytes from its start are in: opcode, unmasked payload (control frames
    only) and its length on the wire; None if it is not all there yet."""
    if len(head) < 2:
        return None
    first, second = head[0], head[1]
    opcode, length, at = first & 0x0F, second & 0x7F, 2
    if length == 126:
        if len(head) < at + 2:
            return None
        length, at = struct.unpack_from("!H", head, at)[0], at + 2
    elif length == 127:
        if len(head) < at + 8:
            return None
        length, at = struct.unpack_from("!Q", head, at)[0], at + 8
    mask_end = at + (4 if second & 0x80 else 0)
    end = mask_end + length
    if available < end:  # a message still arriving: count it once it is all in
        return None
    if not opcode & 0x8:
        return opcode, None, end
    if length > 125:  # not a valid control frame: the server's parser closes the connection
        return None
    payload = head[mask_end:end]
    if second & 0x80:
        mask = head[at:mask_end]
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return opcode, payload, end
