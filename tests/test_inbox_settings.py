"""Inbox settings through the API: only the owner changes them, senders see their effect.

Runs on SQLite and PostgreSQL (the `client` and `app` fixtures)."""

from dataclasses import replace
from datetime import timedelta

import pytest
from conftest import bearer, get_token, register
from sqlalchemy import update

from secretlink.crypto import b64encode, generate_keypair, seal
from secretlink.crypto.pow import solve
from secretlink.store.inbox_settings import InboxSettingsStore
from secretlink.store.retention import purge
from secretlink.store.storage import MessageRow, utcnow


def settings_url(keypair) -> str:
    return f"/api/v1/inboxes/{keypair.public_key_text}/settings"


def send(client, keypair, text: str = "hello", **fields):
    return client.post(
        f"/api/v1/inboxes/{keypair.public_key_text}/messages",
        json={"ciphertext": b64encode(seal(text, keypair.public_key)), **fields},
    )


def patch(client, keypair, token, body):
    return client.patch(settings_url(keypair), json=body, headers=bearer(token))


def assert_error(response, status: int, code: str):
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.get_json()["code"] == code
    assert response.get_json()["error"]


def message_count(client, keypair, token) -> int:
    listed = client.get(
        f"/api/v1/inboxes/{keypair.public_key_text}/messages", headers=bearer(token)
    ).get_json()
    return len(listed["messages"])


def public_view(client, keypair) -> dict:
    return client.get(f"/api/v1/inboxes/{keypair.public_key_text}").get_json()


# ---- reading and changing, owner only ----


def test_defaults(client, inbox):
    keypair, token = inbox
    response = client.get(settings_url(keypair), headers=bearer(token))
    assert response.status_code == 200
    assert response.get_json() == {
        "status": "open",
        "paused": False,
        "retention_days": None,
        "instance_retention_days": 90,
        "hourly_cap": None,
        "accepts_replies": True,
        "accepts_attachments": False,
        "moved_to": None,
        "disabled": False,
        "disabled_reason": None,
    }


def test_settings_need_the_inboxs_own_token(client, inbox):
    keypair, _ = inbox
    assert_error(client.get(settings_url(keypair)), 401, "token_required")
    assert_error(client.patch(settings_url(keypair), json={"paused": True}), 401, "token_required")
    other = generate_keypair()
    other_token = register(client, other)
    assert_error(patch(client, keypair, other_token, {"paused": True}), 403, "wrong_inbox")
    assert_error(
        client.delete(
            f"/api/v1/inboxes/{keypair.public_key_text}/messages", headers=bearer(other_token)
        ),
        403,
        "wrong_inbox",
    )
    assert public_view(client, keypair)["status"] == "open"


def test_changes_persist(client, inbox):
    keypair, token = inbox
    changed = {
        "paused": True,
        "retention_days": 7,
        "hourly_cap": 5,
        "accepts_replies": False,
        "accepts_attachments": True,
    }
    response = patch(client, keypair, token, changed)
    assert response.status_code == 200
    shown = client.get(settings_url(keypair), headers=bearer(token)).get_json()
    assert {name: shown[name] for name in changed} == changed
    assert shown["status"] == "paused"
    # Back to the defaults, member by member; others keep their value.
    patch(client, keypair, token, {"retention_days": None, "hourly_cap": None})
    shown = client.get(settings_url(keypair), headers=bearer(token)).get_json()
    assert shown["retention_days"] is None and shown["hourly_cap"] is None
    assert shown["paused"] is True


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"paused": "yes"}, "bad_setting"),
        ({"paused": 1}, "bad_setting"),
        ({"accepts_replies": None}, "bad_setting"),
        ({"retention_days": 14}, "bad_setting"),
        ({"retention_days": "7"}, "bad_setting"),
        ({"retention_days": True}, "bad_setting"),
        ({"retention_days": 7.0}, "bad_setting"),
        ({"hourly_cap": 0}, "bad_setting"),
        ({"hourly_cap": -3}, "bad_setting"),
        ({"hourly_cap": 10_001}, "bad_setting"),
        ({"hourly_cap": 2.5}, "bad_setting"),
        ({"hourly_cap": False}, "bad_setting"),
        ({"colour": "blue"}, "unknown_setting"),
        ({"paused": True, "Paused": True}, "unknown_setting"),
        ({"moved_to": None}, "read_only_setting"),
        ({"disabled": False}, "read_only_setting"),
        ({"disabled_reason": ""}, "read_only_setting"),
    ],
)
def test_bad_changes_are_refused_whole(client, inbox, body, code):
    keypair, token = inbox
    assert_error(patch(client, keypair, token, body), 400, code)
    shown = client.get(settings_url(keypair), headers=bearer(token)).get_json()
    assert shown["paused"] is False  # nothing of a refused request was applied


def test_malformed_body(client, inbox):
    keypair, token = inbox
    headers = {**bearer(token), "Content-Type": "application/json"}
    assert_error(client.patch(settings_url(keypair), data="[]", headers=headers), 400, "bad_json")
    assert_error(client.patch(settings_url(keypair), data="{", headers=headers), 400, "bad_json")
    assert_error(
        client.patch(settings_url(keypair), data="paused", headers=bearer(token)),
        415,
        "unsupported_media_type",
    )


def test_retention_cannot_exceed_the_instances(settings, make_app):
    client = make_app(replace(settings, retention_days=30)).test_client()
    keypair = generate_keypair()
    token = register(client, keypair)
    assert_error(patch(client, keypair, token, {"retention_days": 90}), 400, "retention_too_long")
    assert patch(client, keypair, token, {"retention_days": 30}).status_code == 200


def test_unknown_inbox(client):
    keypair = generate_keypair()
    token = get_token(client, keypair)
    assert_error(client.get(settings_url(keypair), headers=bearer(token)), 404, "unknown_inbox")
    assert_error(patch(client, keypair, token, {"paused": True}), 404, "unknown_inbox")


# ---- what senders meet ----


def test_pause_turns_senders_away_and_resume_lets_them_in(client, inbox):
    keypair, token = inbox
    patch(client, keypair, token, {"paused": True})
    assert_error(send(client, keypair), 403, "inbox_paused")
    assert_error(
        client.post(f"/api/v1/inboxes/{keypair.public_key_text}/puzzle"), 403, "inbox_paused"
    )
    view = public_view(client, keypair)
    assert view["status"] == "paused" and "paused" in view["notice"]
    patch(client, keypair, token, {"paused": False})
    assert send(client, keypair).status_code == 201
    assert public_view(client, keypair)["notice"] is None
    assert message_count(client, keypair, token) == 1


def test_public_view_shows_only_what_senders_need(client, inbox):
    keypair, token = inbox
    patch(client, keypair, token, {"retention_days": 1, "hourly_cap": 3, "accepts_replies": False})
    view = public_view(client, keypair)
    assert set(view) == {
        "public_key",
        "prompt",
        "link",
        "status",
        "notice",
        "accepts_replies",
        "accepts_attachments",
    }
    assert view["accepts_replies"] is False and view["accepts_attachments"] is False


def test_refusal_comes_before_the_puzzle_is_spent(settings, make_app):
    client = make_app(replace(settings, pow_difficulty=2)).test_client()
    keypair = generate_keypair()
    token = register(client, keypair)
    puzzle = client.post(f"/api/v1/inboxes/{keypair.public_key_text}/puzzle").get_json()
    solved = {
        "puzzle": puzzle["puzzle"],
        "solution": solve(puzzle["puzzle"], puzzle["difficulty"]),
    }
    patch(client, keypair, token, {"paused": True})
    assert_error(send(client, keypair, **solved), 403, "inbox_paused")
    patch(client, keypair, token, {"paused": False})
    assert send(client, keypair, **solved).status_code == 201  # the same puzzle, still good


def test_hourly_cap(client, inbox, app):
    keypair, token = inbox
    patch(client, keypair, token, {"hourly_cap": 2})
    assert send(client, keypair).status_code == 201
    assert send(client, keypair).status_code == 201
    refused = send(client, keypair)
    assert_error(refused, 429, "hourly_cap_reached")
    # A quarter of an hour at least (the client's own rate-limit window may say longer).
    assert 900 <= int(refused.headers["Retry-After"]) <= 3600
    assert message_count(client, keypair, token) == 2
    # An hour later the window has moved on.
    storage = app.extensions["secretlink.storage"]
    with storage.engine.begin() as connection:
        connection.execute(update(MessageRow).values(received_at=utcnow() - timedelta(minutes=61)))
    assert send(client, keypair).status_code == 201
    # Raising the cap lets more in at once; other inboxes never had one.
    patch(client, keypair, token, {"hourly_cap": 3})
    assert send(client, keypair).status_code == 201
    other = generate_keypair()
    register(client, other)
    assert all(send(client, other).status_code == 201 for _ in range(3))


def test_delete_all_messages(client, inbox, app):
    keypair, token = inbox
    for _ in range(3):
        send(client, keypair)
    url = f"/api/v1/inboxes/{keypair.public_key_text}/messages"
    assert_error(client.delete(url), 401, "token_required")
    response = client.delete(url, headers=bearer(token))
    assert response.status_code == 200 and response.get_json() == {"deleted": 3}
    listed = client.get(url, headers=bearer(token)).get_json()
    assert listed["messages"] == [] and listed["usage"]["messages"] == 0
    assert listed["usage"]["bytes"] == 0
    assert client.delete(url, headers=bearer(token)).get_json() == {"deleted": 0}


def test_deleting_the_inbox_deletes_its_settings(client, inbox, app):
    keypair, token = inbox
    patch(client, keypair, token, {"paused": True})
    assert client.delete(f"/api/v1/inboxes/{keypair.public_key_text}", headers=bearer(token))
    store = InboxSettingsStore(app.extensions["secretlink.storage"].engine)
    assert store.get(keypair.public_key_text) is None
    # Made again, the inbox starts from the defaults.
    register(client, keypair)
    assert public_view(client, keypair)["status"] == "open"


# ---- retention per inbox ----


def age_all(app, keypair, days: int) -> None:
    storage = app.extensions["secretlink.storage"]
    with storage.engine.begin() as connection:
        connection.execute(
            update(MessageRow)
            .where(MessageRow.inbox_key == keypair.public_key_text)
            .values(received_at=utcnow() - timedelta(days=days))
        )


def test_purge_honours_each_inboxs_retention(client, app):
    short, default, old = generate_keypair(), generate_keypair(), generate_keypair()
    short_token = register(client, short)
    register(client, default)
    old_token = register(client, old)
    patch(client, short, short_token, {"retention_days": 1})
    patch(client, old, old_token, {"retention_days": 7})
    for keypair in (short, default, old):
        send(client, keypair)
        age_all(app, keypair, days=2)
        send(client, keypair)  # a fresh one, kept everywhere
    result = purge(app.config["SECRETLINK"].database_url, retention_days=90)
    assert result.messages == 1
    assert message_count(client, short, short_token) == 1
    assert message_count(client, old, old_token) == 2
    listed = client.get(
        f"/api/v1/inboxes/{short.public_key_text}/messages", headers=bearer(short_token)
    ).get_json()
    assert listed["usage"]["messages"] == 1  # the counters went down with the rows


def test_inbox_retention_applies_when_the_instance_keeps_forever(client, inbox, app):
    keypair, token = inbox
    patch(client, keypair, token, {"retention_days": 30})
    send(client, keypair)
    age_all(app, keypair, days=31)
    other = generate_keypair()
    register(client, other)
    send(client, other)
    age_all(app, other, days=3650)
    assert purge(app.config["SECRETLINK"].database_url, retention_days=0).messages == 1
    assert message_count(client, keypair, token) == 0


# ---- rotation ----


def rotate(client, old, old_token, new, new_token, **extra):
    body = {"new_public_key": new.public_key_text, "new_token": new_token, **extra}
    return client.post(
        f"/api/v1/inboxes/{old.public_key_text}/rotate", json=body, headers=bearer(old_token)
    )


def test_rotate_moves_the_old_inbox_on(client, inbox):
    old, old_token = inbox
    send(client, old, "before")
    patch(client, old, old_token, {"hourly_cap": 9, "retention_days": 7})
    new = generate_keypair()
    new_token = register(client, new)
    response = rotate(client, old, old_token, new, new_token)
    assert response.status_code == 200
    assert response.get_json() == {
        "public_key": old.public_key_text,
        "moved_to": new.public_key_text,
        "new_link": f"http://localhost/to/{new.public_key_text}",
    }
    view = public_view(client, old)
    assert view["status"] == "moved" and "moved on" in view["notice"]
    assert new.public_key_text not in str(view)  # no forwarding
    assert_error(send(client, old), 403, "inbox_moved")
    # The owner still reads (and may delete) the old messages.
    assert message_count(client, old, old_token) == 1
    shown = client.get(settings_url(old), headers=bearer(old_token)).get_json()
    assert shown["moved_to"] == new.public_key_text
    # The new inbox takes messages and the owner's preferences.
    assert send(client, new).status_code == 201
    carried = client.get(settings_url(new), headers=bearer(new_token)).get_json()
    assert carried["hourly_cap"] == 9 and carried["retention_days"] == 7
    # Repeating the same rotation is harmless; rotating elsewhere is refused.
    assert rotate(client, old, old_token, new, new_token).status_code == 200
    third = generate_keypair()
    assert_error(
        rotate(client, old, old_token, third, register(client, third)), 409, "already_moved"
    )


def test_rotation_needs_both_tokens_and_an_existing_new_inbox(client, inbox):
    old, old_token = inbox
    new = generate_keypair()
    not_yet = get_token(client, new)  # proved, but never created
    assert_error(rotate(client, old, old_token, new, not_yet), 404, "unknown_new_inbox")
    new_token = register(client, new)
    stranger = generate_keypair()
    stranger_token = register(client, stranger)
    assert_error(rotate(client, old, stranger_token, new, new_token), 403, "wrong_inbox")
    assert_error(rotate(client, old, old_token, new, stranger_token), 403, "new_wrong_inbox")
    assert_error(rotate(client, old, old_token, new, "forged"), 401, "new_bad_token")
    assert_error(rotate(client, old, old_token, old, old_token), 400, "same_key")
    assert_error(rotate(client, old, old_token, new, new_token, extra=1), 400, "unknown_field")
    bad = client.post(
        f"/api/v1/inboxes/{old.public_key_text}/rotate",
        json={"new_public_key": "short", "new_token": new_token},
        headers=bearer(old_token),
    )
    assert_error(bad, 400, "bad_public_key")
    # None of that moved anything.
    assert public_view(client, old)["status"] == "open"


def test_disabled_inbox_cannot_be_rotated_away(client, inbox, app):
    old, old_token = inbox
    InboxSettingsStore(app.extensions["secretlink.storage"].engine).disable(
        old.public_key_text, "abusive prompt"
    )
    new = generate_keypair()
    assert_error(rotate(client, old, old_token, new, register(client, new)), 403, "inbox_disabled")


# ---- the operator's disabling ----


def test_disabled_inbox_shows_a_neutral_notice(client, app):
    keypair = generate_keypair()
    token = register(client, keypair, prompt="something abusive")
    send(client, keypair)
    store = InboxSettingsStore(app.extensions["secretlink.storage"].engine)
    assert store.disable(keypair.public_key_text, "abusive prompt, report 17")
    view = public_view(client, keypair)
    assert view["status"] == "disabled" and view["notice"] == "This inbox is not available."
    assert view["prompt"] == ""  # the operator took it down
    assert "abusive" not in str(view)
    assert_error(send(client, keypair), 403, "inbox_disabled")
    assert_error(
        client.post(f"/api/v1/inboxes/{keypair.public_key_text}/puzzle"), 403, "inbox_disabled"
    )
    page = client.get(f"/to/{keypair.public_key_text}").get_data(as_text=True)
    assert "something abusive" not in page and 'id="inbox-notice"' in page
    # The owner is told why, and keeps reading what arrived before.
    shown = client.get(settings_url(keypair), headers=bearer(token)).get_json()
    assert shown["disabled"] is True
    assert shown["disabled_reason"] == "abusive prompt, report 17"
    assert message_count(client, keypair, token) == 1
    # The owner cannot lift it, only the operator.
    assert_error(patch(client, keypair, token, {"disabled": False}), 400, "read_only_setting")
    assert store.enable(keypair.public_key_text) is True
    assert send(client, keypair).status_code == 201


def disable(app, keypair, reason: str = "abusive prompt") -> None:
    store = InboxSettingsStore(app.extensions["secretlink.storage"].engine)
    assert store.disable(keypair.public_key_text, reason)


def test_owner_cannot_delete_a_disabled_inbox_and_register_it_again(client, app):
    """Issue 10: deleting dropped the settings row, and a PUT of the same key made a
    fresh, open inbox. Now the DELETE is refused and nothing changes."""
    keypair = generate_keypair()
    token = register(client, keypair, prompt="something abusive")
    send(client, keypair)
    disable(app, keypair)
    url = f"/api/v1/inboxes/{keypair.public_key_text}"
    refused = client.delete(url, headers=bearer(token))
    assert_error(refused, 403, "inbox_disabled")
    assert "disabled by the operator" in refused.get_json()["error"]
    assert "operator can delete" in refused.get_json()["error"]
    assert public_view(client, keypair)["status"] == "disabled"
    assert message_count(client, keypair, token) == 1  # nothing half-deleted
    # Registering the key again is only a prompt change of the disabled inbox.
    again = client.put(url, json={"prompt": "fresh start"}, headers=bearer(token))
    assert again.status_code == 200
    view = public_view(client, keypair)
    assert view["status"] == "disabled" and view["prompt"] == ""
    assert_error(send(client, keypair), 403, "inbox_disabled")
    # A stranger's token is refused as such, before the inbox's state is looked at.
    stranger = generate_keypair()
    assert_error(client.delete(url, headers=bearer(register(client, stranger))), 403, "wrong_inbox")
    assert_error(client.delete(url), 401, "token_required")


def test_no_other_owner_path_lifts_the_disabling(client, app):
    keypair = generate_keypair()
    token = register(client, keypair)
    send(client, keypair)
    disable(app, keypair, "report 31")
    messages_url = f"/api/v1/inboxes/{keypair.public_key_text}/messages"
    # The owner may still delete every message, and change their own settings.
    assert client.delete(messages_url, headers=bearer(token)).get_json() == {"deleted": 1}
    assert patch(client, keypair, token, {"paused": True, "retention_days": 1}).status_code == 200
    assert patch(client, keypair, token, {"paused": False}).status_code == 200
    for read_only in ({"disabled": False}, {"disabled_reason": None}, {"moved_to": None}):
        assert_error(patch(client, keypair, token, read_only), 400, "read_only_setting")
    # Rotating to a fresh inbox is refused, and leaves the old one as it was.
    new = generate_keypair()
    assert_error(rotate(client, keypair, token, new, register(client, new)), 403, "inbox_disabled")
    # The purge deletes messages, never the inbox or its settings row.
    purge(app.config["SECRETLINK"].database_url, retention_days=1)
    shown = client.get(settings_url(keypair), headers=bearer(token)).get_json()
    assert shown["disabled"] is True and shown["disabled_reason"] == "report 31"
    assert shown["moved_to"] is None
    assert public_view(client, keypair)["status"] == "disabled"
    assert_error(send(client, keypair), 403, "inbox_disabled")


def test_once_enabled_again_the_owner_may_delete_the_inbox(client, app):
    keypair = generate_keypair()
    token = register(client, keypair)
    disable(app, keypair)
    url = f"/api/v1/inboxes/{keypair.public_key_text}"
    assert_error(client.delete(url, headers=bearer(token)), 403, "inbox_disabled")
    InboxSettingsStore(app.extensions["secretlink.storage"].engine).enable(keypair.public_key_text)
    assert client.delete(url, headers=bearer(token)).status_code == 204
    assert_error(client.get(url), 404, "unknown_inbox")
    assert_error(client.delete(url, headers=bearer(token)), 404, "unknown_inbox")


# ---- the store under concurrency ----


def test_concurrent_changes_and_opposite_rotations_end_consistent(client, app):
    """First changes racing to make the row, and rotations A->B and B->A at once: no
    error, and exactly one of the two rotations happens."""
    from concurrent.futures import ThreadPoolExecutor

    first, second = generate_keypair(), generate_keypair()
    register(client, first)
    register(client, second)
    a, b = first.public_key_text, second.public_key_text
    store = InboxSettingsStore(app.extensions["secretlink.storage"].engine)
    with ThreadPoolExecutor(8) as pool:
        changes = [pool.submit(store.update, a, {"hourly_cap": n}) for n in range(1, 7)]
        rotations = [pool.submit(store.rotate, a, b), pool.submit(store.rotate, b, a)]
        assert all(change.result() is not None for change in changes)
        outcomes = sorted(rotation.result() for rotation in rotations)
    assert outcomes == ["new_not_open", "rotated"]
    moved = [key for key in (a, b) if store.get(key).moved_to]
    assert len(moved) == 1
