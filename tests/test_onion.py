"""The onion service (issue 13): the onion origin's headers, links and proofs, tor's
PROXY protocol header on the onion listener, and onion clients told apart by circuit.

No Tor network is reachable here: the tests present the onion Host and the PROXY
header themselves, as the local tor daemon would.
"""

import asyncio
import contextlib
import json
import socket
import struct
import threading
import time
from ipaddress import IPv6Address

import pytest
from click.testing import CliRunner
from conftest import serving_in_thread
from test_serve import serving

from secretlink import create_app
from secretlink.client import proxy
from secretlink.client.cli import main
from secretlink.client.http import InboxClient
from secretlink.crypto import b64decode, b64encode, generate_keypair, open_envelope
from secretlink.crypto.pow import solve
from secretlink.crypto.proof import prove
from secretlink.ops import onion as listener
from secretlink.ops.asgi import error_headers
from secretlink.settings import Settings, SettingsError
from secretlink.web.onion import CIRCUIT_HEADER, header_value, relay_token

ONION_HOST = "abcdefghijklmnopqrstuvwxyz234567abcdefghijklmnopqrstuvwx.onion"
ONION = f"http://{ONION_HOST}"
PUBLIC = "https://secretlink.example"
SECRET_KEY = "s" * 40


def onion_app(tmp_path, **more):
    return create_app(
        Settings(
            data_dir=tmp_path / "data",
            base_url=PUBLIC,
            onion_url=ONION,
            secret_key=SECRET_KEY,
            **({"pow_difficulty": 0} | more),
        )
    )


# ---- the settings ----


@pytest.mark.parametrize(
    "value",
    [
        f"https://{ONION_HOST}",  # tor serves the onion name as plain HTTP
        "http://x.onion",  # a v2-style or made-up name
        f"http://{ONION_HOST[:-6]}a.onion",  # 57 characters
        "http://" + "1" * 56 + ".onion",  # 1 is not base32
        f"http://{ONION_HOST}/secretlink",  # a path
        "http://secretlink.example",
        f"ftp://{ONION_HOST}",
    ],
)
def test_onion_url_must_be_an_http_v3_onion_origin(value):
    with pytest.raises(SettingsError, match="SECRETLINK_ONION_URL"):
        Settings.from_env({"SECRETLINK_ONION_URL": value})


def test_onion_url_is_kept_as_an_origin():
    settings = Settings.from_env({"SECRETLINK_ONION_URL": ONION.upper().replace("HTTP", "http")})
    assert settings.onion_url == ONION


@pytest.mark.parametrize(
    ("value", "parsed"), [("127.0.0.1:8081", ("127.0.0.1", 8081)), ("[::1]:8081", ("::1", 8081))]
)
def test_onion_listen_is_host_and_port(value, parsed):
    environ = {"SECRETLINK_ONION_URL": ONION, "SECRETLINK_ONION_LISTEN": value}
    assert Settings.from_env(environ).onion_listen == parsed


@pytest.mark.parametrize("value", ["8081", "127.0.0.1", "::1:8081", "[::1:8081", "h:0", "h:99999"])
def test_bad_onion_listen_is_refused(value):
    environ = {"SECRETLINK_ONION_URL": ONION, "SECRETLINK_ONION_LISTEN": value}
    with pytest.raises(SettingsError, match="SECRETLINK_ONION_LISTEN"):
        Settings.from_env(environ)


def test_onion_listen_needs_the_onion_url():
    with pytest.raises(SettingsError, match="needs SECRETLINK_ONION_URL"):
        Settings.from_env({"SECRETLINK_ONION_LISTEN": "127.0.0.1:8081"})


# ---- headers, links and proofs per origin ----


def test_public_pages_point_to_the_same_page_on_the_onion_origin(tmp_path):
    client = onion_app(tmp_path).test_client()
    answer = client.get("/inbox?lang=de&x=%2F", base_url=PUBLIC)
    assert answer.headers["Onion-Location"] == f"{ONION}/inbox?lang=de&x=%2F"
    assert answer.headers["Strict-Transport-Security"] == "max-age=63072000"
    assert client.get("/", base_url=PUBLIC).headers["Onion-Location"] == f"{ONION}/"
    key = generate_keypair().public_key_text
    missing = client.get(f"/to/{key}", base_url=PUBLIC)  # an error page is a page too
    assert missing.status_code == 404
    assert missing.headers["Onion-Location"] == f"{ONION}/to/{key}"
    # Not on API answers (JSON): Tor Browser reads it on pages only.
    assert "Onion-Location" not in client.get("/healthz", base_url=PUBLIC).headers
    assert "Onion-Location" not in client.post("/api/v1/auth/challenge", base_url=PUBLIC).headers


def test_onion_origin_gets_no_hsts_and_no_onion_location(tmp_path):
    client = onion_app(tmp_path).test_client()
    # https:// here stands for a TLS hop between the listener and the app: the request
    # counts as secure, and still the onion name must not be pinned to TLS.
    for base in (ONION, f"https://{ONION_HOST}:80"):
        answer = client.get("/", base_url=base)
        assert answer.status_code == 200
        assert "Strict-Transport-Security" not in answer.headers
        assert "Onion-Location" not in answer.headers


def test_refusals_before_the_app_send_no_hsts_to_the_onion_name():
    """Answers made before the app runs (408, 413 ...) follow the same rule."""
    for host, hsts in ((ONION_HOST.encode(), False), (b"secretlink.example", True)):
        scope = {"scheme": "https", "headers": [(b"host", host)]}
        names = {name for name, _ in error_headers(scope, b"{}")}
        assert (b"strict-transport-security" in names) is hsts


def test_without_an_onion_origin_no_onion_location(tmp_path):
    app = create_app(Settings(data_dir=tmp_path / "data", base_url=PUBLIC))
    assert "Onion-Location" not in app.test_client().get("/", base_url=PUBLIC).headers


def token_for(client, keypair, base: str, proven_for: str) -> int:
    """Ask for a challenge on `base` and answer it with a proof made for `proven_for`."""
    challenge = client.post(
        "/api/v1/auth/challenge", json={"public_key": keypair.public_key_text}, base_url=base
    ).get_json()
    mac = prove(
        keypair.secret_key,
        b64decode(challenge["server_key"]),
        b64decode(challenge["nonce"]),
        challenge["expires_at"],
        proven_for,
    )
    return client.post(
        "/api/v1/auth/token",
        json={"challenge": challenge["challenge"], "proof": b64encode(mac)},
        base_url=base,
    )


def test_links_and_proofs_on_the_onion_host_use_the_onion_origin(tmp_path):
    client = onion_app(tmp_path, pow_difficulty=1).test_client()
    keypair = generate_keypair()
    # A proof is bound to the origin the request's Host names.
    assert token_for(client, keypair, ONION, PUBLIC).status_code == 401
    assert token_for(client, keypair, PUBLIC, ONION).status_code == 401
    answer = token_for(client, keypair, ONION, ONION)
    assert answer.status_code == 200
    token = answer.get_json()["token"]
    puzzle = client.post(
        f"/api/v1/inboxes/{keypair.public_key_text}/creation-puzzle", base_url=ONION
    ).get_json()
    created = client.put(
        f"/api/v1/inboxes/{keypair.public_key_text}",
        json={
            "prompt": "",
            "puzzle": puzzle["puzzle"],
            "solution": solve(puzzle["puzzle"], puzzle["difficulty"]),
        },
        headers={"Authorization": f"Bearer {token}"},
        base_url=ONION,
    )
    assert created.status_code == 201
    assert created.get_json()["link"] == f"{ONION}/to/{keypair.public_key_text}"
    # The sender page's command line names the onion link, through Tor's SOCKS port.
    page = client.get(f"/to/{keypair.public_key_text}", base_url=ONION).get_data(as_text=True)
    assert (
        f"secretlink --proxy socks5h://127.0.0.1:9050 send {ONION}/to/{keypair.public_key_text}"
        in page
    )
    public_page = client.get(f"/to/{keypair.public_key_text}", base_url=PUBLIC)
    assert f"secretlink send {PUBLIC}/to/{keypair.public_key_text}" in public_page.get_data(
        as_text=True
    )


# ---- the circuit header: only the onion listener can name a circuit ----


def post_junk(client, keypair, headers=None):
    return client.post(
        f"/api/v1/inboxes/{keypair.public_key_text}/messages",
        json={"ciphertext": "not an envelope"},
        headers=headers or {},
        base_url=ONION,
        environ_base={"REMOTE_ADDR": "127.0.0.1"},  # every onion client: the local tor
    )


def circuit_headers(circuit: str, token: str | None = None) -> dict:
    return {CIRCUIT_HEADER: header_value(token or relay_token(SECRET_KEY), circuit)}


def test_circuits_have_separate_limits(tmp_path):
    app = onion_app(tmp_path, rate_limit_client="2/minute")
    keypair = generate_keypair()  # junk counts whether or not the inbox exists
    client = app.test_client()
    a, b = circuit_headers("fc00:dead:beef:4dad::1"), circuit_headers("fc00:dead:beef:4dad::2")
    assert [post_junk(client, keypair, a).status_code for _ in range(3)] == [400, 400, 429]
    assert post_junk(client, keypair, b).status_code == 400  # not 429: its own budget


def test_a_forged_circuit_header_counts_as_the_address(tmp_path):
    """Without the listener's token a made-up circuit is ignored: a client cannot pick
    a fresh "circuit" for each request to dodge its limit."""
    app = onion_app(tmp_path, rate_limit_client="2/minute")
    keypair = generate_keypair()
    client = app.test_client()
    forged = [circuit_headers(f"fc00::{n}", token="0" * 64) for n in range(3)]
    assert [post_junk(client, keypair, h).status_code for h in forged] == [400, 400, 429]
    # Its address (the loopback tor would use) is what was counted: a header-less
    # request from it is refused too.
    assert post_junk(client, keypair).status_code == 429


# ---- the PROXY protocol header ----

TOR_LINE = b"PROXY TCP6 fc00:dead:beef:4dad::ffff:ffff ::1 65535 42\r\n"


def v2_header(source: str, command: int = 0x21, family: int = 0x21, extra: bytes = b"") -> bytes:
    addresses = IPv6Address(source).packed + IPv6Address("::1").packed + struct.pack("!HH", 1, 80)
    body = addresses + extra
    return listener.V2_SIGNATURE + bytes([command, family]) + struct.pack("!H", len(body)) + body


def test_tor_v1_header_gives_the_circuit_address():
    assert listener.parse_proxy_header(TOR_LINE + b"GET /") == (
        "fc00:dead:beef:4dad::ffff:ffff",
        len(TOR_LINE),
    )


def test_v2_header_gives_the_source_address():
    header = v2_header("fc00:dead:beef:4dad::7")
    assert listener.parse_proxy_header(header + b"GET /") == ("fc00:dead:beef:4dad::7", 52)


@pytest.mark.parametrize("cut", [1, 5, 6, 20, len(TOR_LINE) - 1])
def test_an_incomplete_v1_header_asks_for_more(cut):
    assert listener.parse_proxy_header(TOR_LINE[:cut]) is None


@pytest.mark.parametrize("cut", [1, 12, 15, 16, 51])
def test_an_incomplete_v2_header_asks_for_more(cut):
    assert listener.parse_proxy_header(v2_header("fc00::1")[:cut]) is None


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "proxy_header_required"),
        (b"\x16\x03\x01\x02\x00", "proxy_header_required"),  # a TLS ClientHello
        (b"proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n", "proxy_header_required"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", "bad_proxy_header"),  # bare LF
        (b"PROXY " + b"A" * 120, "bad_proxy_header"),  # longer than any v1 line
        (b"PROXY UNKNOWN\r\n", "bad_proxy_header"),  # no client to tell apart
        (b"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n", "bad_proxy_header"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", "bad_proxy_header"),
        (b"PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n", "bad_proxy_header"),
        (b"PROXY TCP4 1.2.3.400 5.6.7.8 1 2\r\n", "bad_proxy_header"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n", "bad_proxy_header"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 70000\r\n", "bad_proxy_header"),
        (b"PROXY TCP6 fc00::zz ::1 1 2\r\n", "bad_proxy_header"),
        (v2_header("fc00::1", command=0x20), "bad_proxy_header"),  # LOCAL
        (v2_header("fc00::1", command=0x11), "bad_proxy_header"),  # version 1 in v2 form
        (v2_header("fc00::1", command=0x2F), "bad_proxy_header"),  # unknown command
        (v2_header("fc00::1", family=0x31), "bad_proxy_header"),  # a Unix socket
        (listener.V2_SIGNATURE + b"\x21\x21\x00\x0a" + b"\x00" * 10, "bad_proxy_header"),
        (listener.V2_SIGNATURE + b"\x21\x21\xff\xff", "bad_proxy_header"),  # 64 KiB: too long
    ],
)
def test_malformed_or_missing_headers_are_refused(data, code):
    with pytest.raises(listener.Refusal) as refused:
        listener.parse_proxy_header(data)
    assert refused.value.code == code and refused.value.status == 400


def test_head_is_passed_on_with_the_circuit_and_connection_close():
    head = (
        b"POST /x HTTP/1.1\r\nHost: a.onion\r\nConnection: keep-alive\r\n"
        b"Secretlink-Onion-Circuit: forged fc00::9\r\nX-Forwarded-For: 203.0.113.1\r\n"
        b"forwarded: for=x\r\nContent-Length: 2"
    )
    rewritten = listener.rewrite_head(head, "token fc00::1")
    assert rewritten == (
        b"POST /x HTTP/1.1\r\nHost: a.onion\r\nContent-Length: 2\r\nConnection: close\r\n"
        b"Secretlink-Onion-Circuit: token fc00::1\r\n\r\n"
    )


@pytest.mark.parametrize(
    "head",
    [
        b"GET / HTTP/1.1\r\nHost: a\r\n folded",
        b"GET / HTTP/1.1\r\nHost: a\nX: y",
        b"GET / HTTP/1.1\r\nHost : a",
        b"GET / HTTP/1.1\r\nno colon",
    ],
)
def test_malformed_heads_are_refused(head):
    with pytest.raises(listener.Refusal) as refused:
        listener.rewrite_head(head, "t c")
    assert refused.value.status == 400


def read_head_of(data: bytes):
    async def run():
        reader = asyncio.StreamReader()
        reader.feed_data(data)
        reader.feed_eof()
        return await listener.read_head(reader, b"")

    return asyncio.run(run())


def test_request_head_is_read_up_to_its_blank_line():
    assert read_head_of(b"\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\nbody") == (
        b"GET / HTTP/1.1\r\nHost: a",
        b"body",
    )


def test_request_headers_over_16_kib_are_refused():
    with pytest.raises(listener.Refusal) as refused:
        read_head_of(b"GET / HTTP/1.1\r\nX: " + b"a" * 17000 + b"\r\n\r\n")
    assert refused.value.status == 431


# ---- against the real `secretlink serve` ----


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def exchange(port: int, data: bytes, timeout: float = 10) -> bytes:
    """Send `data` on a fresh connection and read until the other side closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


def onion_request(port: int, proxy_header: bytes, path: str, body: bytes) -> bytes:
    request = (
        f"POST {path} HTTP/1.1\r\nHost: {ONION_HOST}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    return exchange(port, proxy_header + request + body)


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


def test_onion_clients_on_other_circuits_keep_their_own_limits(tmp_path):
    """Against the real `secretlink serve`: one onion client's junk (circuit A) gets it
    429, while another onion client (circuit B) is still answered. Bounded: a handful
    of requests, one worker, a limit of 2 a minute."""
    onion_port = free_port()
    env = {
        "SECRETLINK_ONION_URL": ONION,
        "SECRETLINK_ONION_LISTEN": f"127.0.0.1:{onion_port}",
        "SECRETLINK_RATE_LIMITS_ENABLED": "true",
        "SECRETLINK_RATE_LIMIT_AUTH": "2/minute",
        "SECRETLINK_HEADER_TIMEOUT": "2",
        "SECRETLINK_LOG_LEVEL": "DEBUG",
    }
    circuit_a = b"PROXY TCP6 fc00:dead:beef:4dad::a1:a1 ::1 41111 80\r\n"
    circuit_b = v2_header("fc00:dead:beef:4dad::b2:b2")
    challenge = json.dumps({"public_key": generate_keypair().public_key_text}).encode()
    with serving(tmp_path, "--workers", "1", env=env) as served:
        junk = [
            status_of(onion_request(onion_port, circuit_a, "/api/v1/auth/challenge", b"{"))
            for _ in range(3)
        ]
        assert junk == [400, 400, 429]
        answer = onion_request(onion_port, circuit_b, "/api/v1/auth/challenge", challenge)
        assert status_of(answer) == 200, answer
        # A second request on circuit B's connection would carry no header of its
        # own: the app closes after each answer (Connection: close).
        assert b"connection: close" in answer.lower()

        # Without a PROXY header: refused before any HTTP, and closed.
        refused = exchange(
            onion_port, b"GET / HTTP/1.1\r\nHost: " + ONION_HOST.encode() + b"\r\n\r\n"
        )
        assert status_of(refused) == 400 and b"proxy_header_required" in refused
        # A header that never completes: answered within the header timeout.
        started = time.monotonic()
        slow = exchange(onion_port, b"PROXY TCP6 fc00::1", timeout=15)
        assert status_of(slow) == 408 and time.monotonic() - started < 12
        # The public listener reads no PROXY header: to it this is a malformed request.
        public_port = int(served.url.rsplit(":", 1)[1])
        assert status_of(exchange(public_port, circuit_a + b"GET /healthz HTTP/1.1\r\n\r\n")) == 400
    assert served.process.returncode == 0  # SIGTERM: a clean stop, the listener with it
    output = served.output()
    assert "onion listener on 127.0.0.1" in output
    assert "HiddenServiceExportCircuitID" in output  # the refusal told the operator why
    for secret in ("a1:a1", "b2:b2", "fc00:dead:beef"):
        assert secret not in output  # circuits, like addresses, are never logged


# ---- the CLI through a SOCKS proxy ----


class Socks5Server:
    """A tiny SOCKS5 proxy (no authentication, CONNECT only) that records the names it
    is asked to reach and connects every request to one real server instead."""

    def __init__(self, target_port: int):
        self.target_port = target_port
        self.asked: list[tuple[str, int]] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # closed
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        with client:
            client.settimeout(10)
            version, methods = client.recv(2)
            assert version == 5
            client.recv(methods)
            client.sendall(b"\x05\x00")
            head = client.recv(4)
            assert head[:3] == b"\x05\x01\x00"
            if head[3] == 3:  # a name, for the proxy to resolve (socks5h)
                name = client.recv(client.recv(1)[0]).decode()
            else:  # an address the client resolved itself
                name = "resolved locally: " + client.recv(4 if head[3] == 1 else 16).hex()
            port = struct.unpack("!H", client.recv(2))[0]
            self.asked.append((name, port))
            upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=10)
            client.sendall(b"\x05\x00\x00\x01" + bytes(6))
            with upstream:
                relay_both_ways(client, upstream)

    def close(self) -> None:
        self.listener.close()


def relay_both_ways(a: socket.socket, b: socket.socket) -> None:
    def copy(source, target):
        try:
            while data := source.recv(65536):
                target.sendall(data)
        except OSError:
            pass
        with contextlib.suppress(OSError):
            target.shutdown(socket.SHUT_WR)

    other = threading.Thread(target=copy, args=(b, a), daemon=True)
    other.start()
    copy(a, b)
    other.join(timeout=10)


@pytest.fixture
def onion_server(tmp_path):
    with serving_in_thread(tmp_path / "live", onion_url=ONION) as server:
        port = int(server.url.rsplit(":", 1)[1])
        socks = Socks5Server(port)
        try:
            yield server, socks
        finally:
            socks.close()


def cli(*args: str, input: str | None = None):
    """The CLI in this process; its --proxy lasts for the process (the CLI's one
    command), so it is set back afterwards for the test's own requests."""
    try:
        return CliRunner().invoke(main, list(args), input=input)
    finally:
        proxy.use(None)


# An onion link is http://, so HTTP_PROXY is the scheme's variable (HTTPS_PROXY would be
# an https:// link's); ALL_PROXY covers both.
@pytest.mark.parametrize("through", ["option", "ALL_PROXY", "HTTP_PROXY"])
def test_cli_sends_to_an_onion_link_through_socks5h(onion_server, monkeypatch, through):
    server, socks = onion_server
    keypair = generate_keypair()
    InboxClient(server.url, keypair).register("")
    url = f"socks5h://127.0.0.1:{socks.port}"
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    args = ["--proxy", url] if through == "option" else []
    if through != "option":
        monkeypatch.setenv(through, url)
    result = cli(*args, "send", f"{ONION}/to/{keypair.public_key_text}", input="via tor")
    assert result.exit_code == 0, result.output
    # The proxy was asked for the onion name itself: it was never resolved here.
    assert socks.asked and set(socks.asked) == {(ONION_HOST, 80)}
    texts = [
        open_envelope(b64decode(entry.ciphertext), keypair.secret_key).text
        for entry in InboxClient(server.url, keypair).messages()
    ]
    assert texts == ["via tor"]


def test_option_wins_over_the_environment(onion_server, monkeypatch):
    server, socks = onion_server
    keypair = generate_keypair()
    InboxClient(server.url, keypair).register("")
    monkeypatch.setenv("ALL_PROXY", "socks5h://127.0.0.1:1")  # nothing listens there
    link = f"{ONION}/to/{keypair.public_key_text}"
    assert (
        cli("--proxy", f"socks5h://127.0.0.1:{socks.port}", "send", link, input="x").exit_code == 0
    )
    assert socks.asked


def test_onion_link_without_a_proxy_is_stopped_before_sending(onion_server, monkeypatch):
    _, socks = onion_server
    for name in ("ALL_PROXY", "all_proxy", "HTTP_PROXY", "http_proxy", "HTTPS_PROXY"):
        monkeypatch.delenv(name, raising=False)
    link = f"{ONION}/to/{generate_keypair().public_key_text}"
    result = cli("send", link, input="x")
    assert result.exit_code == 1
    assert "is an onion address" in result.output and "--proxy socks5h://" in result.output
    # socks5:// would have this computer resolve the onion name: refused too.
    result = cli("--proxy", f"socks5://127.0.0.1:{socks.port}", "send", link, input="x")
    assert result.exit_code == 1 and "use socks5h://" in result.output
    assert socks.asked == []


@pytest.mark.parametrize("value", ["127.0.0.1:9050", "ftp://h:1", "socks5h://", "socks5h://h:x"])
def test_bad_proxy_option_is_one_clear_line(value):
    result = cli("--proxy", value, "send", f"{ONION}/to/{generate_keypair().public_key_text}")
    assert result.exit_code == 1 and "--proxy" in result.output
