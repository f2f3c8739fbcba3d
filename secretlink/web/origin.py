"""The instance's origin list, and the Host check that keeps proofs bound to it.

A proof of possession is bound to the origin the client talks to (crypto/SPEC.md
section 7.5), so the server must know its own origins rather than believe the Host
header: a relay that forwards `Host: relay.example` would otherwise get a proof made
for the relay accepted. The list is `SECRETLINK_BASE_URL` and `SECRETLINK_ONION_URL`;
with neither, a loopback bind's own address (so that `make run` just works). A
request whose Host is not on the list is refused with 400 before anything else
runs. `--trust-host-header` (SECRETLINK_TRUST_HOST_HEADER) restores the old
behaviour, taking the origin from any well-formed Host, for operators whose proxy
pins the Host itself.
"""

import ipaddress
import logging
from dataclasses import dataclass

from flask import Flask, Response, current_app, g, jsonify, request

from secretlink.crypto.origin import (
    DEFAULT_PORTS,
    InvalidOriginError,
    format_origin,
    parse_authority,
)
from secretlink.settings import Settings, SettingsError

log = logging.getLogger("secretlink.web.origin")

# Load balancers and container health checks call /healthz with whatever Host they
# like; it answers nothing that depends on the origin.
UNCHECKED_PATHS = frozenset({"/healthz"})


@dataclass(frozen=True)
class Origin:
    scheme: str
    host: str
    port: int  # always explicit here, so that `x` and `x:443` compare equal

    @classmethod
    def parse(cls, origin: str) -> "Origin":
        scheme, _, authority = origin.partition("://")
        host, port = parse_authority(authority)
        return cls(scheme, host, port or DEFAULT_PORTS[scheme])

    def __str__(self) -> str:
        return format_origin(self.scheme, self.host, self.port)


def loopback_names(bind_host: str) -> tuple[str, ...] | None:
    """The host names a loopback bind answers to; None if `bind_host` is not loopback.

    127.0.0.1 and ::1 are also `localhost` (the name `make run` prints and browsers
    use); another 127.0.0.0/8 address is only itself.
    """
    text = bind_host.strip().strip("[]")
    if text.lower() == "localhost":
        return ("localhost", "127.0.0.1", "[::1]")
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None  # a name: whatever it resolves to, it is not known to be loopback
    if not address.is_loopback:
        return None
    if address.version == 6:
        return ("[::1]", "localhost")
    return (str(address), "localhost") if str(address) == "127.0.0.1" else (str(address),)


def origin_list(settings: Settings) -> tuple[Origin, ...]:
    """Every origin this instance answers for; empty when the Host header is trusted."""
    configured = tuple(Origin.parse(x) for x in (settings.base_url, settings.onion_url) if x)
    if configured or settings.trust_host_header:
        return configured
    scheme = "https" if settings.tls_cert else "http"
    names = loopback_names(settings.host) or ()
    return tuple(Origin(scheme, name, settings.port) for name in names)


def host_values(origins: tuple[Origin, ...]) -> frozenset[str]:
    """The Host header values, in canonical spelling, that name one of `origins`: a
    request with one of them passes the Host check (`check_host`) for that origin."""
    values = set()
    for origin in origins:
        values.add(f"{origin.host}:{origin.port}")
        if origin.port == DEFAULT_PORTS[origin.scheme]:
            values.add(origin.host)
    return frozenset(values)


def refuse_unsafe_serving(settings: Settings) -> None:
    """Raise, before anything listens, if `serve` would bind a non-loopback address
    without knowing its origin: it would have to believe each request's Host."""
    if settings.base_url or settings.onion_url or settings.trust_host_header:
        return
    if loopback_names(settings.host) is None:
        raise SettingsError(
            f"SECRETLINK_BASE_URL is not set and {settings.host} is not a loopback address: "
            "set SECRETLINK_BASE_URL to the public origin (e.g. https://secretlink.example), "
            "or pass --trust-host-header if a proxy in front pins the Host"
        )


def _refuse(code: str, message: str) -> Response:
    response = jsonify(error=message, code=code)
    response.status_code = 400
    return response


def _request_host() -> tuple[str, int | None] | None:
    """(host, port or None) of the request's Host (after ProxyFix, if proxies are
    trusted); None if it is malformed."""
    value = request.environ.get("HTTP_HOST") or request.host
    if not (value.isascii() and value.isprintable()):
        return None
    try:
        host, port = parse_authority(value)
    except InvalidOriginError:
        return None
    return host, port


def check_host() -> Response | None:
    """Refuse a request whose Host is malformed or not one of the instance's origins."""
    if request.path in UNCHECKED_PATHS:
        return None
    found = _request_host()
    if found is None:
        return _refuse("bad_host", "the Host header is not a valid host[:port]")
    host, port = found
    origins: tuple[Origin, ...] = current_app.extensions["secretlink.origins"]
    if not origins and current_app.config["SECRETLINK"].trust_host_header:
        g.secretlink_origin = format_origin(request.scheme, host, port)
        return None
    for origin in origins:
        # The scheme is not compared: behind a TLS-terminating proxy the request
        # arrives over http, with the Host of an https origin and no port.
        if origin.host == host and origin.port == (port or DEFAULT_PORTS[origin.scheme]):
            g.secretlink_origin = str(origin)
            return None
    return _refuse("host_not_allowed", _not_allowed_reason(origins))


def _not_allowed_reason(origins: tuple[Origin, ...]) -> str:
    settings = current_app.config["SECRETLINK"]
    if settings.base_url or settings.onion_url:
        # The configured origins are not listed: that would tie an onion name to a
        # public one for anyone who asks.
        return (
            "this Host is not an origin of this server (SECRETLINK_BASE_URL); open the "
            "server at its own address"
        )
    shown = ", ".join(str(origin) for origin in origins) or "none"
    return (
        f"this Host is not an origin of this server: without SECRETLINK_BASE_URL it "
        f"answers only at its loopback bind address ({shown}); behind a proxy, set "
        "SECRETLINK_BASE_URL to the public origin"
    )


def request_origin() -> str:
    """The origin of this request on the list: links and proofs are bound to it."""
    return g.secretlink_origin


def link_for(public_key: str) -> str:
    return f"{request_origin()}/to/{public_key}"


def install(app: Flask) -> None:
    app.extensions["secretlink.origins"] = origin_list(app.config["SECRETLINK"])
    # First of all handlers: nothing (rate limits included) runs for a foreign Host.
    app.before_request_funcs.setdefault(None, []).insert(0, check_host)
    # Werkzeug's redirect that merges `//` builds its Location from the Host and
    # answers HTML, even under /api/: `/api/v1//x` is a 404 (JSON) instead. (Its other
    # redirect, adding a trailing `/`, has no route to act on: only `/` ends in one.)
    app.url_map.merge_slashes = False
