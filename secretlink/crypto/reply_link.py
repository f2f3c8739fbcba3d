"""The private reply link: how a sender keeps the key that reads a conversation.

    <origin>/reply#<b64 reply secret key>.<b64 inbox public key>.<b64 conversation id>

The secret sits in the fragment only, which browsers never send to a server.
crypto/SPEC.md section 4.6 is the normative text.
"""

from dataclasses import dataclass
from urllib.parse import urlsplit

from secretlink.crypto.b64 import b64decode, b64encode
from secretlink.crypto.errors import EncodingError, ReplyLinkError
from secretlink.crypto.keys import KEY_BYTES, KeyPair, check_public_key, keypair_from_secret
from secretlink.crypto.origin import canonical_origin

CONVERSATION_ID_BYTES = 16
REPLY_PATH = "/reply"


@dataclass(frozen=True)
class ReplyLink:
    origin: str  # the server, for every request
    reply_keypair: KeyPair  # the sender's reply key (R)
    inbox_key: bytes  # the recipient's inbox public key (I_pk)
    conversation_id: bytes


def build_reply_link(
    origin: str, reply_secret_key: bytes, inbox_key: bytes, conversation_id: bytes
) -> str:
    """The link for a conversation; `origin` must already be canonical (section 7.5)."""
    if canonical_origin(origin) != origin:
        raise ReplyLinkError(f"not a canonical origin: {origin!r}")
    check_public_key(inbox_key)
    if len(reply_secret_key) != KEY_BYTES or len(conversation_id) != CONVERSATION_ID_BYTES:
        raise ReplyLinkError("a reply link holds a 32-byte key and a 16-byte conversation id")
    parts = (b64encode(reply_secret_key), b64encode(inbox_key), b64encode(conversation_id))
    return f"{origin}{REPLY_PATH}#{'.'.join(parts)}"


def _part(text: str, length: int, name: str) -> bytes:
    try:
        value = b64decode(text)
    except EncodingError:
        raise ReplyLinkError(f"the {name} in the reply link is not base64url") from None
    if len(value) != length:
        raise ReplyLinkError(f"the {name} in the reply link is not {length} bytes")
    return value


def parse_reply_link(link: str) -> ReplyLink:
    """Read a reply link (section 4.6), rejecting it at the first rule it breaks."""
    if not isinstance(link, str):
        raise ReplyLinkError("a reply link is a text")
    origin = canonical_origin(link)  # InvalidOriginError: scheme, host, port, user information
    parts = urlsplit(link.strip())
    if parts.path != REPLY_PATH:
        raise ReplyLinkError("a reply link's path is exactly /reply")
    pieces = parts.fragment.split(".")
    if len(pieces) != 3:
        raise ReplyLinkError("a reply link's fragment is secret.inbox-key.conversation-id")
    secret_key = _part(pieces[0], KEY_BYTES, "reply key")
    inbox_key = _part(pieces[1], KEY_BYTES, "inbox key")
    conversation_id = _part(pieces[2], CONVERSATION_ID_BYTES, "conversation id")
    keypair = keypair_from_secret(secret_key)
    check_public_key(keypair.public_key)  # never fails for X25519(sk, 9); the rule is general
    check_public_key(inbox_key)
    if inbox_key == keypair.public_key:
        raise ReplyLinkError("a reply link's inbox key is its own reply key")
    return ReplyLink(origin, keypair, inbox_key, conversation_id)
