"""The onion listener: tor's PROXY protocol header, then the request, to the app.

`SECRETLINK_ONION_LISTEN` names a second listener, meant for tor's
`HiddenServicePort` and nothing else. Every onion visitor connects from the local
tor daemon, so the peer address says nothing about who is who; with
`HiddenServiceExportCircuitID haproxy` tor starts each stream with a PROXY protocol
header whose source address carries the stream's circuit id (v1, `PROXY TCP6
fc00:dead:beef:4dad::<32-bit id> ::1 ...`; v2, the binary form other proxies send, is
read too). Here, in a process of its own:

1. The header is read first, within the header timeout and at most its format's
   length; a connection without one (or with a malformed, LOCAL or UNKNOWN one) is
   answered 400 and closed, never guessed at as HTTP.
2. The request head is read (at most 16 KiB, within the same timeout) and passed on
   with the circuit in one header, `Secretlink-Onion-Circuit`, authenticated by a
   token derived from the instance's secret key (secretlink/web/onion.py), and with
   `Connection: close`, so that each request has its own header and the connection's
   next request cannot pass without one. Headers a client could use to speak for
   the relay (that one, `Forwarded`, `X-Forwarded-*`) are dropped.
3. The bytes then flow both ways, unread, between tor and the app's own listener
   (granian, which parses the request and enforces the body limits as for anyone).

The public listener never reads a PROXY header and never believes the circuit
header without the token. The circuit id is used only inside the rate limits' keyed
hash: it is not logged or stored.
"""

import asyncio
import contextlib
import json
import logging
import multiprocessing
import os
import re
import signal
import ssl
import struct
import time
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address

from proxyprotocol import ProxyProtocolChecksumError, ProxyProtocolSyntaxError
from proxyprotocol.result import ProxyResultIPv4, ProxyResultIPv6
from proxyprotocol.v1 import ProxyProtocolV1
from proxyprotocol.v2 import ProxyProtocolV2

from secretlink.ops import logs
from secretlink.ops.asgi import error_headers
from secretlink.settings import Settings, SettingsError
from secretlink.web.onion import CIRCUIT_HEADER, header_value, relay_token

log = logging.getLogger("secretlink.ops.onion")

V1_PREFIX = b"PROXY "
V1_MAX_BYTES = 107  # the longest v1 line, CRLF included (the PROXY protocol's own limit)
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
V2_FIXED_BYTES = 16
# Two IPv6 addresses and ports are 36 bytes; room for a few TLVs, not for 64 KiB.
V2_MAX_BYTES = V2_FIXED_BYTES + 512
MAX_HEAD_BYTES = 16 * 1024  # as granian's limit on the public listener (server.py)
READ_BYTES = 64 * 1024
# Streams open at once; tor's HiddenServiceMaxStreams bounds them per circuit.
MAX_CONNECTIONS = 4096
# Headers nobody but this relay may set for the app.
DROPPED_HEADERS = frozenset(
    name.encode()
    for name in (
        CIRCUIT_HEADER.lower(),
        "connection",
        "keep-alive",
        "proxy-connection",
        "forwarded",
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-host",
        "x-forwarded-port",
        "x-forwarded-prefix",
    )
)
TOKEN = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
WARN_EVERY_SECONDS = 60
READY_SECONDS = 15


class Refusal(Exception):
    """The connection is answered `status` with this reason and closed."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def no_header() -> Refusal:
    return Refusal(
        400,
        "proxy_header_required",
        "this listener takes connections from tor only, each starting with a PROXY "
        "protocol header (HiddenServiceExportCircuitID haproxy)",
    )


# ---- the PROXY protocol header ----


def parse_proxy_header(buffer: bytes) -> tuple[str, int] | None:
    """(the source address, the header's length in bytes) once `buffer` holds a whole
    header; None while more bytes are needed. Raises Refusal for anything else."""
    if _is_prefix(buffer, V2_SIGNATURE):
        return _parse_v2(buffer)
    if _is_prefix(buffer, V1_PREFIX):
        return _parse_v1(buffer)
    raise no_header()


def _is_prefix(buffer: bytes, signature: bytes) -> bool:
    """Whether `buffer` starts with `signature`, or is the start of it."""
    return buffer[: len(signature)] == signature[: len(buffer)]


def _parse_v1(buffer: bytes) -> tuple[str, int] | None:
    end = buffer.find(b"\r\n", 0, V1_MAX_BYTES)
    if end < 0:
        if len(buffer) >= V1_MAX_BYTES or b"\n" in buffer[:V1_MAX_BYTES]:
            raise Refusal(400, "bad_proxy_header", "the PROXY protocol v1 line is malformed")
        return None
    line = buffer[: end + 2]
    # Exactly "PROXY TCP4|TCP6 SRC DST SPORT DPORT": one space each, ports in plain digits.
    parts = line[len(V1_PREFIX) : -2].split(b" ")
    if len(parts) != 5 or not all(part.isdigit() and len(part) <= 5 for part in parts[3:]):
        raise Refusal(400, "bad_proxy_header", "the PROXY protocol v1 line is malformed")
    return _source_of(lambda: ProxyProtocolV1().unpack(line)), len(line)


def _parse_v2(buffer: bytes) -> tuple[str, int] | None:
    if len(buffer) < V2_FIXED_BYTES:
        return None
    length = V2_FIXED_BYTES + int.from_bytes(buffer[14:16], "big")
    if length > V2_MAX_BYTES:
        raise Refusal(400, "bad_proxy_header", "the PROXY protocol v2 header is too long")
    if len(buffer) < length:
        return None
    return _source_of(lambda: ProxyProtocolV2().unpack(buffer[:length])), length


def _source_of(unpack) -> str:
    try:
        result = unpack()
    except (
        ProxyProtocolSyntaxError,
        ProxyProtocolChecksumError,
        ValueError,  # a bad address or port
        struct.error,  # an address block shorter than its family's
        IndexError,
    ):
        raise Refusal(400, "bad_proxy_header", "the PROXY protocol header is malformed") from None
    if not isinstance(result, ProxyResultIPv4 | ProxyResultIPv6):
        # LOCAL, UNKNOWN or a Unix socket: no client to tell apart from the others.
        raise Refusal(
            400, "bad_proxy_header", "the PROXY protocol header names no TCP source address"
        )
    source = result.source[0]
    assert isinstance(source, IPv4Address | IPv6Address)
    return str(source)


# ---- the request head ----


def rewrite_head(head: bytes, circuit_header: str) -> bytes:
    """The request line and header lines (without the blank line) as the app gets them."""
    lines = head.split(b"\r\n")
    if any(b"\r" in line or b"\n" in line for line in lines):
        raise Refusal(400, "bad_request", "header lines must end with CRLF")
    kept = [lines[0]]
    for line in lines[1:]:
        if line[:1] in (b" ", b"\t"):
            raise Refusal(400, "bad_request", "folded header lines are not accepted")
        name, colon, _ = line.partition(b":")
        if not colon or not TOKEN.fullmatch(name):
            raise Refusal(400, "bad_request", "a header line is malformed")
        if name.lower() not in DROPPED_HEADERS:
            kept.append(line)
    kept += [b"Connection: close", f"{CIRCUIT_HEADER}: {circuit_header}".encode()]
    return b"\r\n".join(kept) + b"\r\n\r\n"


# ---- one connection ----


@dataclass(frozen=True)
class Upstream:
    """The app's own listener, as the relay reaches it on this machine."""

    host: str
    port: int
    tls: ssl.SSLContext | None

    @classmethod
    def of(cls, settings: Settings) -> "Upstream":
        host = settings.host.strip("[]")
        # A wildcard bind is reached through loopback.
        host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)  # noqa: S104
        tls = None
        if settings.tls_cert:
            # Our own listener on this machine: its certificate, as the only one trusted.
            tls = ssl.create_default_context(cafile=str(settings.tls_cert))
            tls.check_hostname = False
            tls.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
        return cls(host, settings.port, tls)


class Relay:
    def __init__(self, settings: Settings):
        self.upstream = Upstream.of(settings)
        self.timeout = settings.header_timeout
        self.token = relay_token(settings.secret_key or "")
        self.open = 0
        self._warned_at = -float("inf")

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.open >= MAX_CONNECTIONS:
            writer.close()
            return
        self.open += 1
        try:
            await self._relay(reader, writer)
        except Refusal as refusal:
            self._note(refusal)
            await answer(writer, refusal)
        except (OSError, asyncio.IncompleteReadError):
            pass  # either side went away
        finally:
            self.open -= 1
            writer.close()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(self.timeout):
                circuit, buffer = await read_proxy_header(reader)
                head, rest = await read_head(reader, buffer)
        except TimeoutError:
            raise Refusal(
                408, "request_timeout", "the PROXY header and request headers came too slowly"
            ) from None
        request = rewrite_head(head, header_value(self.token, circuit)) + rest
        try:
            up_reader, up_writer = await asyncio.open_connection(
                self.upstream.host, self.upstream.port, ssl=self.upstream.tls
            )
        except OSError:
            log.error("onion listener: cannot reach the app's listener")
            raise Refusal(502, "unavailable", "the server is not available") from None
        up_writer.write(request)
        to_app = asyncio.create_task(pipe(reader, up_writer, half_close=True))
        try:
            # The app closes after its answer (Connection: close): that ends the stream.
            await pipe(up_reader, writer, half_close=False)
        finally:
            to_app.cancel()
            with contextlib.suppress(asyncio.CancelledError, OSError):
                await to_app
            up_writer.close()

    def _note(self, refusal: Refusal) -> None:
        # Tor without HiddenServiceExportCircuitID, or something else on this port: say
        # so to the operator, once a minute at most (and never who connected).
        if refusal.code in ("proxy_header_required", "bad_proxy_header"):
            now = time.monotonic()
            level = (
                logging.WARNING if now - self._warned_at >= WARN_EVERY_SECONDS else logging.DEBUG
            )
            if level == logging.WARNING:
                self._warned_at = now
            log.log(
                level,
                "onion listener: refused a connection (%s); is HiddenServiceExportCircuitID "
                "haproxy set in torrc, and does only tor connect here?",
                refusal.code,
            )


async def read_proxy_header(reader: asyncio.StreamReader) -> tuple[str, bytes]:
    """The source address of the PROXY header, and the bytes read after it."""
    buffer = b""
    while True:
        found = parse_proxy_header(buffer)
        if found is not None:
            source, length = found
            return source, buffer[length:]
        # Only as much as the longest header: the request after it is read later.
        chunk = await reader.read(V2_MAX_BYTES - len(buffer))
        if not chunk:
            raise no_header()
        buffer += chunk


async def read_head(reader: asyncio.StreamReader, buffer: bytes) -> tuple[bytes, bytes]:
    """The request head (without its blank line) and the body bytes read with it."""
    while (end := (buffer := buffer.lstrip(b"\r\n")).find(b"\r\n\r\n")) < 0:
        # (lstrip: RFC 9112 2.2 lets blank lines come before a request line.)
        if len(buffer) > MAX_HEAD_BYTES:
            raise Refusal(431, "headers_too_large", "the request headers are too large")
        chunk = await reader.read(READ_BYTES)
        if not chunk:
            raise asyncio.IncompleteReadError(buffer, None)
        buffer += chunk
    if end > MAX_HEAD_BYTES:
        raise Refusal(431, "headers_too_large", "the request headers are too large")
    return buffer[:end], buffer[end + 4 :]


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, half_close: bool):
    while data := await reader.read(READ_BYTES):
        writer.write(data)
        await writer.drain()
    if half_close and writer.can_write_eof():
        writer.write_eof()


REASONS = {
    400: "Bad Request",
    408: "Request Timeout",
    431: "Request Header Fields Too Large",
    502: "Bad Gateway",
}


async def answer(writer: asyncio.StreamWriter, refusal: Refusal) -> None:
    """A JSON error as the app's own (security headers included), then close."""
    body = json.dumps({"error": refusal.message, "code": refusal.code}).encode()
    status = f"HTTP/1.1 {refusal.status} {REASONS[refusal.status]}\r\n".encode()
    fields = b"".join(name + b": " + value + b"\r\n" for name, value in error_headers({}, body))
    with contextlib.suppress(OSError):
        writer.write(status + fields + b"\r\n" + body)
        await writer.drain()


# ---- the listener's process ----


async def serve_relay(settings: Settings, ready) -> None:
    relay = Relay(settings)
    host, port = settings.onion_listen
    try:
        server = await asyncio.start_server(relay.handle, host, port, reuse_address=True)
    except OSError as exc:
        ready.send(f"SECRETLINK_ONION_LISTEN: cannot listen on {host}:{port}: {exc.strerror}")
        return
    ready.send("")
    parent = os.getppid()
    async with server:
        # Gone with `serve`, even if it was killed: never left holding the port.
        while os.getppid() == parent:
            await asyncio.sleep(1)


def run_listener(settings: Settings, ready) -> None:
    """The listener process's main: until SIGTERM (sent by `serve` on its way out)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops `serve`, which stops this
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    logs.configure(settings.log_level)
    asyncio.run(serve_relay(settings, ready))


def start(settings: Settings) -> multiprocessing.Process:
    """Start the onion listener; raise SettingsError if it cannot listen."""
    context = multiprocessing.get_context("spawn")  # a fresh interpreter: no inherited state
    receiving, sending = context.Pipe(duplex=False)
    process = context.Process(
        target=run_listener, args=(settings, sending), name="onion-listener", daemon=True
    )
    process.start()
    sending.close()
    if not receiving.poll(READY_SECONDS):
        process.terminate()
        raise SettingsError("SECRETLINK_ONION_LISTEN: the onion listener did not start")
    problem = receiving.recv()
    if problem:
        process.join(5)
        raise SettingsError(problem)
    host, port = settings.onion_listen
    log.info("onion listener on %s:%d (PROXY protocol required)", host, port)
    return process


def stop(process: multiprocessing.Process) -> None:
    process.terminate()
    process.join(5)
