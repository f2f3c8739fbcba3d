"""The onion origin's side of each response, and onion clients told apart by circuit.

With `SECRETLINK_ONION_URL` set, the instance has two origins (secretlink/web/origin.py
picks the one a request's Host names, and links and proofs of possession use it):

- Pages answered on the public origin carry `Onion-Location: <onion origin><path>`,
  so that Tor Browser offers the onion service for the same page. It names only what
  the operator publishes anyway, and it is the same for every visitor.
- Answers on the onion origin carry no HSTS: the name is not a TLS host, and tor
  already authenticates and encrypts the connection.

Every onion visitor reaches the server from the local tor daemon, so a client key
made from the peer address would lump them all together. The onion listener
(secretlink/ops/onion.py) reads tor's PROXY protocol header, whose source address
carries the circuit id, and passes it to the app in one request header,
authenticated by a token derived from the instance's secret key: a client on the
public listener (or behind a proxy that forwards headers) cannot name a circuit.
The circuit id then stands in for the address in the rate limits' keyed hash
(secretlink/web/limits.py); like an address it is never logged or stored.
"""

import hashlib
import hmac
from urllib.parse import quote

from flask import Flask, Response, current_app, g, request

from secretlink.web.origin import Origin, request_origin

# The request header the onion listener adds (and removes from what clients send).
CIRCUIT_HEADER = "Secretlink-Onion-Circuit"
_TOKEN_PURPOSE = b"secretlink/v1/onion-listener-header"
# Characters kept as they are in the Onion-Location path (RFC 3986 pchar and "/").
_PATH_SAFE = "/:@!$&'()*+,;=-._~"


def relay_token(secret_key: str) -> str:
    """What the onion listener proves itself with: a MAC of a fixed purpose under the
    instance's secret key, so every worker and the listener agree without a new secret."""
    return hmac.new(secret_key.encode(), _TOKEN_PURPOSE, hashlib.sha256).hexdigest()


def header_value(token: str, circuit: str) -> str:
    return f"{token} {circuit}"


def onion_circuit() -> str | None:
    """The tor circuit this request came on (from the onion listener), else None."""
    if "secretlink_circuit" not in g:
        g.secretlink_circuit = _circuit_from_header()
    return g.secretlink_circuit


def _circuit_from_header() -> str | None:
    value = request.headers.get(CIRCUIT_HEADER)
    if not value:
        return None
    token, _, circuit = value.partition(" ")
    expected: str = current_app.extensions["secretlink.onion_token"]
    # A header without the token is a client's own invention: it counts for nothing
    # (the request is then known by its address, like any other).
    if not circuit or not hmac.compare_digest(token.encode(), expected.encode()):
        return None
    return circuit


def onion_origin() -> str | None:
    return current_app.extensions["secretlink.onion_origin"]


def on_onion_origin() -> bool:
    """Whether this request was answered for the onion origin (its Host is the onion name)."""
    onion = onion_origin()
    return onion is not None and "secretlink_origin" in g and request_origin() == onion


def onion_location() -> str:
    """The same page on the onion origin: its path and query, nothing else."""
    location = onion_origin() + quote(request.path, safe=_PATH_SAFE)
    query = request.query_string.decode("latin-1")
    return f"{location}?{query}" if query else location


def adjust_headers(response: Response) -> Response:
    if onion_origin() is None or "secretlink_origin" not in g:
        return response  # no onion origin, or a request refused before its Host was known
    if on_onion_origin():
        response.headers.pop("Strict-Transport-Security", None)
    elif response.mimetype == "text/html":
        response.headers["Onion-Location"] = onion_location()
    return response


def install(app: Flask) -> None:
    settings = app.config["SECRETLINK"]
    onion = settings.onion_url
    # Written as the Host check writes the origin it matched, to compare the two.
    app.extensions["secretlink.onion_origin"] = str(Origin.parse(onion)) if onion else None
    app.extensions["secretlink.onion_token"] = relay_token(settings.secret_key)
    # After-request functions run last-registered first: at the front of the list this
    # one runs after all the others, once the security headers (HSTS) are set.
    app.after_request_funcs.setdefault(None, []).insert(0, adjust_headers)
