"""`secretlink admin inbox ...`: the operator disables an abusive inbox, on SQLite and
PostgreSQL, without reading a message."""

import pytest
from click.testing import CliRunner
from conftest import bearer, register

from secretlink.client.cli import main
from secretlink.crypto import b64encode, generate_keypair, seal


@pytest.fixture
def operator(settings, app, monkeypatch):
    """Runs `secretlink admin ...` against the test app's database."""
    monkeypatch.setenv("SECRETLINK_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("SECRETLINK_DATABASE_URL", settings.database_url)

    def run(*args: str):
        return CliRunner().invoke(main, ["admin", "inbox", *args])

    return run


def send(client, keypair):
    return client.post(
        f"/api/v1/inboxes/{keypair.public_key_text}/messages",
        json={"ciphertext": b64encode(seal("hi", keypair.public_key))},
    )


def test_disable_list_enable(client, operator):
    keypair = generate_keypair()
    token = register(client, keypair, prompt="an abusive prompt")
    key = keypair.public_key_text
    assert send(client, keypair).status_code == 201

    result = operator("disable", key, "--reason", "abusive prompt (report 12)")
    assert result.exit_code == 0, result.stderr
    assert "disabled" in result.stderr
    refused = send(client, keypair)
    assert refused.status_code == 403 and refused.get_json()["code"] == "inbox_disabled"
    view = client.get(f"/api/v1/inboxes/{key}").get_json()
    assert view["notice"] == "This inbox is not available." and view["prompt"] == ""

    listed = operator("list-disabled")
    assert listed.exit_code == 0
    key_shown, day, reason = listed.stdout.strip().split("\t")
    assert key_shown == key and reason == "abusive prompt (report 12)"
    assert len(day) == len("2026-12-05")
    assert "1 disabled" in listed.stderr

    # The owner still reads what came before.
    messages = client.get(f"/api/v1/inboxes/{key}/messages", headers=bearer(token))
    assert len(messages.get_json()["messages"]) == 1

    result = operator("enable", f"http://localhost/to/{key}")  # a whole link works too
    assert result.exit_code == 0 and "enabled" in result.stderr
    assert send(client, keypair).status_code == 201
    assert operator("list-disabled").stdout == ""
    again = operator("enable", key)
    assert again.exit_code == 0 and "was not disabled" in again.stderr


def test_mistakes_are_one_line_failures(client, operator):
    keypair = generate_keypair()
    register(client, keypair)
    unknown = generate_keypair().public_key_text
    for args, fragment in [
        (["disable", unknown, "--reason", "x"], "no inbox"),
        (["enable", unknown], "no inbox"),
        (["disable", "not-a-key", "--reason", "x"], "not an inbox key"),
        (["disable", keypair.public_key_text, "--reason", "  "], "give a reason"),
        (["disable", keypair.public_key_text, "--reason", "a\nb"], "one line"),
        (["disable", keypair.public_key_text, "--reason", "r" * 501], "at most 500"),
    ]:
        result = operator(*args)
        assert result.exit_code == 1, (args, result.output)
        assert fragment in result.stderr and len(result.stderr.strip().splitlines()) == 1
    missing = operator("disable", keypair.public_key_text)
    assert missing.exit_code == 2 and "--reason" in missing.stderr
    assert client.get(f"/api/v1/inboxes/{keypair.public_key_text}").get_json()["status"] == "open"


def test_a_key_that_starts_with_a_dash_is_a_key(client, operator):
    keypair = next(k for k in iter(generate_keypair, None) if k.public_key_text[0] == "-")
    register(client, keypair)
    assert operator("disable", keypair.public_key_text, "--reason", "r").exit_code == 0
    assert operator("enable", keypair.public_key_text).exit_code == 0


def test_no_database_is_a_clear_failure(tmp_path, monkeypatch):
    monkeypatch.setenv("SECRETLINK_DATA_DIR", str(tmp_path / "nothing"))
    monkeypatch.delenv("SECRETLINK_DATABASE_URL", raising=False)
    result = CliRunner().invoke(main, ["admin", "inbox", "list-disabled"])
    assert result.exit_code == 1 and "no secretlink database" in result.stderr


def test_reason_is_printed_safely(client, operator):
    keypair = generate_keypair()
    register(client, keypair)
    assert operator("disable", keypair.public_key_text, "--reason", "ok").exit_code == 0
    # A reason written by hand into the database could hold anything: the listing
    # escapes it rather than letting the terminal obey it.
    from secretlink.store.inbox_settings import InboxSettingsStore

    store = InboxSettingsStore(client.application.extensions["secretlink.storage"].engine)
    store.disable(keypair.public_key_text, "evil\x1b]0;title\x07")
    listed = operator("list-disabled").stdout
    assert "\x1b" not in listed and "\\x1b" in listed


def test_the_operator_deletes_a_disabled_inbox_only(client, operator, settings):
    keypair = generate_keypair()
    token = register(client, keypair)
    key = keypair.public_key_text
    assert send(client, keypair).status_code == 201
    url = f"/api/v1/inboxes/{key}"

    refused = operator("delete", key, "--yes")
    assert refused.exit_code == 1 and "not disabled" in refused.stderr
    assert "owner's to delete" in refused.stderr
    assert client.get(url).status_code == 200

    assert operator("disable", key, "--reason", "abusive prompt").exit_code == 0
    unconfirmed = operator("delete", key)
    assert unconfirmed.exit_code == 1 and "--yes" in unconfirmed.stderr
    assert client.get(url).get_json()["status"] == "disabled"

    # Its attachments' files (secretlink/store/blobs.py) go with it.
    blob_folder = settings.data_dir / "blobs" / key
    blob_folder.mkdir(parents=True)
    (blob_folder / ("A" * 22)).write_bytes(b"ciphertext")
    result = operator("delete", f"http://localhost/to/{key}", "--yes")
    assert result.exit_code == 0, result.stderr
    assert not blob_folder.exists()
    assert "deleted" in result.stderr and "register the key again" in result.stderr
    assert client.get(url).status_code == 404
    assert client.get(f"{url}/messages", headers=bearer(token)).status_code == 404
    assert operator("list-disabled").stdout == ""
    gone = operator("delete", key, "--yes")
    assert gone.exit_code == 1 and "no inbox" in gone.stderr
    # As documented: the key is free again, as a new, empty and open inbox.
    register(client, keypair)
    assert client.get(url).get_json()["status"] == "open"
