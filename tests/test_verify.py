"""`secretlink verify` against real servers: the unmodified app, and tampered copies."""

import socket
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from flask import Flask, Response, request

from secretlink.client.cli import main
from secretlink.client.verify import LOCAL_ORIGIN, PageParser, Ref, sri
from secretlink.crypto import generate_keypair

# Everything a prompt's escaping has to survive on the way out and back.
TRICKY_PROMPT = "Say <b>\"it\"</b> & 'more' &amp;\nsecond line"


def run_verify(*args: str) -> Result:
    return CliRunner().invoke(main, ["verify", *args], catch_exceptions=False)


def different_lines(result: Result) -> list[str]:
    return [line for line in result.stdout.splitlines() if line.startswith("DIFFERENT:")]


def add_inbox(app: Flask, prompt: str = "") -> str:
    key = generate_keypair().public_key_text
    app.extensions["secretlink.storage"].save_inbox(key, prompt)
    return key


def tamper(app: Flask, change: Callable[[Response], None]) -> None:
    """Make the running server alter its answers, as a compromised instance would."""

    def altered(response: Response) -> Response:
        # Static files are streamed from disk; read them so that the body can change.
        response.direct_passthrough = False
        change(response)
        return response

    app.after_request(altered)


def change_html(old: str, new: str) -> Callable[[Response], None]:
    def change(response: Response) -> None:
        if response.mimetype == "text/html":
            response.set_data(response.get_data(as_text=True).replace(old, new))

    return change


def change_file(name: str, extra: bytes = b"\n") -> Callable[[Response], None]:
    def change(response: Response) -> None:
        if request.path == f"/static/{name}":
            response.set_data(response.get_data() + extra)

    return change


def test_an_unmodified_instance_matches(live_server):
    result = run_verify(live_server.url)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[-1].startswith("all ") and "this says only what" in lines[-1]
    checked = [line for line in lines[:-1] if not line.startswith("note:")]
    assert checked and all(line.startswith("ok ") for line in checked)
    # Without --link the sender page's scripts are still fetched, at the release's URLs.
    for name in (
        "build/home.js",
        "build/inbox.js",
        "build/send.js",
        "build/pow-worker.js",
        "build/backup-worker.js",
        "build/seal-worker.js",
    ):
        assert any(f"asset /static/{name}?v=" in line for line in checked), name
    assert any(line.startswith("ok         asset /notify-sw.js:") for line in checked)
    assert any(line.startswith("note: no --link") for line in lines)


def test_a_modified_service_worker_is_named(live_server):
    def change(response: Response) -> None:
        if request.path == "/notify-sw.js":
            response.direct_passthrough = False
            response.set_data(response.get_data() + b"\n")

    tamper(live_server.app, change)
    result = run_verify(live_server.url)
    assert result.exit_code == 1, result.output
    [line] = different_lines(result)
    assert "asset /notify-sw.js" in line and "static/build/notify-sw.js" in line


def test_a_real_sender_page_matches_with_link(live_server):
    key = add_inbox(live_server.app, TRICKY_PROMPT)
    result = run_verify(live_server.url, "--link", f"{live_server.url}/to/{key}")
    assert result.exit_code == 0, result.output
    assert f"ok         page /to/{key}: markup: as in the release" in result.stdout
    assert "worker /static/build/pow-worker.js" in result.stdout
    assert "note:" not in result.stdout


@pytest.mark.parametrize(
    "name",
    [
        "build/send.js",
        "build/pow-worker.js",
        "build/backup-worker.js",
        "build/seal-worker.js",
        "style.css",
    ],
)
def test_a_modified_file_is_named(live_server, name):
    key = add_inbox(live_server.app)
    tamper(live_server.app, change_file(name))
    result = run_verify(live_server.url, "--link", f"{live_server.url}/to/{key}")
    assert result.exit_code == 1, result.output
    [line] = [line for line in different_lines(result) if f"/static/{name}" in line]
    assert f"bytes differ from the release's static/{name}" in line
    assert result.stdout.splitlines()[-1].startswith("1 of ")


def test_a_modified_script_with_a_matching_integrity_is_still_found(live_server):
    # The careful attacker rewrites the integrity attribute too: the page then loads
    # the altered script without complaint, and only the release's bytes give it away.
    key = add_inbox(live_server.app)
    original = (Path(live_server.app.static_folder) / "build/send.js").read_bytes()
    extra = b"\n/* exfiltrate */\n"
    tamper(live_server.app, change_file("build/send.js", extra))
    tamper(live_server.app, change_html(sri(original), sri(original + extra)))
    result = run_verify(live_server.url, "--link", f"{live_server.url}/to/{key}")
    assert result.exit_code == 1, result.output
    output = "\n".join(different_lines(result))
    assert "bytes differ from the release's static/build/send.js" in output
    assert "does not match the bytes served" not in output
    assert f"page /to/{key}: markup" in output


def test_the_backup_cost_is_reported(live_server):
    result = run_verify(live_server.url)
    assert result.exit_code == 0, result.output
    # The test server's own setting (conftest.py), said next to the release's default.
    assert "new backups get Argon2id with 19456 KiB and 2 passes (the release's default" in (
        result.stdout
    )


def test_a_backup_cost_below_what_readers_accept_is_found(live_server):
    tamper(live_server.app, change_html('data-kdf-memory-kib="19456"', 'data-kdf-memory-kib="64"'))
    result = run_verify(live_server.url)
    assert result.exit_code == 1, result.output
    [line] = different_lines(result)
    assert "page /inbox: markup" in line and 'data-kdf-memory-kib="64"' in line


def test_a_weakened_csp_is_found(live_server):
    weak = "default-src 'self'; script-src 'self' 'unsafe-inline' https:"

    def weaken(response: Response) -> None:
        if response.mimetype == "text/html":
            response.headers["Content-Security-Policy"] = weak

    tamper(live_server.app, weaken)
    result = run_verify(live_server.url)
    assert result.exit_code == 1, result.output
    lines = different_lines(result)
    assert len(lines) == 4  # one per page, nothing else
    assert all("Content-Security-Policy" in line and "'unsafe-inline'" in line for line in lines)


@pytest.mark.parametrize(
    ("tag", "finding"),
    [
        ("<script>fetch('/x')</script>", "extra inline script «fetch('/x')»"),
        (
            '<script src="https://cdn.example/x.js"></script>',
            "extra script from another origin: https://cdn.example/x.js",
        ),
        ('<SCRIPT SRC="/static/build/inbox.js"></SCRIPT>', "extra script /static/build/inbox.js"),
    ],
    ids=["inline", "third-party", "same-origin"],
)
def test_an_extra_script_tag_is_found(live_server, tag, finding):
    tamper(live_server.app, change_html("</body>", f"{tag}</body>"))
    result = run_verify(live_server.url)
    assert result.exit_code == 1, result.output
    output = "\n".join(different_lines(result))
    assert f"DIFFERENT: page /: scripts and stylesheets: {finding}" in output
    assert "DIFFERENT: page /: markup" in output


def test_a_page_python_cannot_parse_is_a_finding_not_a_crash(live_server):
    tamper(live_server.app, change_html("</body>", "<![bogus]><script>x()</script></body>"))
    result = run_verify(live_server.url)
    assert result.exit_code == 1, result.output
    # Python 3.11's html.parser gives up on this; newer ones read it as a comment.
    line = next(line for line in different_lines(result) if "page /: scripts" in line)
    assert "the page cannot be parsed" in line or "extra inline script «x()»" in line


def test_a_redirect_is_reported_not_followed(live_server):
    def redirect(response: Response) -> None:
        if request.path == "/inbox":
            response.status_code = 302
            response.headers["Location"] = "https://elsewhere.example/inbox"

    tamper(live_server.app, redirect)
    result = run_verify(live_server.url)
    assert result.exit_code == 1, result.output
    assert different_lines(result) == [
        "DIFFERENT: page /inbox: answered 302, the release answers 200 "
        "(redirect to https://elsewhere.example/inbox)"
    ]


def assert_fails_cleanly(result: Result, fragment: str) -> None:
    assert result.exit_code == 1, result.output
    assert result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert fragment in result.stderr


def test_an_unreachable_server_is_one_line():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    assert_fails_cleanly(run_verify(f"http://127.0.0.1:{port}"), "cannot reach the server")


def test_a_link_to_another_server_is_refused(live_server):
    key = generate_keypair().public_key_text
    result = run_verify(live_server.url, "--link", f"https://other.example/to/{key}")
    assert_fails_cleanly(result, "--link is a link to https://other.example")


def test_a_link_without_an_inbox_is_refused(live_server):
    key = generate_keypair().public_key_text
    result = run_verify(live_server.url, "--link", f"{live_server.url}/to/{key}")
    assert_fails_cleanly(result, "answered 404")


def parse(html: str) -> PageParser:
    parser = PageParser(LOCAL_ORIGIN + "/")
    parser.feed(html)
    parser.close()
    return parser


def test_the_parser_reads_attributes_as_a_browser_does():
    # A browser keeps the first of repeated attributes and strips spaces around URLs.
    parser = parse('<script src=" /a.js " src="/b.js" integrity="x" integrity="y"></script>')
    assert parser.refs == [Ref("script", f"{LOCAL_ORIGIN}/a.js", "x")]


def test_the_parser_finds_scripts_in_svg_and_unclosed_ones():
    parser = parse(
        '<svg><script href="/x.js"></script></svg><link rel="Alternate StyleSheet" '
        'href="/s.css"><script>never closed'
    )
    assert [ref.kind for ref in parser.refs] == ["script", "stylesheet", "script"]
    assert parser.refs[-1].url == ""  # inline, even though html.parser never closes it
