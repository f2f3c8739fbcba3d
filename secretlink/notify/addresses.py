"""Where the notifier may connect: globally routable addresses only.

A webhook URL or a push endpoint is chosen by an inbox's owner, so without care the
server could be made to call its own admin ports or the operator's private network.
Every address a host name resolves to must be globally routable, and the connection
then goes to the address that was checked (the name is resolved once: a second
lookup could answer differently). Host and TLS server name are still the URL's
name, so certificates are checked as usual. Redirects are never followed.
NOTIFY_ALLOW_LOCAL_TARGETS turns the address checks off (and admits http://).
"""

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

import requests
from requests.adapters import HTTPAdapter

MAX_URL_CHARS = 2048
# An answer is only looked at for its status: the rest of a large one is not read.
MAX_ANSWER_BYTES = 16 * 1024
# Prefixes that embed an IPv4 address the host would reach through a translator.
TRANSLATED = tuple(
    ipaddress.ip_network(prefix)
    for prefix in ("64:ff9b::/96", "64:ff9b:1::/48", "2002::/16", "2001::/32")
)
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class AddressRefused(ValueError):
    """The URL or the address behind it is not one the notifier may connect to."""


class AddressUnresolved(AddressRefused):
    """The name has no address now (which may change)."""


@dataclass(frozen=True)
class Destination:
    """A checked URL: the parts the connection needs."""

    url: str
    scheme: str
    host: str  # as in the URL: a name, or an address without brackets
    port: int

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"


def is_global(address: str) -> bool:
    """True for an address reachable on the public internet (no loopback, private,
    link-local, shared, reserved, multicast or translated address)."""
    ip: IPAddress = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        elif any(ip in network for network in TRANSLATED):
            return False
    return ip.is_global and not ip.is_multicast


def parse_url(url: str, allow_local: bool) -> Destination:
    """Check a URL's form; AddressRefused says in a sentence what is wrong with it."""
    if len(url) > MAX_URL_CHARS:
        raise AddressRefused(f"the URL is longer than {MAX_URL_CHARS} characters")
    if not url.isascii() or any(c <= " " or c == "\x7f" for c in url):
        raise AddressRefused(
            "the URL must be ASCII without spaces (write an international name in punycode)"
        )
    try:
        parts: SplitResult = urlsplit(url)
        port = parts.port
    except ValueError:
        raise AddressRefused("the URL cannot be parsed (is its port a number?)") from None
    allowed = ("https", "http") if allow_local else ("https",)
    if parts.scheme not in allowed:
        raise AddressRefused("the URL must start with https://")
    if parts.username is not None or parts.password is not None:
        raise AddressRefused("the URL must not hold a user name or password")
    if parts.fragment:
        raise AddressRefused("the URL must not have a #fragment")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise AddressRefused("the URL has no host")
    if not allow_local:
        _refuse_local_literal(host)
    return Destination(url, parts.scheme, host, port or (443 if parts.scheme == "https" else 80))


def _refuse_local_literal(host: str) -> None:
    """Refuse what needs no lookup to be known local; names are checked when resolved."""
    if host == "localhost" or host.endswith(".localhost"):
        raise AddressRefused("the URL names this machine (localhost)")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return  # a name
    if not is_global(host):
        raise AddressRefused(f"{host} is not a globally routable address")


def resolve(destination: Destination, allow_local: bool) -> str:
    """Look the host up once; every address must be global. Returns the one to connect to."""
    try:
        found = socket.getaddrinfo(
            destination.host, destination.port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
        )
    except (socket.gaierror, UnicodeError):
        raise AddressUnresolved(f"the name {destination.host} does not resolve") from None
    addresses = [str(info[4][0]) for info in found]
    if not addresses:
        raise AddressUnresolved(f"the name {destination.host} has no address")
    if not allow_local:
        for address in addresses:
            if not is_global(address):
                # Any private answer refuses the whole name: picking the global one
                # would let a name alternate between them.
                raise AddressRefused(
                    f"{destination.host} resolves to {address}, not a globally routable address"
                )
    return addresses[0]


class PinnedAdapter(HTTPAdapter):
    """Sends every request to one address that was checked, keeping the URL's name for
    the Host header, the TLS server name and the certificate check."""

    def __init__(self, destination: Destination, address: str):
        super().__init__(max_retries=0)
        self.destination = destination
        self.address = address

    def send(self, request, *args, **kwargs):
        parts = urlsplit(request.url)
        if (parts.hostname or "").rstrip(".") != self.destination.host:
            raise AddressRefused("the request goes to another host than the one checked")
        literal = f"[{self.address}]" if ":" in self.address else self.address
        request.url = parts._replace(netloc=f"{literal}:{self.destination.port}").geturl()
        request.headers["Host"] = self.destination.host_header
        return super().send(request, *args, **kwargs)

    def get_connection_with_tls_context(self, request, verify, proxies=None, cert=None):
        host_params, pool_kwargs = self.build_connection_pool_key_attributes(request, verify, cert)
        if host_params["scheme"] == "https":
            pool_kwargs["server_hostname"] = self.destination.host
            pool_kwargs["assert_hostname"] = self.destination.host
        return self.poolmanager.connection_from_host(**host_params, pool_kwargs=pool_kwargs)


class PinnedSession(requests.Session):
    """A session for one checked destination: no redirects, no proxies from the
    environment (they would connect elsewhere), a bounded answer."""

    def __init__(self, destination: Destination, address: str):
        super().__init__()
        self.trust_env = False
        self.headers["User-Agent"] = "secretlink"
        self.headers["Accept-Encoding"] = "identity"
        adapter = PinnedAdapter(destination, address)
        self.mount("https://", adapter)
        self.mount("http://", adapter)

    def send(self, request, **kwargs):
        kwargs["allow_redirects"] = False
        kwargs["stream"] = True
        response = super().send(request, **kwargs)
        try:
            # requests keeps a read body here; callers (pywebpush too) read .text.
            response._content = response.raw.read(MAX_ANSWER_BYTES, decode_content=False)
        finally:
            response.close()
        return response


def pinned_session(url: str, allow_local: bool) -> PinnedSession:
    """A session that may only reach `url`'s host, at the address checked now."""
    destination = parse_url(url, allow_local)
    return PinnedSession(destination, resolve(destination, allow_local))
