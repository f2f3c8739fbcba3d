"""What an owner registers: the neutral text, the longest delay, a Web Push
subscription and/or a webhook URL; how each is checked, and how it is kept (sealed).
"""

import json
from dataclasses import asdict, dataclass, replace
from functools import cached_property

from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import bindparam, delete, select
from sqlalchemy.engine import Engine

from secretlink.notify.addresses import AddressRefused, parse_url
from secretlink.notify.keys import Sealer, SealError, b64url_decode
from secretlink.notify.tables import NotifyTargetRow
from secretlink.notify.upsert import insert_or
from secretlink.store.raw_sql import Compiled

DEFAULT_TEXT = "New message"
MAX_TEXT_CHARS = 100
DEFAULT_DELAY_MINUTES = 10
MAX_DELAY_MINUTES = 60
# RFC 8291: the user agent's P-256 key (uncompressed point) and its 16-byte auth secret.
P256DH_BYTES = 65
AUTH_BYTES = 16


class TargetError(ValueError):
    """A registration the owner must correct: `code` for the API, the text says what."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class PushSubscription:
    endpoint: str
    p256dh: str
    auth: str

    def info(self) -> dict:
        """As the browser's PushSubscription.toJSON() gives it, and pywebpush takes it."""
        return {"endpoint": self.endpoint, "keys": {"p256dh": self.p256dh, "auth": self.auth}}


@dataclass(frozen=True)
class Targets:
    text: str = DEFAULT_TEXT
    max_delay_minutes: int = DEFAULT_DELAY_MINUTES
    push: PushSubscription | None = None
    webhook: str | None = None

    def to_bytes(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":")).encode("utf-8")

    @classmethod
    def from_bytes(cls, data: bytes) -> "Targets":
        found = json.loads(data)
        push = found.get("push")
        return cls(
            text=found["text"],
            max_delay_minutes=found["max_delay_minutes"],
            push=PushSubscription(**push) if push else None,
            webhook=found.get("webhook"),
        )


# ---- checking what the owner sends ----


def check_text(value: object) -> str:
    if not isinstance(value, str):
        raise TargetError("bad_field", "'text' must be a string")
    text = " ".join(value.split())  # one line: a notification shows no layout
    if not text:
        raise TargetError("bad_text", "'text' must not be empty")
    if len(text) > MAX_TEXT_CHARS:
        raise TargetError("text_too_long", f"'text' is limited to {MAX_TEXT_CHARS} characters")
    if not text.isprintable():
        raise TargetError("bad_text", "'text' must not contain control or invisible characters")
    return text


def check_delay(value: object) -> int:
    # bool is an int in Python; JSON true is not a number of minutes.
    if not isinstance(value, int) or isinstance(value, bool):
        raise TargetError("bad_field", "'max_delay_minutes' must be a whole number")
    if not 0 <= value <= MAX_DELAY_MINUTES:
        raise TargetError("bad_delay", f"'max_delay_minutes' must be from 0 to {MAX_DELAY_MINUTES}")
    return value


def check_url(name: str, value: object, allow_local: bool) -> str:
    if not isinstance(value, str):
        raise TargetError("bad_field", f"'{name}' must be a string")
    try:
        return parse_url(value, allow_local).url
    except AddressRefused as exc:
        raise TargetError("bad_url", f"'{name}': {exc}") from None


def check_push(value: object, allow_local: bool) -> PushSubscription:
    if not isinstance(value, dict) or not isinstance(value.get("keys"), dict):
        raise TargetError(
            "bad_field", "'push' must be a subscription: {endpoint, keys: {p256dh, auth}}"
        )
    endpoint = check_url("push.endpoint", value.get("endpoint"), allow_local)
    keys = value["keys"]
    p256dh = _key(keys.get("p256dh"), "push.keys.p256dh", P256DH_BYTES)
    try:
        ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), b64url_decode(p256dh))
    except ValueError:
        raise TargetError("bad_key", "'push.keys.p256dh' is not a point on P-256") from None
    return PushSubscription(endpoint, p256dh, _key(keys.get("auth"), "push.keys.auth", AUTH_BYTES))


def _key(value: object, name: str, length: int) -> str:
    if not isinstance(value, str):
        raise TargetError("bad_field", f"'{name}' must be a string")
    try:
        raw = b64url_decode(value)
    except ValueError:
        raise TargetError("bad_key", f"'{name}' must be unpadded base64url") from None
    if len(raw) != length:
        raise TargetError("bad_key", f"'{name}' must be {length} bytes, not {len(raw)}")
    return value


def updated(current: Targets | None, body: dict, allow_local: bool) -> Targets:
    """`current` changed by a PUT body: a member left out keeps its value, `null`
    removes a target. At least one target must remain (DELETE turns notifications off)."""
    unknown = set(body) - {"text", "max_delay_minutes", "push", "webhook"}
    if unknown:
        raise TargetError("bad_field", f"unknown member '{sorted(unknown)[0]}'")
    targets = current or Targets()
    if "text" in body:
        targets = replace(targets, text=check_text(body["text"]))
    if "max_delay_minutes" in body:
        targets = replace(targets, max_delay_minutes=check_delay(body["max_delay_minutes"]))
    if "push" in body:
        push = body["push"]
        targets = replace(targets, push=None if push is None else check_push(push, allow_local))
    if "webhook" in body:
        url = body["webhook"]
        targets = replace(
            targets, webhook=None if url is None else check_url("webhook", url, allow_local)
        )
    if targets.push is None and targets.webhook is None:
        raise TargetError(
            "no_target", "give a 'push' subscription or a 'webhook' URL (DELETE turns them off)"
        )
    return targets


# ---- keeping them ----


# Read after every message stored: built once, so a send does not pay for building
# and hashing the statement again (docs/PERFORMANCE.md, "P1").
SEALED_QUERY = select(NotifyTargetRow.sealed).where(NotifyTargetRow.inbox_key == bindparam("inbox"))
DELETE_STATEMENT = delete(NotifyTargetRow).where(NotifyTargetRow.inbox_key == bindparam("inbox"))


class TargetStore:
    """notify_targets: one sealed row per inbox that wants notifications."""

    def __init__(self, engine: Engine, sealer: Sealer):
        self.engine = engine
        self.sealer = sealer

    # For get_in(), run by the writer for every batch of messages: compiled once.
    @cached_property
    def _sealed(self) -> Compiled:
        return Compiled(SEALED_QUERY, self.engine.dialect)

    @cached_property
    def _delete(self) -> Compiled:
        return Compiled(DELETE_STATEMENT, self.engine.dialect)

    def get(self, inbox_key: str) -> Targets | None:
        """The inbox's targets; None if it has none, or if they no longer open (the
        instance's secret key changed): such a row is useless and is deleted."""
        with self.engine.connect() as connection:
            sealed = connection.scalar(SEALED_QUERY, {"inbox": inbox_key})
        targets = self._opened(inbox_key, sealed)
        if targets is None and sealed is not None:
            self.delete(inbox_key)
        return targets

    def get_in(self, cursor, inbox_key: str) -> Targets | None:
        """get() in the caller's transaction, on its DB-API cursor (the writer's, for
        Notifications.mark_due_in)."""
        cursor.execute(self._sealed.sql, self._sealed.parameters(inbox=inbox_key))
        found = cursor.fetchone()
        sealed = None if found is None else bytes(found[0])
        targets = self._opened(inbox_key, sealed)
        if targets is None and sealed is not None:
            cursor.execute(self._delete.sql, self._delete.parameters(inbox=inbox_key))
        return targets

    def _opened(self, inbox_key: str, sealed: bytes | None) -> Targets | None:
        """The targets a row holds; None if there is none or it no longer opens."""
        if sealed is None:
            return None
        try:
            return Targets.from_bytes(self.sealer.open(inbox_key, sealed))
        except SealError:
            return None

    def put(self, inbox_key: str, targets: Targets) -> None:
        sealed = self.sealer.seal(inbox_key, targets.to_bytes())
        with self.engine.begin() as connection:
            insert_or(
                connection,
                NotifyTargetRow.__table__,
                {"inbox_key": inbox_key, "sealed": sealed},
                update=("sealed",),
            )

    def delete(self, inbox_key: str) -> bool:
        with self.engine.begin() as connection:
            result = connection.execute(DELETE_STATEMENT, {"inbox": inbox_key})
            return result.rowcount > 0

    def copy(self, from_key: str, to_key: str) -> bool:
        """Give `to_key` the targets of `from_key` (a rotation), unless it has its own.

        Nothing in a target is bound to the inbox's key pair: the subscription is the
        device's and the webhook the owner's, and the sealing binds a row to its inbox
        only so that rows cannot be swapped in the database; so the targets are opened
        and sealed again for the new inbox. True if they were copied.
        """
        targets = self.get(from_key)
        if targets is None:
            return False
        sealed = self.sealer.seal(to_key, targets.to_bytes())
        with self.engine.begin() as connection:
            inserted = insert_or(
                connection, NotifyTargetRow.__table__, {"inbox_key": to_key, "sealed": sealed}
            )
            return inserted.rowcount == 1

    def drop_push(self, inbox_key: str) -> None:
        """The push service said the subscription is gone: keep only the webhook, if any."""
        targets = self.get(inbox_key)
        if targets is None:
            return
        if targets.webhook is None:
            self.delete(inbox_key)
        else:
            self.put(inbox_key, replace(targets, push=None))
