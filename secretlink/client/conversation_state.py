"""What this device remembers about its conversations (crypto/SPEC.md 5.9, "State").

One file per own key (an inbox key or a reply key) under
$XDG_STATE_HOME/secretlink/conversations/ (default ~/.local/state/secretlink): for each
conversation the peer key, the id, this side's next seq, the peer's seqs read (with the
message id each was read under) and, only if the user asked for it, the texts this
side sent. Nothing of it goes to a server. Files are mode 0600 in folders of mode 0700,
and are replaced atomically, so that a crash leaves the old state or the new one.
"""

import json
import os
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from secretlink.client.http import ClientError
from secretlink.crypto import EncodingError, PayloadError, b64decode, b64encode
from secretlink.crypto.conversation import Conversation

STATE_VERSION = 1


def state_dir() -> Path:
    """$XDG_STATE_HOME/secretlink; the XDG spec says a relative value is to be ignored."""
    base = os.environ.get("XDG_STATE_HOME", "")
    root = Path(base) if os.path.isabs(base) else Path.home() / ".local" / "state"
    return root / "secretlink"


def private_dir(path: Path) -> Path:
    """Make `path` (and its parents) if missing; the folders this module makes are 0700."""
    for folder in reversed([path, *path.parents]):
        if not folder.exists():
            folder.mkdir(mode=0o700)
    return path


def write_private(path: Path, text: str, *, exclusive: bool = False) -> None:
    """Write `text` to `path` readable by its owner only, atomically: a temporary file
    in the same folder, flushed to disk, then renamed over the old one. With
    `exclusive`, an existing file is never replaced (a key file)."""
    private_dir(path.parent)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".secretlink-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:  # mkstemp makes it 0600
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        if exclusive:
            os.link(temporary, path)  # fails if `path` exists, unlike a rename
            os.unlink(temporary)
        else:
            os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class DeviceState:
    """Every conversation of one own key, as this device knows them."""

    path: Path
    own_key: bytes
    book: dict[bytes, Conversation] = field(default_factory=dict)
    # Texts this side sent, by peer key: only when the user opted in (--keep-sent).
    sent: dict[bytes, list[dict]] = field(default_factory=dict)
    # Peers (reply keys) whose conversations the recipient blocked on this device.
    blocked: set[bytes] = field(default_factory=set)

    @classmethod
    def load(cls, own_key: bytes) -> "DeviceState":
        path = state_dir() / "conversations" / f"{b64encode(own_key)}.json"
        state = cls(path, own_key)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return state
        except (OSError, ValueError) as exc:
            raise ClientError(f"cannot read the conversation state {path}: {exc}") from None
        try:
            if data["version"] != STATE_VERSION or b64decode(data["key"]) != own_key:
                raise PayloadError("another version or key")
            for item in data["conversations"]:
                conversation = Conversation.from_dict(item)
                state.book[conversation.peer_key] = conversation
                state.sent[conversation.peer_key] = [
                    {"seq": int(s["seq"]), "text": str(s["text"]), "at": str(s["at"])}
                    for s in item.get("sent", [])
                ]
            state.blocked = {b64decode(peer) for peer in data.get("blocked", [])}
        except (KeyError, TypeError, ValueError, AttributeError, PayloadError, EncodingError):
            raise ClientError(
                f"the conversation state {path} is damaged; move it away to start afresh "
                "(messages read before will then show again as new)"
            ) from None
        return state

    def save(self) -> None:
        if not self.book and not self.path.exists():
            return  # an inbox without conversations leaves no trace on this device
        try:
            self._write()
        except OSError as exc:
            raise ClientError(
                f"cannot save the conversation state in {self.path}: {exc.strerror}"
            ) from None

    def _write(self) -> None:
        conversations = []
        for peer, conversation in self.book.items():
            item = conversation.to_dict()
            if self.sent.get(peer):
                item["sent"] = self.sent[peer]
            conversations.append(item)
        document = {
            "version": STATE_VERSION,
            "key": b64encode(self.own_key),
            "conversations": conversations,
            "blocked": sorted(b64encode(peer) for peer in self.blocked),
        }
        write_private(self.path, json.dumps(document, indent=1, ensure_ascii=False) + "\n")

    def keep_sent(self, peer: bytes, seq: int, text: str) -> None:
        self.sent.setdefault(peer, []).append({"seq": seq, "text": text, "at": now()})
