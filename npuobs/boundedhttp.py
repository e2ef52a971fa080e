"""A bounded HTTP/1.1 server on one asyncio event loop, shared by the exporter and the PagerDuty sink.

Why not ``ThreadingHTTPServer``: it spends a thread and a descriptor per connection with no cap, so
~1,000 idle connections under the usual soft limit of 1,024 open files starve everything else in
the process (issue 15): accept fails with EMFILE in a tight loop, new scrapes and ``/healthz`` time
out, and the sampler's vendor tools cannot open their pipes. Here instead:

* **One event loop thread** does all socket I/O (accept, TLS handshake, reading request heads and
  bodies, writing responses); handlers that may block (a bcrypt check, a log-file append) run in a
  **fixed pool** of ``Limits.workers`` threads. Threads stay bounded whatever the clients do.
* **A connection cap** derived from the descriptor budget: the soft ``RLIMIT_NOFILE`` is raised to
  the hard limit at start (as Go's runtime does) and ``fd_reserve`` descriptors (plus two accept
  batches) are kept back for the sampler, vendor tools and log files. The server accepts by
  itself, checking the cap *before* each ``accept()``, so it never runs into EMFILE (and if
  something else does, it pauses accepting instead of spinning). At the cap, a new connection
  evicts the connection that has been idle longest (never one whose request is being answered),
  so a flood of idle connections cannot lock out a scraper: the scraper's fresh connection wins.
  ``TCP_DEFER_ACCEPT`` (Linux; as nginx's ``deferred``) keeps a connection in the kernel until its
  client sends something (a request, a TLS ClientHello) or ``header_timeout`` passes, so a flood
  of idle connections costs no descriptor of ours at all. While full, a new connection that has
  not sent a whole request head (TLS: a whole ClientHello record) by the time it is accepted is
  shed at once (an ``accept()``, a peek and a ``close()``; a scraper's request is complete by
  then), so even an attacker that reconnects as fast as it can churns cheaply while scrapers get
  through, and only connections that sent a whole request evict the longest-idle one.
  The listen backlog is large (the kernel's ``somaxconn``, 4096): a flood waits in the kernel's
  accept queue, costing no descriptor of ours, instead of filling a short queue and making the
  kernel drop the scraper's SYN (a 1 s, then 3 s retransmit).
* **Timeouts**: a new connection must deliver a complete request head within ``header_timeout``
  (TLS handshake included); a keep-alive connection may wait ``idle_timeout`` for its next request;
  a body must arrive within ``body_timeout``; a response must drain within ``write_timeout``.
* **Framing is strict**: a request head is at most ``max_head_bytes`` (431), a body needs a plain
  decimal ``Content-Length`` (411 when missing, 400 when invalid or negative, 413 when above
  ``max_body_bytes``); chunked bodies are refused. Framing errors are answered, then the connection
  is closed (its remaining bytes cannot be trusted as the next request).
* ``TCP_NODELAY`` is set on every connection and each response head goes out in the same write
  as its body, and the end of a TLS handshake is ACKed at once (``TCP_QUICKACK``), so neither
  keep-alive requests nor the first request on a new TLS connection wait ~40 ms for a delayed ACK.
* ``HEAD`` is answered like ``GET`` without the body.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import email.utils
import errno
import logging
import os
import re
import resource
import socket
import ssl
import threading
from collections import OrderedDict
from collections.abc import Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

log = logging.getLogger("npuobs.http")

_CONTENT_LENGTH = re.compile(r"[0-9]{1,15}")
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_WRITE_CHUNK = 256 * 1024  # a slow reader holds at most about this much of a response in our buffers
_ACCEPT_BATCH = 16  # accepts per readiness event; evicted sockets close on the loop's next turn
_ACCEPT_RETRY = 0.5  # seconds accepting pauses after EMFILE/ENFILE/ENOBUFS/ENOMEM
_OUT_OF_RESOURCES = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)


@dataclass(frozen=True)
class Limits:
    """Every bound the server enforces; the defaults suit a scrape endpoint."""

    max_connections: int = 512
    fd_reserve: int = 64  # descriptors never used for connections: sampler, vendor tools, logs
    backlog: int = socket.SOMAXCONN  # kernel accept queue: costs no descriptor until accepted
    header_timeout: float = 10.0
    idle_timeout: float = 120.0  # longer than any usual scrape interval, so Prometheus keeps its connection
    body_timeout: float = 10.0
    write_timeout: float = 30.0
    max_head_bytes: int = 16 * 1024
    max_body_bytes: int = 0
    workers: int = 4


@dataclass(frozen=True)
class Request:
    method: str
    target: str
    version: str
    headers: Mapping[str, str]  # names lower-cased; repeated headers joined with ", "
    body: bytes
    client: str

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: Mapping[str, str] = field(default_factory=dict)
    close: bool = False


Blocking = Callable[[], Response]
"""What a handler returns instead of a Response when answering needs blocking work: it then runs in
the worker pool, not on the event loop."""
Handler = Callable[[Request], "Response | Blocking"]


class _Reject(Exception):
    """A framing error: answered with ``status`` and the connection closed."""

    def __init__(self, status: int, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.headers = headers or {}


def raise_nofile_limit() -> tuple[int, int]:
    """Raise the soft RLIMIT_NOFILE to the hard limit (as Go programs do at start); return (soft, hard)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard and (hard == resource.RLIM_INFINITY or soft < hard):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass  # e.g. a hard limit above the kernel's nr_open: keep the soft limit
    return soft, hard


def _open_descriptors() -> int:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return 32  # no /proc: a guess at what a Python process holds after start


def connection_budget(limits: Limits) -> int:
    """How many connections fit beside the process's other descriptors and the reserve."""
    soft, _ = raise_nofile_limit()
    if soft == resource.RLIM_INFINITY:
        return limits.max_connections
    spare = soft - _open_descriptors() - limits.fd_reserve - 2 * _ACCEPT_BATCH
    return max(1, min(limits.max_connections, spare))


@dataclass(eq=False)
class _Conn:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    client: str
    busy: bool = False


class BoundedHTTPServer:
    """Serves ``handler`` on ``host:port``; binds at construction so a taken port fails at once."""

    def __init__(self, host: str, port: int, handler: Handler, *, methods: Iterable[str] = ("GET", "HEAD"),
                 ssl_context: ssl.SSLContext | None = None, limits: Limits = Limits(),
                 name: str = "npuobs-http", server_header: str = "npuobs") -> None:
        self.limits = limits
        self.max_connections = connection_budget(limits)
        self.methods = frozenset(methods)
        self.name = name
        self._handler = handler
        self._ssl = ssl_context
        self._server_header = server_header
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if hasattr(socket, "TCP_DEFER_ACCEPT"):  # Linux: idle connections stay in the kernel
                self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT, max(1, int(limits.header_timeout)))
            self._sock.bind((host, port))
            self._sock.listen(limits.backlog)
        except BaseException:
            self._sock.close()
            raise
        self.server_address: tuple[str, int] = self._sock.getsockname()[:2]
        self._conns: OrderedDict[_Conn, None] = OrderedDict()  # least recently active first
        self._pool = concurrent.futures.ThreadPoolExecutor(limits.workers, thread_name_prefix=f"{name}-worker")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._started = threading.Event()
        self._thread: threading.Thread | None = None
        self._pending = 0  # accepted sockets not yet registered as connections
        self._accepting = False
        self._busy = 0  # connections whose request is being answered
        self._tasks: set[asyncio.Task[None]] = set()
        self.evicted = 0  # idle connections closed to make room for a new one that sent a request
        self.shed = 0  # new connections closed at once: they had sent nothing while every slot was taken

    @property
    def open_connections(self) -> int:
        return len(self._conns)

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> BoundedHTTPServer:
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()
        self._started.wait()
        return self

    def stop(self) -> None:
        """Stop accepting, close every connection (keep-alive ones included), join the loop thread."""
        if self._thread is not None and self._loop is not None and self._stopping is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)
            self._thread.join()
            self._thread = None
        self._sock.close()
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        loop.set_exception_handler(self._loop_error)
        self._loop = loop
        try:
            loop.run_until_complete(self._main())
        finally:
            loop.close()

    async def _main(self) -> None:
        self._stopping = asyncio.Event()
        self._sock.setblocking(False)
        self._resume_accepting()
        self._started.set()
        await self._stopping.wait()
        self._pause_accepting()
        while self._tasks:  # connections being set up may start serving tasks while we cancel
            for conn in list(self._conns):
                conn.writer.transport.abort()
            tasks = list(self._tasks)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    @staticmethod
    def _loop_error(loop: asyncio.AbstractEventLoop, context: dict[str, object]) -> None:
        # Clients that reset, fail their handshake or vanish are not our error.
        log.debug("connection error: %s", context.get("message"), exc_info=context.get("exception"))  # type: ignore[arg-type]

    # -- accepting ---------------------------------------------------------------------------------
    def _resume_accepting(self) -> None:
        if not self._accepting and self._loop is not None and not (self._stopping and self._stopping.is_set()):
            self._loop.add_reader(self._sock, self._on_acceptable)
            self._accepting = True

    def _pause_accepting(self, retry_after: float | None = None) -> None:
        if self._accepting and self._loop is not None:
            self._loop.remove_reader(self._sock)
            self._accepting = False
            if retry_after is not None:
                self._loop.call_later(retry_after, self._resume_accepting)

    def _on_acceptable(self) -> None:
        loop = asyncio.get_running_loop()
        for _ in range(_ACCEPT_BATCH):
            full = len(self._conns) + self._pending >= self.max_connections
            if full and self._busy >= len(self._conns):
                self._pause_accepting()  # every slot is answering a request; resumed as one ends
                return
            try:
                sock, _ = self._sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in _OUT_OF_RESOURCES:
                    log.warning("cannot accept connections, pausing", extra={"fields": {
                        "server": self.name, "error": str(exc), "retry_seconds": _ACCEPT_RETRY}})
                    self._pause_accepting(_ACCEPT_RETRY)
                    return
                continue  # e.g. ECONNABORTED: that client is gone
            try:  # asyncio sets it only for sockets whose proto is IPPROTO_TCP, which accept() does not give
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
            if full:
                if not _has_sent_a_request(sock, self._ssl is not None, self.limits.max_head_bytes):
                    sock.close()  # idle or slow while we are full: shed at once, before it costs a slot
                    self.shed += 1
                    continue
                self._evict_one()
            self._pending += 1
            self._spawn(loop, self._connect(sock))

    def _spawn(self, loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _connect(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        protocol = asyncio.StreamReaderProtocol(asyncio.StreamReader(self.limits.max_head_bytes, loop), self._accepted)
        try:
            await loop.connect_accepted_socket(lambda: protocol, sock)
        except OSError:
            sock.close()
        finally:
            self._pending -= 1
            self._resume_accepting()

    # -- connections -------------------------------------------------------------------------------
    def _accepted(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Called synchronously as the connection is made, before any byte is read from it."""
        peer = writer.get_extra_info("peername")
        conn = _Conn(reader, writer, f"{peer[0]}:{peer[1]}" if peer else "?")
        if self._ssl is not None:
            writer.transport.pause_reading()  # the ClientHello must reach the TLS layer, not our reader
        self._conns[conn] = None
        self._spawn(asyncio.get_running_loop(), self._serve(conn))

    def _evict_one(self) -> bool:
        for conn in self._conns:
            if not conn.busy:
                del self._conns[conn]
                conn.writer.transport.abort()
                self.evicted += 1
                return True
        return False

    async def _serve(self, conn: _Conn) -> None:
        try:
            if self._ssl is not None:
                await conn.writer.start_tls(self._ssl, ssl_handshake_timeout=self.limits.header_timeout)
                _ack_now(conn.writer)
            first = True
            while True:
                self._set_busy(conn, False)
                try:
                    request = await self._read_request(conn, first)
                except _Reject as exc:
                    self._set_busy(conn, True)
                    await self._send(conn, "GET", Response(exc.status, f"{exc}\n".encode(), headers=exc.headers,
                                                           close=True), keep_alive=False)
                    return
                if request is None:
                    return
                first = False
                self._set_busy(conn, True)
                if conn in self._conns:
                    self._conns.move_to_end(conn)
                response = await self._respond(request)
                keep_alive = (request.version == "HTTP/1.1" and not response.close
                              and request.headers.get("connection", "").lower() != "close")
                await self._send(conn, request.method, response, keep_alive)
                if not keep_alive:
                    return
        except (OSError, EOFError, asyncio.IncompleteReadError, TimeoutError, ssl.SSLError):
            pass  # reset, evicted, timed out or failed handshake: just drop the connection
        finally:
            self._set_busy(conn, False)
            self._conns.pop(conn, None)
            conn.writer.transport.abort()
            self._resume_accepting()

    def _set_busy(self, conn: _Conn, busy: bool) -> None:
        if conn.busy != busy:
            conn.busy = busy
            self._busy += 1 if busy else -1

    async def _read_request(self, conn: _Conn, first: bool) -> Request | None:
        limits = self.limits
        try:
            head = await asyncio.wait_for(conn.reader.readuntil(b"\r\n\r\n"),
                                          limits.header_timeout if first else limits.idle_timeout)
        except asyncio.IncompleteReadError:
            return None  # the client closed the connection between requests
        except asyncio.LimitOverrunError:
            raise _Reject(431, f"request head larger than {limits.max_head_bytes} bytes") from None
        except (TimeoutError, asyncio.TimeoutError):
            return None
        method, target, version, headers = _parse_head(head.lstrip(b"\r\n"))
        if method not in self.methods:
            raise _Reject(405, f"method {method} not allowed", {"Allow": ", ".join(sorted(self.methods))})
        length = _body_length(method, headers)
        if length > limits.max_body_bytes:
            raise _Reject(413, f"request body larger than {limits.max_body_bytes} bytes")
        body = b""
        if length:
            if headers.get("expect", "").lower() == "100-continue":
                conn.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            body = await asyncio.wait_for(conn.reader.readexactly(length), limits.body_timeout)
        return Request(method, target, version, headers, body, conn.client)

    async def _respond(self, request: Request) -> Response:
        try:
            result = self._handler(request)
            if not isinstance(result, Response):
                result = await asyncio.get_running_loop().run_in_executor(self._pool, result)
            return result
        except Exception:  # noqa: BLE001 - a handler bug answers 500 and leaves the server running
            log.exception("HTTP handler failed", extra={"fields": {"path": request.path}})
            return Response(500, b"internal error\n", close=True)

    async def _send(self, conn: _Conn, method: str, response: Response, keep_alive: bool) -> None:
        try:
            reason = HTTPStatus(response.status).phrase
        except ValueError:
            reason = ""
        lines = [f"HTTP/1.1 {response.status} {reason}", f"Server: {self._server_header}",
                 f"Date: {email.utils.formatdate(usegmt=True)}", f"Content-Type: {response.content_type}",
                 f"Content-Length: {len(response.body)}"]
        lines += [f"{name}: {value}" for name, value in response.headers.items()]
        if not keep_alive:
            lines.append("Connection: close")
        data = memoryview(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
                          + (b"" if method == "HEAD" else response.body))
        for start in range(0, len(data), _WRITE_CHUNK):
            conn.writer.write(data[start:start + _WRITE_CHUNK])
            await asyncio.wait_for(conn.writer.drain(), self.limits.write_timeout)
        if not keep_alive:
            conn.writer.close()
            try:
                await asyncio.wait_for(conn.writer.wait_closed(), self.limits.write_timeout)
            except (OSError, TimeoutError, asyncio.TimeoutError, ssl.SSLError):
                pass


def _ack_now(writer: asyncio.StreamWriter) -> None:
    """ACK the client's last handshake flight at once instead of after the ~40 ms delayed-ACK timer.

    Our TLS 1.3 session tickets wait for the first response, so nothing would carry that ACK, and
    a client with Nagle on (most HTTP libraries but Go's) holds its first request until it comes.
    """
    sock = writer.get_extra_info("socket")
    if sock is not None and hasattr(socket, "TCP_QUICKACK"):
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
        except OSError:
            pass


def _has_sent_a_request(sock: socket.socket, tls: bool, max_bytes: int) -> bool:
    """Whether the client has already sent a whole request head (a whole TLS record) we could read now.

    A scraper's request is complete by the time its connection leaves the accept queue; a flood's
    connection has sent nothing, or half a head.
    """
    try:
        data = sock.recv(max_bytes, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except OSError:  # nothing yet (EAGAIN) or already reset
        return False
    if tls:
        return len(data) >= 5 and data[0] == 0x16 and len(data) >= 5 + int.from_bytes(data[3:5], "big")
    return b"\r\n\r\n" in data


def _parse_head(head: bytes) -> tuple[str, str, str, dict[str, str]]:
    lines = head[:-4].split(b"\r\n")
    parts = lines[0].decode("latin-1").split(" ")
    if len(parts) != 3 or not _TOKEN.fullmatch(parts[0]):
        raise _Reject(400, "malformed request line")
    method, target, version = parts
    if version not in ("HTTP/1.1", "HTTP/1.0"):
        raise _Reject(505 if version.startswith("HTTP/") else 400, f"unsupported protocol version {version[:20]}")
    if not target.startswith("/"):
        raise _Reject(400, "request target must be an absolute path")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        raw_name, sep, raw_value = line.partition(b":")
        name = raw_name.decode("latin-1")
        if not sep or not _TOKEN.fullmatch(name):
            raise _Reject(400, "malformed header line")
        key, value = name.lower(), raw_value.strip(b" \t").decode("latin-1")
        if key in headers:
            if key == "content-length" and headers[key] != value:
                raise _Reject(400, "conflicting Content-Length headers")
            if key != "content-length":
                headers[key] += ", " + value
        else:
            headers[key] = value
    return method, target, version, headers


def _body_length(method: str, headers: Mapping[str, str]) -> int:
    if "transfer-encoding" in headers:
        raise _Reject(411, "chunked request bodies are not accepted; send Content-Length")
    value = headers.get("content-length")
    if value is None:
        if method in ("POST", "PUT", "PATCH"):
            raise _Reject(411, "Content-Length required")
        return 0
    if not _CONTENT_LENGTH.fullmatch(value):
        raise _Reject(400, f"invalid Content-Length {value[:30]!r}")
    return int(value)
