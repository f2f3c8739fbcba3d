"""The `secretlink` command against a real server on a real socket."""

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import serve_in_thread, serving_in_thread

from secretlink.client.cli import main
from secretlink.crypto import generate_keypair
from secretlink.crypto.envelope import MAX_TEXT_BYTES
from secretlink.crypto.keyfile import load_key_file
from secretlink.crypto.keys import keypair_from_secret
from secretlink.settings import Settings

# Fixed, not random: pytest-xdist's workers must collect the same test ids.
A_KEY = keypair_from_secret(bytes(range(1, 33))).public_key_text


def run(*args: str, stdin: str | None = None):
    return CliRunner().invoke(main, list(args), input=stdin, catch_exceptions=False)


def assert_fails_cleanly(result, *fragments: str):
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


@pytest.fixture
def key_file(tmp_path) -> str:
    path = str(tmp_path / "inbox.key")
    assert run("keygen", "--key-file", path).exit_code == 0
    return path


@pytest.fixture
def link(live_server, key_file) -> str:
    result = run(
        "inbox", "create", "--server", live_server.url, "--key-file", key_file, "--prompt", "Say it"
    )
    assert result.exit_code == 0, result.output
    return result.stdout.strip()


def read_json(server: str, key_file: str) -> list[dict]:
    result = run("inbox", "read", "--server", server, "--key-file", key_file, "--json")
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def test_keygen_writes_a_private_file_and_prints_the_public_key(tmp_path):
    path = tmp_path / "k.json"
    result = run("keygen", "--key-file", str(path))
    assert result.exit_code == 0
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert load_key_file(path.read_bytes()).keypair.public_key_text == result.stdout.strip()


def test_keygen_refuses_to_overwrite(key_file):
    before = Path(key_file).read_text()
    assert_fails_cleanly(run("keygen", "--key-file", key_file), "refusing to overwrite")
    assert Path(key_file).read_text() == before


def test_create_prints_the_link(link, live_server, key_file):
    public_key = load_key_file(Path(key_file).read_bytes()).keypair.public_key_text
    assert link == f"{live_server.url}/to/{public_key}"


def test_send_from_stdin_and_argument_then_read(link, live_server, key_file):
    assert run("send", link, stdin="from stdin\n").exit_code == 0
    assert run("send", link, "from argument").exit_code == 0
    messages = read_json(live_server.url, key_file)
    assert [m["text"] for m in messages] == ["from argument", "from stdin"]
    assert all(m["id"] and m["received_at"].endswith("Z") for m in messages)


def test_plain_read_shows_text_and_ids(link, live_server, key_file):
    run("send", link, stdin="line one\nline two")
    result = run("inbox", "read", "--server", live_server.url, "--key-file", key_file)
    assert "\n| line one\n| line two\n" in result.stdout
    assert result.stdout.startswith("--- ") and "id " in result.stdout


def test_delete(link, live_server, key_file):
    run("send", link, "keep")
    run("send", link, "drop")
    drop = next(m for m in read_json(live_server.url, key_file) if m["text"] == "drop")
    result = run("inbox", "delete", "--server", live_server.url, "--key-file", key_file, drop["id"])
    assert result.exit_code == 0
    assert [m["text"] for m in read_json(live_server.url, key_file)] == ["keep"]
    assert_fails_cleanly(
        run("inbox", "delete", "--server", live_server.url, "--key-file", key_file, drop["id"]),
        "404",
    )


def test_delete_takes_an_id_that_starts_with_a_dash(link, live_server, key_file):
    # One id in 64 starts with "-": it must reach the server, not fail as an option.
    result = run("inbox", "delete", "--server", live_server.url, "--key-file", key_file, "-AbC")
    assert_fails_cleanly(result, "404")


def test_read_pages_through_more_than_one_page(link, live_server, key_file):
    for i in range(55):
        run("send", link, f"message {i}")
    texts = [m["text"] for m in read_json(live_server.url, key_file)]
    assert texts == [f"message {i}" for i in reversed(range(55))]


def test_a_failing_later_page_fails_the_read_cleanly(link, live_server, key_file, monkeypatch):
    """The next page is fetched in a thread while this one is opened: its failure still
    reaches the command as one clear line, and nothing is printed as if read."""
    from secretlink.client.http import Api, ClientError

    for i in range(55):
        run("send", link, f"message {i}")
    call = Api.call

    def second_page_fails(self, method, path, **kwargs):
        if (kwargs.get("params") or {}).get("before"):
            raise ClientError("the connection to the server broke")
        return call(self, method, path, **kwargs)

    monkeypatch.setattr(Api, "call", second_page_fails)
    result = run("inbox", "read", "--server", live_server.url, "--key-file", key_file, "--json")
    assert_fails_cleanly(result, "the connection to the server broke")
    assert result.stdout == ""


def test_server_comes_from_the_key_file_when_not_given(live_server, tmp_path):
    path = str(tmp_path / "with-server.key")
    run("keygen", "--key-file", path, "--server", live_server.url)
    result = run("inbox", "create", "--key-file", path)
    assert result.exit_code == 0 and result.stdout.startswith(live_server.url + "/to/")


# ---- failures: one clear line, non-zero exit ----


def test_server_down(key_file):
    assert_fails_cleanly(
        run("inbox", "read", "--server", "http://127.0.0.1:9", "--key-file", key_file),
        "cannot reach the server",
    )


def test_create_with_the_server_down(key_file):
    assert_fails_cleanly(
        run("inbox", "create", "--server", "http://127.0.0.1:9", "--key-file", key_file),
        "cannot reach the server at http://127.0.0.1:9",
    )


def test_wrong_key_reads_nothing(link, live_server, tmp_path):
    other = str(tmp_path / "other.key")
    run("keygen", "--key-file", other)
    assert_fails_cleanly(
        run("inbox", "read", "--server", live_server.url, "--key-file", other),
        "no inbox with this key",
    )


def test_send_to_unknown_inbox(live_server):
    link = f"{live_server.url}/to/{generate_keypair().public_key_text}"
    assert_fails_cleanly(run("send", link, "hello"), "no inbox")


@pytest.mark.parametrize(
    ("link", "expected"),
    [
        ("not a link", "not a secretlink link"),
        ("http://127.0.0.1/to/short", "damaged"),
        ("http://127.0.0.1/to/" + "A" * 43, "damaged"),  # the all-zero, low-order key
        ("ftp://host/to/" + "B" * 43, "not a secretlink link"),
        # Ports and hosts urlsplit cannot read raise ValueError there.
        (f"https://h:99999/to/{A_KEY}", "not a secretlink link"),
        (f"http://h:abc/to/{A_KEY}", "not a secretlink link"),
        (f"http://h:-1/to/{A_KEY}", "not a secretlink link"),
        (f"http://[::1/to/{A_KEY}", "not a secretlink link"),
        (f"http://h:0/to/{A_KEY}", "not a secretlink link"),
    ],
)
def test_bad_links(link, expected):
    assert_fails_cleanly(run("send", link, "hello"), expected)


@pytest.mark.parametrize("server", ["http://h:99999", "http://h:abc", "http://[::1", "ftp://h"])
def test_bad_server_urls(server, key_file, tmp_path):
    for args in (
        ["keygen", "--key-file", str(tmp_path / "new.key")],
        ["inbox", "read", "--key-file", key_file],
        ["inbox", "create", "--key-file", key_file],
    ):
        assert_fails_cleanly(run(*args, "--server", server), "server must be an http")
    assert not (tmp_path / "new.key").exists()


def test_serve_help_shows_the_real_defaults():
    """The help text is made from the settings, so it cannot drift from them."""
    help_text = " ".join(run("serve", "--help").stdout.split())
    for option, name in [("--threads", "THREADS"), ("--workers", "WORKERS"), ("--port", "PORT")]:
        default = getattr(Settings(), name.lower())
        assert f"[SECRETLINK_{name}, default {default}]" in help_text, option


def test_empty_and_oversized_messages_are_not_sent(link, live_server, key_file):
    assert_fails_cleanly(run("send", link, stdin="\n"), "empty")
    assert_fails_cleanly(run("send", link, "x" * (MAX_TEXT_BYTES + 1)), "longer than")
    assert read_json(live_server.url, key_file) == []


def test_missing_and_broken_key_files(tmp_path, live_server):
    assert_fails_cleanly(
        run("inbox", "read", "--server", live_server.url, "--key-file", str(tmp_path / "absent")),
        "does not exist",
    )
    broken = tmp_path / "broken.key"
    broken.write_text('{"format": "secretlink-key", "version": 1}')
    assert_fails_cleanly(
        run("inbox", "read", "--server", live_server.url, "--key-file", str(broken)),
        "malformed key",
    )


def test_missing_server(key_file):
    assert_fails_cleanly(run("inbox", "read", "--key-file", key_file), "--server")


def test_not_a_secretlink_server(key_file, tmp_path):
    """A web server that answers HTML to everything gets a clear refusal, not a traceback."""
    import functools
    import http.server

    (tmp_path / "index.html").write_text("<h1>hello</h1>")

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = functools.partial(Quiet, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    serve_in_thread(server)
    try:
        result = run(
            "inbox",
            "read",
            "--server",
            f"http://127.0.0.1:{server.server_port}",
            "--key-file",
            key_file,
        )
    finally:
        server.shutdown()
        server.server_close()
    assert_fails_cleanly(result, "refused")


def test_installed_command_fails_without_traceback(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "secretlink.client.cli", "send", "http://127.0.0.1:9/to/x", "hi"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().count("\n") == 0 and "damaged" in result.stderr


def test_a_link_with_another_key_from_the_server_is_refused(live_server, key_file, monkeypatch):
    """A server that answers registration with a link to a key of its own is caught."""
    from secretlink.client.http import Api

    real_call = Api.call
    swapped = f"{live_server.url}/to/{generate_keypair().public_key_text}"

    def lying_call(self, method, path, **kwargs):
        data = real_call(self, method, path, **kwargs)
        return data | {"link": swapped} if method == "PUT" else data

    monkeypatch.setattr(Api, "call", lying_call)
    result = run("inbox", "create", "--server", live_server.url, "--key-file", key_file)
    assert_fails_cleanly(result, "another key")
    assert swapped not in result.stdout


# ---- key files from the browser ----


def browser_key_file() -> str:
    """A key file written by the browser's own code (crypto/secretlink.js dumpKeyFile, as
    the inbox page's download), naming a server where nothing listens."""
    from test_crypto_interop import js

    return js([{"op": "keygen"}])[0]["key_file"]


def spec_vector_key_file() -> str:
    """The spec's vector of a key file with a server (crypto/vectors/key_file.json)."""
    from conftest import ROOT

    cases = json.loads((ROOT / "crypto" / "vectors" / "key_file.json").read_text())["cases"]
    return next(case for case in cases if case["desc"] == "with server")["text"]


@pytest.mark.parametrize("make", [browser_key_file, spec_vector_key_file])
def test_browser_key_files_create_and_read(make, live_server, tmp_path):
    path = tmp_path / "downloaded.key"
    path.write_text(make())
    public_key = load_key_file(path.read_bytes()).keypair.public_key_text
    # --server wins over the file's server, which does not answer here.
    result = run("inbox", "create", "--server", live_server.url, "--key-file", str(path))
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == f"{live_server.url}/to/{public_key}"
    assert run("send", result.stdout.strip(), "to a browser's key").exit_code == 0
    assert [m["text"] for m in read_json(live_server.url, str(path))] == ["to a browser's key"]


# ---- the link the server returns (SPEC 4.4): a proxy that rewrites it ----


class LinkRewritingProxy:
    """A real HTTP proxy in front of a server whose origin it is: it passes everything
    through (Host included, so the proof of possession is made for the proxy's origin)
    but changes the `link` in the answer to PUT /api/v1/inboxes/<key> with
    `rewrite(link)`. It binds first; `upstream` is set once the server behind it runs."""

    def __init__(self, rewrite):
        self.upstream = ""
        proxy = self
        import http.server

        import requests

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def relay(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {k: v for k, v in self.headers.items() if k.lower() != "content-length"}
                answer = requests.request(
                    self.command, proxy.upstream + self.path, data=body, headers=headers, timeout=30
                )
                content = answer.content
                if self.command == "PUT" and answer.ok:
                    data = answer.json()
                    data["link"] = rewrite(data["link"])
                    content = json.dumps(data).encode()
                self.send_response(answer.status_code)
                self.send_header("Content-Type", answer.headers.get("Content-Type", ""))
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            do_GET = do_POST = do_PUT = do_DELETE = relay

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        serve_in_thread(self.server)

    def close(self):
        self.server.shutdown()
        self.server.server_close()


OTHER_KEY = generate_keypair().public_key_text


@pytest.mark.parametrize(
    ("rewrite", "expected"),
    [
        (lambda link: link, None),  # the proxy itself is honest: creating works
        (lambda link: link.rsplit("/", 1)[0] + "/" + OTHER_KEY, "another key"),
        (lambda link: link.replace("/to/", "/prefix/to/"), "not this inbox's own"),
        (lambda link: link + "?ref=1", "not this inbox's own"),
        (lambda link: link + "#x", "not this inbox's own"),
        (lambda link: link + "/", "not this inbox's own"),
        (lambda link: "https://elsewhere.example/to/" + link.rsplit("/", 1)[1], "not this inbox"),
        (lambda link: None, "not this inbox's own"),
    ],
)
def test_inbox_create_refuses_a_link_that_is_not_its_own(rewrite, expected, tmp_path, key_file):
    proxy = LinkRewritingProxy(rewrite)
    try:
        # The instance's origin is the proxy's, as behind any reverse proxy.
        with serving_in_thread(tmp_path / "behind", origin=lambda _: proxy.url) as upstream:
            proxy.upstream = upstream.url
            result = run("inbox", "create", "--server", proxy.url, "--key-file", key_file)
    finally:
        proxy.close()
    public_key = load_key_file(Path(key_file).read_bytes()).keypair.public_key_text
    if expected is None:
        assert result.exit_code == 0, result.stderr
        assert result.stdout.strip() == f"{proxy.url}/to/{public_key}"
    else:
        assert_fails_cleanly(result, expected, "do not use this server")
        assert result.stdout == ""


@pytest.mark.parametrize(
    ("link", "expected"),
    [
        (f"http://127.0.0.1:1/prefix/to/{A_KEY}", "not a secretlink link"),
        (f"http://127.0.0.1:1//to/{A_KEY}", "not a secretlink link"),
        (f"http://127.0.0.1:1/to/{A_KEY}/", "not a secretlink link"),
        (f"http://127.0.0.1:1/to/{A_KEY}/x", "not a secretlink link"),
        (f"http://user@127.0.0.1:1/to/{A_KEY}", "not a secretlink link"),
    ],
)
def test_links_with_a_path_prefix_or_user_are_refused(link, expected):
    assert_fails_cleanly(run("send", link, "hello"), expected)


def test_a_link_s_query_and_fragment_are_ignored(link, live_server, key_file):
    assert run("send", link + "?utm_source=chat#top", "through a decorated link").exit_code == 0
    assert [m["text"] for m in read_json(live_server.url, key_file)] == ["through a decorated link"]


def test_send_strips_one_line_ending_from_standard_input(link, live_server, key_file):
    for stdin in ("two endings\n\n", "crlf\r\n", "spaces kept  \n", "no ending"):
        assert run("send", link, stdin=stdin).exit_code == 0
    assert run("send", link, " argument kept as given\n").exit_code == 0
    assert_fails_cleanly(run("send", link, stdin=" \t\n"), "empty or only white space")
    texts = [m["text"] for m in read_json(live_server.url, key_file)]
    assert texts == [
        " argument kept as given\n",
        "no ending",
        "spaces kept  ",
        "crlf",
        "two endings\n",
    ]


def test_blank_means_what_the_sender_page_s_trim_removes(link, live_server, key_file):
    """SPEC 5.6: the CLI and the page refuse the same texts as white space only."""
    for blank in ("\ufeff", "\u3000\u00a0", "\u2028"):
        assert_fails_cleanly(run("send", link, blank), "empty or only white space")
    assert run("send", link, "\x1c").exit_code == 0  # not white space to JavaScript
    assert [m["text"] for m in read_json(live_server.url, key_file)] == ["\x1c"]


def test_a_full_inbox_is_reported_to_sender_and_owner(link, live_server, key_file, monkeypatch):
    from secretlink.store.quotas import Quotas

    storage = live_server.app.extensions["secretlink.storage"]
    monkeypatch.setattr(storage._gate, "quotas", Quotas(inbox_messages=1))
    assert run("send", link, "first").exit_code == 0
    assert_fails_cleanly(run("send", link, "second"), "409", "this inbox is full")
    result = run("inbox", "read", "--server", live_server.url, "--key-file", key_file)
    assert result.exit_code == 0
    assert "warning: this inbox is full (1 of 1 messages" in result.stderr
    assert "first" in result.stdout


def test_reading_an_inbox_with_room_prints_no_warning(link, live_server, key_file):
    run("send", link, "hello")
    result = run("inbox", "read", "--server", live_server.url, "--key-file", key_file)
    assert "full" not in result.stderr
