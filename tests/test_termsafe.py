"""What a recipient's terminal receives from `secretlink inbox read`.

The unit tests pin the escaping rules of secretlink/client/termsafe.py; the terminal tests
run the installed `secretlink` command in a pseudo-terminal against a live server
holding a corpus of hostile messages, and look at the bytes the terminal gets.
"""

import fcntl
import json
import os
import pty
import select
import struct
import subprocess
import sys
import termios
import time
import unicodedata
from pathlib import Path

import pytest
from click.testing import CliRunner
from flask import Response, request

from secretlink.client.cli import main
from secretlink.client.http import parse_link, send
from secretlink.client.termsafe import (
    BIDI_CONTROLS,
    BODY_PREFIX,
    HIGHLIGHT_OFF,
    HIGHLIGHT_ON,
    Terminal,
    body,
    dumps_json,
    field,
)

COLUMNS = 60
FORGED_HEADER = "--- 2026-01-01T00:00Z  id AAAAAAAAAAAAAAAAAAAAAA"

# Each entry: a name for the failure message, and a message text that does harm when a
# terminal obeys it.
CORPUS = [
    ("clear screen", "before\x1b[2J\x1b[Hafter"),
    ("window title (BEL)", "\x1b]0;pwned title\x07text"),
    ("window title (ST)", "\x1b]2;pwned title\x1b\\text"),
    ("clipboard OSC 52", "\x1b]52;c;cm0gLXJmIH4K\x07copy me"),
    ("hidden text SGR 8", "visible \x1b[8mhidden\x1b[28m visible"),
    ("hyperlink OSC 8", "\x1b]8;;https://evil.example/\x1b\\click\x1b]8;;\x1b\\"),
    ("alternate screen", "\x1b[?1049hgone"),
    ("cursor up and erase line", "line\x1b[1A\x1b[2K"),
    ("DCS request", "\x1bP$qm\x1b\\"),
    ("C1 CSI clear", "\x9b2Jc1"),
    ("C1 OSC title", "\x9d0;c1 title\x9c"),
    ("C1 next line", "next\x85line"),
    ("delete and backspace", "abc\x7f\x08\x08x"),
    ("bell, vertical tab, form feed, NUL", "\x07\x0b\x0c\x00end"),
    ("carriage return overwrite", "innocent\rEVIL"),
    ("carriage return header", f"hello\r{FORGED_HEADER}"),
    ("newline header", f"hello\n{FORGED_HEADER}\nforged text"),
    ("separator header", f"hello\u2028{FORGED_HEADER}\u2029forged text"),
    # Spaces to the right margin, so that the terminal's own wrap would start the header
    # at the left of a row.
    ("wrapped header", " " * (COLUMNS - len(BODY_PREFIX)) + FORGED_HEADER),
    ("wrapped header, one short", " " * (COLUMNS - len(BODY_PREFIX) - 1) + FORGED_HEADER),
    ("wide characters then header", "字" * 29 + FORGED_HEADER),
    ("tabs then header", "\t" * 8 + FORGED_HEADER),
    *[(f"bidi U+{ord(c):04X}", f"abc{c}fed") for c in sorted(BIDI_CONTROLS)],
]


# ---- the rules ----


@pytest.mark.parametrize(
    ("char", "escape"),
    [
        ("\x1b", "\\x1b"),
        ("\x00", "\\x00"),
        ("\x7f", "\\x7f"),
        ("\x9b", "\\x9b"),
        ("\x85", "\\x85"),
        ("\n", "\\n"),
        ("\r", "\\r"),
        ("\t", "\\t"),
        ("\u202e", "\\u202e"),
        ("\u061c", "\\u061c"),
        ("\u2028", "\\u2028"),
        ("\u2029", "\\u2029"),
        ("\ud800", "\\ud800"),
    ],
)
def test_a_field_shows_each_unsafe_character_as_an_escape(char, escape):
    assert field(f"a{char}b") == f"a{escape}b"


def test_every_character_the_issue_names_is_escaped_in_a_field():
    named = [chr(c) for c in [*range(0x20), *range(0x7F, 0xA0)]]
    named += [*sorted(BIDI_CONTROLS), "\u2028", "\u2029"]
    assert {ord(c) for c in BIDI_CONTROLS} == {
        0x061C,
        0x200E,
        0x200F,
        *range(0x202A, 0x202F),
        *range(0x2066, 0x206A),
    }
    for char in named:
        assert field(char).startswith("\\"), repr(char)


def test_ordinary_text_is_left_alone():
    text = "Grüße, привет, مرحبا, 你好 👋🏽 — \\x1b typed by hand"
    assert field(text) == text
    assert body(text) == [BODY_PREFIX + text]


def test_every_body_row_carries_the_prefix_and_keeps_tabs():
    assert body(f"one\ttab\n\n{FORGED_HEADER}\r\x1b[2J") == [
        "| one\ttab",
        "|",
        f"| {FORGED_HEADER}\\r\\x1b[2J",
    ]


def test_rows_are_wrapped_to_fit_the_terminal_counting_wide_characters_as_two():
    terminal = Terminal(columns=20)
    rows = body("a" * 40 + "\n" + "字" * 20 + "\n" + "\x1b" * 10, terminal)
    assert all(row.startswith(BODY_PREFIX) for row in rows)
    assert all(display_columns(row) <= 19 for row in rows), rows
    assert "".join(row.removeprefix(BODY_PREFIX) for row in rows[:3]) == "a" * 40
    # An escape is never cut in two.
    assert all(row.removeprefix(BODY_PREFIX).count("\\") * 4 == len(row) - 2 for row in rows[-2:])


def test_ambiguous_width_counts_two_in_a_cjk_locale_only():
    assert len(body("Ж" * 17, Terminal(columns=20))) == 1
    assert len(body("Ж" * 17, Terminal(columns=20, wide_ambiguous=True))) == 3


def test_highlight_wraps_each_escape_and_nothing_else():
    assert field("a\x1bb", Terminal(highlight=True)) == f"a{HIGHLIGHT_ON}\\x1b{HIGHLIGHT_OFF}b"


def test_json_is_exact_and_carries_no_unsafe_character():
    texts = ["\x1b[2J\x9b\x7f\u202e\u2028\u2029\ud800", "tab\tand\nnewline", "你好 👋"]
    written = dumps_json([{"text": text} for text in texts])
    assert [item["text"] for item in json.loads(written)] == texts
    assert_terminal_safe(written)
    assert "\\u202e" in written and "\\u009b" in written and "你好 👋" in written


# ---- through a pseudo-terminal, against a live server ----


def display_columns(row: str) -> int:
    row = row.replace(HIGHLIGHT_ON, "").replace(HIGHLIGHT_OFF, "")
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 8 if c == "\t" else 1 for c in row)


def assert_terminal_safe(text: str) -> None:
    """No character a terminal would act on, other than line ends and tabs."""
    for index, char in enumerate(text):
        code = ord(char)
        if char in "\n\t" or (char == "\r" and text[index + 1 : index + 2] == "\n"):
            continue
        assert code >= 0x20, f"raw {char!r} at {index}: {text[max(0, index - 30) : index + 30]!r}"
        assert not 0x7F <= code <= 0x9F, f"raw {char!r} at {index}"
        assert char not in BIDI_CONTROLS and char not in "\u2028\u2029", f"raw {char!r}"
        assert not 0xD800 <= code <= 0xDFFF


def secretlink_command() -> list[str]:
    """The installed console script next to this Python, as a user would run it."""
    script = Path(sys.executable).with_name("secretlink")
    return [str(script)] if script.exists() else [sys.executable, "-m", "secretlink.client.cli"]


def run_in_terminal(*args: str, color: bool = True, timeout: float = 60) -> tuple[int, str]:
    """Run `secretlink ARGS` with a pseudo-terminal of COLUMNS columns as its standard
    input, output and error; return its exit status and everything the terminal got."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, COLUMNS, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "COLUMNS", "LINES")}
    env |= {"TERM": "xterm-256color", "LC_ALL": "C.UTF-8"}
    if not color:
        env["NO_COLOR"] = "1"
    process = subprocess.Popen(
        [*secretlink_command(), *args], stdin=slave, stdout=slave, stderr=slave, env=env
    )
    os.close(slave)
    received = bytearray()
    deadline = time.monotonic() + timeout
    # poll(), not select(): in a long test run this process may hold descriptors past
    # 1024, which select() cannot watch.
    watcher = select.poll()
    watcher.register(master, select.POLLIN)
    try:
        while True:
            ready = watcher.poll(max(0.0, deadline - time.monotonic()) * 1000)
            if not ready:
                pytest.fail(f"secretlink {' '.join(args)} did not finish in {timeout} s")
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: every holder of the terminal's other side has closed it
                break
            if not chunk:
                break
            received += chunk
        status = process.wait(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(master)
    return status, received.decode("utf-8")


@pytest.fixture
def tampering(live_server) -> dict:
    """Changes made to the live server's answers, as a hostile server would: set
    "messages" to rewrite each listed message, "error" to refuse the listing with that
    text, "link" to answer the registration with that link."""
    changes: dict = {}

    @live_server.app.after_request
    def tamper(response: Response) -> Response:
        listing = request.method == "GET" and request.path.endswith("/messages")
        if listing and "error" in changes:
            return Response(
                json.dumps({"error": changes["error"]}), 400, mimetype="application/json"
            )
        if listing and "messages" in changes:
            data = response.get_json()
            data["messages"] = [changes["messages"](item) for item in data["messages"]]
            response.set_data(json.dumps(data))
        if request.method == "PUT" and "link" in changes:
            data = response.get_json()
            response.set_data(json.dumps(data | {"link": changes["link"](data["link"])}))
        return response

    return changes


@pytest.fixture
def hostile_inbox(live_server, tampering, tmp_path) -> tuple[str, list[str]]:
    """A key file for an inbox on the live server holding the corpus, and its texts in
    the order `inbox read` shows them (newest first)."""
    key_file = str(tmp_path / "inbox.key")
    runner = CliRunner()
    assert runner.invoke(main, ["keygen", "--key-file", key_file]).exit_code == 0
    created = runner.invoke(
        main, ["inbox", "create", "--server", live_server.url, "--key-file", key_file]
    )
    assert created.exit_code == 0, created.output
    link = parse_link(created.stdout.strip())
    for _, text in CORPUS:
        send(link, text)
    return key_file, [text for _, text in reversed(CORPUS)]


def unhighlighted(output: str) -> str:
    """The output without the reverse video the CLI puts around its own escapes."""
    return output.replace(HIGHLIGHT_ON, "").replace(HIGHLIGHT_OFF, "")


def rows_of(output: str) -> list[str]:
    return unhighlighted(output).split("\r\n")


@pytest.mark.parametrize("color", [True, False], ids=["colour", "NO_COLOR"])
def test_hostile_messages_reach_the_terminal_escaped_and_prefixed(
    color, hostile_inbox, live_server
):
    key_file, _ = hostile_inbox
    status, output = run_in_terminal(
        "inbox", "read", "--server", live_server.url, "--key-file", key_file, color=color
    )
    assert status == 0, output
    if not color:
        assert HIGHLIGHT_ON not in output
    assert_terminal_safe(unhighlighted(output))

    rows = rows_of(output)
    headers = [row for row in rows if row.startswith("--- ")]
    assert len(headers) == len(CORPUS), headers
    assert all(" id " in header and FORGED_HEADER not in header for header in headers)
    # Every other row is a body row (or the blank line after a message), and fits
    # the terminal, so the terminal never starts a row of its own.
    for row in rows:
        assert row.startswith(("--- ", "| ")) or row in ("|", ""), repr(row)
        assert display_columns(row) < COLUMNS, repr(row)
    assert not any(row.startswith(FORGED_HEADER[:14]) for row in rows)
    assert sum(FORGED_HEADER in row for row in rows) >= 6
    for visible in ["\\x1b[2J", "\\x1b]52;c;", "\\x1b[8m", "\\x9b2J", "\\x7f", "\\r", "\\u2028"]:
        assert visible in unhighlighted(output), visible
    for char in BIDI_CONTROLS:
        assert f"abc\\u{ord(char):04x}fed" in unhighlighted(output)


def test_json_in_the_terminal_is_exact_and_safe(hostile_inbox, live_server):
    key_file, texts = hostile_inbox
    status, output = run_in_terminal(
        "inbox", "read", "--server", live_server.url, "--key-file", key_file, "--json"
    )
    assert status == 0, output
    assert_terminal_safe(output)
    assert [item["text"] for item in json.loads(output)] == texts


def test_piped_output_is_escaped_too_and_raw_opts_out(hostile_inbox, live_server):
    key_file, texts = hostile_inbox
    args = ["inbox", "read", "--server", live_server.url, "--key-file", key_file]
    piped = CliRunner().invoke(main, args)
    assert piped.exit_code == 0, piped.output
    assert_terminal_safe(piped.stdout)
    assert HIGHLIGHT_ON not in piped.stdout
    raw = CliRunner().invoke(main, [*args, "--raw"])
    assert raw.exit_code == 0, raw.output
    for text in texts:
        assert f"\n{text}\n\n" in raw.stdout
    both = CliRunner().invoke(main, [*args, "--raw", "--json"])
    assert both.exit_code == 2 and "exclude each other" in both.stderr


def test_server_supplied_ids_times_and_errors_are_escaped(hostile_inbox, live_server, tampering):
    key_file, _ = hostile_inbox
    args = ["inbox", "read", "--server", live_server.url, "--key-file", key_file]
    tampering["messages"] = lambda item: (
        item
        | {
            "id": "\x1b]0;id title\x07\u202e" + item["id"],
            "received_at": "\x1b[2J\n" + FORGED_HEADER,
        }
    )
    status, output = run_in_terminal(*args)
    assert status == 0, output
    assert_terminal_safe(unhighlighted(output))
    shown = unhighlighted(output)
    assert "\\x1b]0;id title\\x07\\u202e" in shown and f"\\x1b[2J\\n{FORGED_HEADER}" in shown
    assert not any(row.startswith(FORGED_HEADER) for row in rows_of(output))

    tampering["error"] = "no\x1b[2J\x1b]52;c;cm0K\x07\u202e\nError: forged"
    status, output = run_in_terminal(*args)
    assert status == 1
    assert_terminal_safe(output)
    assert (
        output.count("\r\n") == 1
        and "\\x1b[2J\\x1b]52;c;cm0K\\x07\\u202e\\nError: forged" in output
    )


@pytest.mark.parametrize(
    "rewrite",
    [
        pytest.param(lambda item: {"id": item["id"]}, id="missing-members"),
        pytest.param(lambda item: item | {"ciphertext": 5}, id="not-a-string"),
        pytest.param(lambda item: "a message", id="not-an-object"),
    ],
)
def test_a_malformed_message_list_is_one_clear_line(hostile_inbox, live_server, tampering, rewrite):
    key_file, _ = hostile_inbox
    tampering["messages"] = rewrite
    result = CliRunner().invoke(
        main, ["inbox", "read", "--server", live_server.url, "--key-file", key_file]
    )
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1 and "malformed message list" in result.stderr
    assert "Traceback" not in result.output


def test_a_server_s_error_text_is_cut_to_one_bounded_line(hostile_inbox, live_server, tampering):
    key_file, _ = hostile_inbox
    tampering["error"] = "\x1b[2J" * 10_000
    result = CliRunner().invoke(
        main, ["inbox", "read", "--server", live_server.url, "--key-file", key_file]
    )
    assert result.exit_code == 1
    assert len(result.stderr) < 600 and result.stderr.count("\n") == 1
    assert_terminal_safe(result.stderr)


def test_the_link_printed_at_creation_is_escaped(live_server, tampering, tmp_path):
    key_file = str(tmp_path / "inbox.key")
    assert CliRunner().invoke(main, ["keygen", "--key-file", key_file]).exit_code == 0
    tampering["link"] = lambda link: link.replace("/to/", "/\x1b]0;t\x07\u202e/to/")
    status, output = run_in_terminal(
        "inbox", "create", "--server", live_server.url, "--key-file", key_file
    )
    # Whether the link is refused (a path before /to/) or printed, the terminal gets
    # nothing it would obey.
    assert status in (0, 1), output
    assert_terminal_safe(unhighlighted(output))
    if status == 0:
        assert "\\x1b]0;t\\x07\\u202e/to/" in output


def test_raw_hands_the_terminal_the_sequences_as_sent(hostile_inbox, live_server):
    """--raw opts out; this also shows that the checks above would see a raw byte."""
    key_file, _ = hostile_inbox
    status, output = run_in_terminal(
        "inbox", "read", "--server", live_server.url, "--key-file", key_file, "--raw"
    )
    assert status == 0, output
    assert "\x1b]52;c;cm0gLXJmIH4K\x07copy me" in output and "\x9b2Jc1" in output
    with pytest.raises(AssertionError):
        assert_terminal_safe(output)


def test_a_message_that_does_not_decrypt_is_a_note_not_a_body(
    live_server, tampering, tmp_path, monkeypatch
):
    """An envelope sealed to another key shows as `[cannot decrypt: …]` after its header,
    with a warning on standard error, and the other messages still read."""
    import secretlink.client.http
    from secretlink.crypto import generate_keypair, seal

    key_file = str(tmp_path / "inbox.key")
    runner = CliRunner()
    runner.invoke(main, ["keygen", "--key-file", key_file])
    created = runner.invoke(
        main, ["inbox", "create", "--server", live_server.url, "--key-file", key_file]
    )
    link = parse_link(created.stdout.strip())
    send(link, "readable")
    stranger = generate_keypair().public_key
    monkeypatch.setattr(secretlink.client.http, "seal", lambda text, _key: seal(text, stranger))
    send(link, "\x1b[2J sealed to a stranger")
    status, output = run_in_terminal(
        "inbox", "read", "--server", live_server.url, "--key-file", key_file
    )
    assert status == 0, output
    assert_terminal_safe(unhighlighted(output))
    rows = [row for row in rows_of(output) if row]
    assert rows[0].startswith("warning: message ") and "cannot be decrypted" in rows[0]
    assert rows[1].startswith("--- ") and rows[2].startswith("[cannot decrypt: ")
    assert rows[3].startswith("--- ") and rows[4] == "| readable"
