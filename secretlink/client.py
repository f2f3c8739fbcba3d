"""A small client for the secretlink API, used by the CLI.

It does what the browser pages do: seal to the key in a link, prove possession of
an inbox key, page through ciphertexts. Every failure becomes a ClientError whose
message is one sentence fit for a terminal.
"""

from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import quote, unquote, urlsplit

import requests

from secretlink.crypto import (
    InvalidKeyError,
    b64decode,
    b64encode,
    decode_public_key,
    seal,
)
from secretlink.crypto.keys import KeyPair
from secretlink.crypto.origin import InvalidOriginError, canonical_origin
from secretlink.crypto.pow import solve
from secretlink.crypto.proof import prove

TIMEOUT = 30
MAX_POW_BITS = 28  # beyond this a puzzle would take hours: a server's mistake or malice


class ClientError(Exception):
    """Something the user must know about: the message says what and, if possible, why."""


def network_error(exc: requests.RequestException, server: str) -> ClientError:
    """What went wrong talking to `server`, in one line (for the CLI and `verify`)."""
    if isinstance(exc, requests.exceptions.SSLError):
        return ClientError(f"the TLS certificate of {server} is not trusted")
    if isinstance(exc, requests.ConnectionError):
        return ClientError(f"cannot reach the server at {server}")
    if isinstance(exc, requests.Timeout):
        return ClientError(f"the server at {server} did not answer in time")
    # The text may quote what the server sent: printable characters only.
    detail = "".join(c if c.isprintable() else "?" for c in str(exc))[:200]
    return ClientError(f"request to {server} failed: {detail}")


@dataclass(frozen=True)
class Link:
    server: str
    public_key: bytes

    @property
    def public_key_text(self) -> str:
        return b64encode(self.public_key)


def _origin(url: str) -> str | None:
    """The URL's canonical http(s) origin (crypto/SPEC.md section 7.5: internationalized
    names in their xn-- form, as `requests` sends them in Host); None if it has none."""
    try:
        return canonical_origin(url)
    except InvalidOriginError:
        return None


def parse_link(link: str) -> Link:
    origin = _origin(link)
    segments = urlsplit(link.strip()).path.rstrip("/").split("/") if origin else []
    if origin is None or len(segments) < 3 or segments[-2] != "to":
        raise ClientError(f"not a secretlink link (expected https://HOST[:PORT]/to/KEY): {link}")
    try:
        public_key = decode_public_key(unquote(segments[-1]))
    except InvalidKeyError as exc:
        raise ClientError(
            f"the key in this link is damaged ({exc}); ask for the link again"
        ) from None
    return Link(origin, public_key)


def normalize_server(server: str) -> str:
    origin = _origin(server)
    if origin is None:
        raise ClientError(
            f"server must be an http:// or https:// URL with a valid host and port, not {server!r}"
        )
    return origin


class Api:
    def __init__(self, server: str):
        self.server = normalize_server(server)
        self.http = requests.Session()
        self.http.headers["User-Agent"] = "secretlink-cli"

    def call(
        self,
        method: str,
        path: str,
        *,
        json: dict | None = None,
        token: str | None = None,
        params: dict | None = None,
    ) -> dict | None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        try:
            response = self.http.request(
                method,
                self.server + path,
                json=json,
                params=params,
                headers=headers,
                timeout=TIMEOUT,
            )
        except requests.RequestException as exc:
            raise network_error(exc, self.server) from None
        if response.status_code == 204:
            return None
        try:
            data = response.json()
        except ValueError:
            data = None
        if not response.ok:
            reason = data.get("error") if isinstance(data, dict) else None
            raise ClientError(
                f"the server refused ({response.status_code}): "
                f"{reason or 'no reason given; is this a secretlink server?'}"
            )
        if not isinstance(data, (dict, list)):
            raise ClientError(f"{self.server} did not answer like a secretlink server")
        return data


def send(link: Link, text: str) -> str:
    """Seal `text` to the link's key, solve the server's puzzle, post; return the id."""
    envelope = seal(text, link.public_key)
    api = Api(link.server)
    base = f"/api/v1/inboxes/{link.public_key_text}"
    puzzle = api.call("POST", f"{base}/puzzle")
    try:
        difficulty = int(puzzle["difficulty"])
        if not 0 <= difficulty <= MAX_POW_BITS:
            raise ClientError(
                f"the server asks for an unreasonable proof of work ({difficulty} bits)"
            )
        solution = solve(puzzle["puzzle"], difficulty)
    except (KeyError, TypeError, ValueError, UnicodeEncodeError):
        raise ClientError("the server sent a malformed puzzle") from None
    data = api.call(
        "POST",
        f"{base}/messages",
        json={"ciphertext": b64encode(envelope), "puzzle": puzzle["puzzle"], "solution": solution},
    )
    return data["id"]


@dataclass(frozen=True)
class CipherMessage:
    id: str
    received_at: str
    ciphertext: str


class InboxClient:
    """An inbox's owner: proves possession once, then reads, deletes, registers."""

    def __init__(self, server: str, keypair: KeyPair):
        self.api = Api(server)
        self.keypair = keypair
        self.base = f"/api/v1/inboxes/{keypair.public_key_text}"
        self._token: str | None = None

    def token(self) -> str:
        if self._token is None:
            challenge = self.api.call(
                "POST", "/api/v1/auth/challenge", json={"public_key": self.keypair.public_key_text}
            )
            try:
                mac = prove(
                    self.keypair.secret_key,
                    b64decode(challenge["server_key"]),
                    b64decode(challenge["nonce"]),
                    int(challenge["expires_at"]),
                    self.api.server,
                )
            except (KeyError, TypeError, ValueError, InvalidKeyError):
                raise ClientError("the server sent a malformed challenge") from None
            answer = self.api.call(
                "POST",
                "/api/v1/auth/token",
                json={"challenge": challenge["challenge"], "proof": b64encode(mac)},
            )
            self._token = answer["token"]
        return self._token

    def register(self, prompt: str) -> dict:
        """Register (or update) the inbox; the link returned must carry our own key."""
        data = self.api.call("PUT", self.base, json={"prompt": prompt}, token=self.token())
        # A server that swapped in a key of its own would read what senders send.
        try:
            link = parse_link(data["link"])
        except (KeyError, TypeError, ClientError):
            raise ClientError(
                "the server returned no usable link; do not use this server"
            ) from None
        if link.public_key != self.keypair.public_key:
            raise ClientError("the server returned a link with another key; do not use this server")
        return data

    def messages(self) -> Iterator[CipherMessage]:
        """Every message, newest first, page by page."""
        before = None
        while True:
            params = {"before": before} if before else None
            page = self.api.call("GET", f"{self.base}/messages", token=self.token(), params=params)
            for item in page["messages"]:
                yield CipherMessage(item["id"], item["received_at"], item["ciphertext"])
            before = page.get("next")
            if not before:
                return

    def delete(self, message_id: str) -> None:
        self.api.call(
            "DELETE", f"{self.base}/messages/{quote(message_id, safe='')}", token=self.token()
        )
