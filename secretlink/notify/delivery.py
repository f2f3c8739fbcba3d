"""Sending one notification: the owner's neutral text, to a push service (RFC 8030,
encrypted for the device as RFC 8291 says, signed with the instance's VAPID key as
RFC 8292 says, through pywebpush) and/or as the body of a POST to a webhook.

Each attempt has a timeout; a timeout, a failed connection or an answer that says
"later" (408, 429, 5xx) is tried again after a growing pause, up to the attempts
allowed; any other refusal is final. Connections go only where addresses.py allows.
"""

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

import requests
from cryptography.hazmat.primitives.asymmetric import ec

from secretlink.notify.addresses import AddressRefused, AddressUnresolved, pinned_session
from secretlink.notify.targets import PushSubscription, Targets

log = logging.getLogger("secretlink.notify")

# How long a push service keeps the notification for a device that is offline.
PUSH_TTL_SECONDS = 12 * 3600
# A push service answers these when the subscription no longer exists (RFC 8030 7.3).
GONE = (404, 410)
AGAIN = (408, 429)


class Failed(Exception):
    """One attempt failed; `again` says whether another attempt may succeed."""

    def __init__(self, reason: str, again: bool, status: int | None = None):
        super().__init__(reason)
        self.again = again
        self.status = status


@dataclass(frozen=True)
class Outcome:
    delivered: int = 0  # targets reached
    failed: int = 0
    push_gone: bool = False  # the push service no longer knows the subscription


def retryable(status: int) -> bool:
    return status in AGAIN or status >= 500


@dataclass
class Sender:
    vapid_key: ec.EllipticCurvePrivateKey
    contact: str | None
    timeout: int
    attempts: int
    backoff: int
    allow_local: bool
    sleep: Callable[[float], None] = time.sleep

    def send(self, targets: Targets) -> Outcome:
        delivered = failed = 0
        push_gone = False
        if targets.push is not None:
            try:
                self._with_retries(lambda: self.push(targets.push, targets.text))
                delivered += 1
            except Failed as failure:
                failed += 1
                push_gone = failure.status in GONE
        if targets.webhook is not None:
            try:
                self._with_retries(lambda: self.webhook(targets.webhook, targets.text))
                delivered += 1
            except Failed:
                failed += 1
        return Outcome(delivered, failed, push_gone)

    def _with_retries(self, attempt: Callable[[], None]) -> None:
        for number in range(1, self.attempts + 1):
            try:
                attempt()
                return
            except Failed as failure:
                if not failure.again or number == self.attempts:
                    # The reason names no URL or address: logs say nothing of the owner.
                    log.warning("notification not delivered (attempt %d): %s", number, failure)
                    raise
            self.sleep(self.backoff * 2 ** (number - 1))

    def push(self, subscription: PushSubscription, text: str) -> None:
        # Imported here: pywebpush loads aiohttp (most of a second), which the web
        # workers and the CLI should not pay for at start.
        from py_vapid import Vapid02
        from pywebpush import WebPushException, webpush

        parts = urlsplit(subscription.endpoint)
        claims: dict[str, str | int] = {
            "aud": f"{parts.scheme}://{parts.netloc}",
            "sub": self.contact or "",
        }
        # no-strict: py_vapid would insist on a mailto: contact, which RFC 8292 leaves
        # optional (the operator may give none, or an https: one).
        vapid = Vapid02(self.vapid_key, conf={"no-strict": True})
        try:
            with _session(subscription.endpoint, self.allow_local) as session:
                webpush(
                    subscription.info(),
                    data=text,
                    vapid_private_key=vapid,
                    vapid_claims=claims,
                    content_encoding="aes128gcm",
                    timeout=self.timeout,
                    ttl=PUSH_TTL_SECONDS,
                    requests_session=session,
                )
        except WebPushException as exc:
            status = exc.status_code
            if status is None:
                raise Failed("the push request could not be made", again=False) from None
            raise Failed(
                f"the push service answered {status}", again=retryable(status), status=status
            ) from None
        except requests.RequestException as exc:
            raise _network_failure(exc) from None

    def webhook(self, url: str, text: str) -> None:
        try:
            with _session(url, self.allow_local) as session:
                response = session.post(
                    url,
                    data=text.encode("utf-8"),
                    headers={"Content-Type": "text/plain; charset=utf-8"},
                    timeout=self.timeout,
                )
        except requests.RequestException as exc:
            raise _network_failure(exc) from None
        status = response.status_code
        if 200 <= status < 300:
            return
        if 300 <= status < 400:
            raise Failed(f"the webhook redirected ({status}); redirects are not followed", False)
        raise Failed(f"the webhook answered {status}", again=retryable(status), status=status)


def _session(url: str, allow_local: bool) -> requests.Session:
    try:
        return pinned_session(url, allow_local)
    except AddressUnresolved:
        # DNS may be down for a moment: worth another attempt.
        raise Failed("the name does not resolve", again=True) from None
    except AddressRefused as exc:
        raise Failed(f"refused: {_without_host(exc)}", again=False) from None


def _without_host(exc: AddressRefused) -> str:
    # The refusal names the host or address; the log gets the kind of problem only.
    text = str(exc)
    if "not a globally routable" in text:
        return "the address is not globally routable"
    return "the URL is not allowed"


def _network_failure(exc: requests.RequestException) -> Failed:
    if isinstance(exc, requests.exceptions.SSLError):
        # A certificate that does not fit the name will not fit it a second later.
        return Failed("the TLS certificate check failed", again=False)
    if isinstance(exc, requests.Timeout):
        return Failed("timed out", again=True)
    if isinstance(exc, requests.ConnectionError):
        return Failed("could not connect", again=True)
    return Failed("the request failed", again=False)
