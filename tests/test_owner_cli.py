"""`secretlink inbox settings | delete-all | rotate` against a live server."""

import json
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from secretlink.client.cli import main
from secretlink.crypto.keyfile import load_key_file


def run(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def shown(result) -> dict[str, str]:
    assert result.exit_code == 0, result.stderr
    return dict(line.split(": ", 1) for line in result.stdout.splitlines())


@pytest.fixture
def inbox(live_server, tmp_path) -> tuple[str, str]:
    """A key file and the link of its registered inbox."""
    key_file = str(tmp_path / "inbox.key")
    assert run("keygen", "--key-file", key_file, "--server", live_server.url).exit_code == 0
    created = run("inbox", "create", "--key-file", key_file, "--prompt", "Say it")
    assert created.exit_code == 0, created.stderr
    return key_file, created.stdout.strip()


def read(key_file: str) -> list[str]:
    result = run("inbox", "read", "--key-file", key_file, "--json")
    assert result.exit_code == 0, result.stderr
    return [message["text"] for message in json.loads(result.stdout)]


def test_settings_pause_resume_and_the_rest(inbox):
    key_file, link = inbox
    assert shown(run("inbox", "settings", "--key-file", key_file))["status"] == "open"
    paused = run("inbox", "settings", "--key-file", key_file, "--pause", "--retention", "7")
    assert shown(paused)["status"] == "paused" and shown(paused)["retention_days"] == "7"
    refused = run("send", link, "hello")
    assert refused.exit_code == 1 and "paused" in refused.stderr
    changed = run(
        "inbox", "settings", "--key-file", key_file, "--resume", "--hourly-cap", "5",
        "--no-replies", "--attachments", "--retention", "default",
    )  # fmt: skip
    values = shown(changed)
    assert values["status"] == "open" and values["hourly_cap"] == "5"
    assert values["accepts_replies"] == "false" and values["accepts_attachments"] == "true"
    assert values["retention_days"] == "-"
    assert run("send", link, "hello").exit_code == 0
    lifted = run("inbox", "settings", "--key-file", key_file, "--hourly-cap", "none")
    assert shown(lifted)["hourly_cap"] == "-"


@pytest.mark.parametrize("cap", ["0", "10001", "x", "\u0665", "-1"])
def test_bad_hourly_cap_is_one_line(inbox, cap):
    key_file, _ = inbox
    result = run("inbox", "settings", "--key-file", key_file, "--hourly-cap", cap)
    assert result.exit_code == 1 and "--hourly-cap" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_delete_all_needs_yes(inbox):
    key_file, link = inbox
    run("send", link, "one")
    run("send", link, "two")
    refused = run("inbox", "delete-all", "--key-file", key_file)
    assert refused.exit_code == 1 and "--yes" in refused.stderr
    assert len(read(key_file)) == 2
    done = run("inbox", "delete-all", "--key-file", key_file, "--yes")
    assert done.exit_code == 0 and "deleted 2 messages" in done.stderr
    assert read(key_file) == []


def test_rotate(inbox, live_server, tmp_path):
    key_file, old_link = inbox
    assert run("send", old_link, "to the old link").exit_code == 0
    new_key_file = tmp_path / "new.key"
    result = run("inbox", "rotate", "--key-file", key_file, "--new-key-file", str(new_key_file))
    assert result.exit_code == 0, result.stderr
    new = load_key_file(new_key_file.read_bytes())
    assert stat.S_IMODE(new_key_file.stat().st_mode) == 0o600
    assert new.server == live_server.url
    new_link = result.stdout.strip()
    assert new_link == f"{live_server.url}/to/{new.keypair.public_key_text}"
    # A plain old key file gives a plain new one, said in one line without warnings.
    assert result.stderr.splitlines() == [
        "the old link now says the inbox moved on; its settings and notifications "
        f"carry over; the new key file is {new_key_file}"
    ]

    moved = run("send", old_link, "too late")
    assert moved.exit_code == 1 and "moved on" in moved.stderr
    assert run("send", new_link, "to the new link").exit_code == 0
    assert read(key_file) == ["to the old link"]  # the old key still reads
    assert read(str(new_key_file)) == ["to the new link"]
    info = run("inbox", "settings", "--key-file", key_file)
    assert shown(info)["moved_to"] == new.keypair.public_key_text

    # Run again (as after an interruption): the same new key, nothing changes.
    again = run("inbox", "rotate", "--key-file", key_file, "--new-key-file", str(new_key_file))
    assert again.exit_code == 0 and again.stdout.strip() == new_link
    # Rotating to yet another key is refused: the inbox already moved on.
    other = run("inbox", "rotate", "--key-file", key_file, "--new-key-file", str(tmp_path / "x"))
    assert other.exit_code == 1 and "already moved on" in other.stderr
    assert not (tmp_path / "x").exists()  # no key made for nothing


def test_rotate_to_the_same_key_is_refused(inbox):
    key_file, _ = inbox
    result = run("inbox", "rotate", "--key-file", key_file, "--new-key-file", key_file)
    assert result.exit_code == 1 and "same key" in result.stderr
    assert Path(key_file).exists()
