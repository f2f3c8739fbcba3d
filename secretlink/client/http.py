"""A small client for the secretlink API, used by the CLI.

It does what the browser pages do: seal to the key in a link, prove possession of
an inbox key, page through ciphertexts. Every failure becomes a ClientError whose
message is one sentence fit for a terminal.
"""

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from urllib.parse import quote, unquote, urlsplit

import requests

from secretlink.crypto import (
    AuthError,
    InvalidKeyError,
    b64encode,
    decode_public_key,
    seal,
)
from secretlink.crypto.keys import KeyPair
from secretlink.crypto.origin import InvalidOriginError, canonical_origin
from secretlink.crypto.pow import solve
from secretlink.crypto.proof import prove_challenge

TIMEOUT = 30
MAX_POW_BITS = 28  # beyond this a puzzle would take hours: a server's mistake or malice


class ClientError(Exception):
    """Something the user must know about: the message says what and, if possible, why."""


class Refused(ClientError):
    """The server answered with an error: its status, code and whole JSON answer."""

    def __init__(self, message: str, status: int, code: str | None, data: dict):
        super().__init__(message)
        self.status = status
        self.code = code
        self.data = data


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
    """A sender link, SPEC 4.4: exactly <origin>/to/<key>; a query or fragment is ignored."""
    origin = _origin(link)
    parts = urlsplit(link.strip()) if origin else None
    if parts is None or not parts.path.startswith("/to/") or parts.path.count("/") != 2:
        raise ClientError(f"not a secretlink link (expected https://HOST[:PORT]/to/KEY): {link}")
    if parts.username is not None or parts.password is not None:
        raise ClientError(f"a secretlink link has no user name or password before the host: {link}")
    try:
        public_key = decode_public_key(unquote(parts.path[len("/to/") :]))
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
        # Imported here: the proxy module uses this module's ClientError.
        from secretlink.client.proxy import session

        self.http = session()  # through --proxy or the environment's proxy (onion links)
        self.http.headers["User-Agent"] = "secretlink-cli"

    def call(
        self,
        method: str,
        path: str,
        *,
        json: dict | None = None,
        token: str | None = None,
        params: dict | None = None,
        data: bytes | None = None,
        headers: dict | None = None,
    ) -> dict | None:
        """One request; `data` and `headers` for a body that is not JSON (an upload's
        piece, secretlink/client/attachments.py)."""
        headers = {**({"Authorization": f"Bearer {token}"} if token else {}), **(headers or {})}
        try:
            response = self.http.request(
                method,
                self.server + path,
                json=json,
                data=data,
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
            answer = data if isinstance(data, dict) else {}
            reason = answer.get("error")
            raise Refused(
                f"the server refused ({response.status_code}): "
                f"{reason or 'no reason given; is this a secretlink server?'}",
                response.status_code,
                answer.get("code") if isinstance(answer.get("code"), str) else None,
                answer,
            )
        if not isinstance(data, (dict, list)):
            raise ClientError(f"{self.server} did not answer like a secretlink server")
        return data


def solved(puzzle: object) -> dict:
    """The body members that carry a server's puzzle and its solution."""
    try:
        difficulty = puzzle["difficulty"]
        text = puzzle["puzzle"]
        if isinstance(difficulty, bool) or not isinstance(difficulty, int):
            raise TypeError
        if not isinstance(text, str):
            raise TypeError
        if not 0 <= difficulty <= MAX_POW_BITS:
            raise ClientError(
                f"the server asks for an unreasonable proof of work ({difficulty} bits)"
            )
        return {"puzzle": text, "solution": solve(text, difficulty)}
    except (KeyError, TypeError, ValueError, UnicodeEncodeError):
        raise ClientError("the server sent a malformed puzzle") from None


# A puzzle goes stale (pow_stale) when it is over 120 s old and the difficulty rose
# meanwhile; the answer carries a fresh one. Each fresh puzzle is solved at once, so
# a second refusal means a server that keeps raising the bar: give up after a few.
STALE_RETRIES = 3


def with_work(call, puzzle: object) -> dict:
    """`call(fields)` with the puzzle solved; solve again on `pow_stale`, with the same body."""
    for _ in range(STALE_RETRIES):
        try:
            return call(solved(puzzle))
        except Refused as exc:
            if exc.code != "pow_stale":
                raise
            puzzle = exc.data.get("puzzle")
    return call(solved(puzzle))


def send(link: Link, text: str) -> str:
    """Seal `text` to the link's key, solve the server's puzzle, post; return the id."""
    return post_envelope(link, seal(text, link.public_key))


def post_envelope(link: Link, envelope: bytes, blob_ids: list[str] | None = None) -> str:
    """Post a sealed envelope to the link's inbox, with the server's puzzle solved, and
    the ids of the blobs it lists (uploaded before: secretlink/client/attachments.py)."""
    api = Api(link.server)
    base = f"/api/v1/inboxes/{link.public_key_text}"
    body = {"ciphertext": b64encode(envelope)}
    if blob_ids:
        body["attachments"] = blob_ids
    data = with_work(
        lambda fields: api.call("POST", f"{base}/messages", json={**body, **fields}),
        api.call("POST", f"{base}/puzzle"),
    )
    return data["id"]


@dataclass(frozen=True)
class CipherMessage:
    id: str
    received_at: str
    ciphertext: str


def message_page(page: object) -> list[CipherMessage]:
    """The messages of one page of the owner's list (docs/API.md 4.7), or ClientError:
    a server that sends something else gets one clear line, not a traceback."""
    fields = ("id", "received_at", "ciphertext")
    items = page.get("messages") if isinstance(page, dict) else None
    next_cursor = page.get("next") if isinstance(page, dict) else None
    if (
        not isinstance(items, list)
        or not all(isinstance(item, dict) for item in items)
        or not all(isinstance(item.get(name), str) for item in items for name in fields)
        or not (next_cursor is None or isinstance(next_cursor, str))
    ):
        raise ClientError("the server sent a malformed message list; do not trust this server")
    return [CipherMessage(*(item[name] for name in fields)) for item in items]


class InboxClient:
    """An inbox's owner: proves possession once, then reads, deletes, registers."""

    def __init__(self, server: str, keypair: KeyPair):
        self.api = Api(server)
        self.keypair = keypair
        self.base = f"/api/v1/inboxes/{keypair.public_key_text}"
        self._token: str | None = None
        # The inbox's usage against its quota, from the last message list read.
        self.usage: dict | None = None

    def token(self) -> str:
        if self._token is None:
            challenge = self.api.call(
                "POST", "/api/v1/auth/challenge", json={"public_key": self.keypair.public_key_text}
            )
            try:
                mac = prove_challenge(self.keypair.secret_key, challenge, self.api.server)
            except (InvalidKeyError, AuthError):
                raise ClientError("the server sent a malformed challenge") from None
            answer = self.api.call(
                "POST",
                "/api/v1/auth/token",
                json={"challenge": challenge["challenge"], "proof": b64encode(mac)},
            )
            self._token = answer["token"]
        return self._token

    def register(self, prompt: str) -> dict:
        """Register (or update) the inbox; the link returned must be exactly our own."""

        def put(fields: dict) -> dict:
            return self.api.call(
                "PUT", self.base, json={"prompt": prompt, **fields}, token=self.token()
            )

        try:
            data = put({})  # changing the prompt of an existing inbox costs no work
        except Refused as exc:
            if exc.code != "pow_required":
                raise
            # Creating it does: solve the server's creation puzzle for this key.
            data = with_work(put, self.api.call("POST", f"{self.base}/creation-puzzle"))
        # SPEC 4.4: the link must be the origin we proved the key to and our own key. A
        # server that swapped in a key of its own would read what senders send.
        expected = f"{self.api.server}/to/{self.keypair.public_key_text}"
        link = data.get("link") if isinstance(data, dict) else None
        if link != expected:
            try:
                other_key = parse_link(link).public_key != self.keypair.public_key
            except (TypeError, AttributeError, ClientError):
                other_key = False
            what = "a link to another key" if other_key else "a link that is not this inbox's own"
            raise ClientError(f"the server returned {what}; do not use this server")
        return data

    def messages(self) -> Iterator[CipherMessage]:
        """Every message, newest first, page by page. The next page is fetched, in a
        thread, while the caller works on this one: opening a page of sealed boxes
        takes about as long as a page's round trip on a fast link (docs/PERFORMANCE.md,
        "P3"). The caller makes no other request meanwhile, so the session is not
        shared between threads at once."""
        token = self.token()  # here, so that the thread never asks for one
        path = f"{self.base}/messages"

        def fetch(before: str | None) -> object:
            params = {"before": before} if before else None
            return self.api.call("GET", path, token=token, params=params)

        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="secretlink-pages")
        try:
            before = None
            pending = pool.submit(fetch, before)
            while pending is not None:
                page = pending.result()  # the thread's ClientError, raised here
                listed = message_page(page)  # ClientError unless it is a page
                if before is None and isinstance(page.get("usage"), dict):
                    self.usage = page["usage"]
                before = page.get("next")
                pending = pool.submit(fetch, before) if before else None
                yield from listed
        finally:
            # A caller that stops early does not wait for a page it will not read.
            pool.shutdown(wait=False, cancel_futures=True)

    def delete(self, message_id: str) -> None:
        self.api.call(
            "DELETE", f"{self.base}/messages/{quote(message_id, safe='')}", token=self.token()
        )
