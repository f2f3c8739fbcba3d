"""How the CLI reaches a server: directly, or through a proxy such as Tor's SOCKS port.

`secretlink --proxy socks5h://127.0.0.1:9050 COMMAND ...` sends every request of the
command through that proxy, whatever the environment says. Without it, the usual
variables apply, as `requests` reads them: ALL_PROXY, HTTPS_PROXY, HTTP_PROXY and
NO_PROXY. SOCKS needs PySocks (`requests[socks]`, a dependency of secretlink).

An onion link works only through a proxy that resolves names itself (socks5h://,
socks4a:// or an HTTP proxy): this computer cannot resolve an onion name, and trying
would tell its resolver which onion service you use. So an onion request without
such a proxy is stopped before anything is sent, with a sentence saying what to do.
"""

from urllib.parse import urlsplit

import requests
from requests.utils import select_proxy

from secretlink.client.http import ClientError

# Schemes whose proxy resolves the server's name, and those that leave it to this computer.
REMOTE_NAMES = ("socks5h", "socks4a", "http", "https")
LOCAL_NAMES = ("socks5", "socks4")
TOR_EXAMPLE = "socks5h://127.0.0.1:9050"

_chosen: str | None = None


def use(url: str | None) -> None:
    """Send every request of this process through `url` (None: as the environment says)."""
    global _chosen
    _chosen = None if url is None else checked(url)


def checked(url: str) -> str:
    parts = urlsplit(url.strip())
    if parts.scheme.lower() not in REMOTE_NAMES + LOCAL_NAMES or not parts.hostname:
        raise ClientError(
            f"--proxy must be a proxy URL such as {TOR_EXAMPLE} (Tor) or "
            f"http://HOST:PORT, not {url!r}"
        )
    try:
        parts.port  # noqa: B018 - raises on a port that is not a number from 0 to 65535
    except ValueError:
        raise ClientError(f"--proxy has a bad port: {url!r}") from None
    return url.strip()


def check_route(url: str, proxies: dict) -> None:
    """Refuse to send an onion request that would not reach Tor, or would leak its name."""
    host = (urlsplit(url).hostname or "").lower()
    if not host.endswith(".onion"):
        return
    chosen = select_proxy(url, proxies)
    if chosen is None:
        raise ClientError(
            f"{host} is an onion address: reach it through Tor's SOCKS port, e.g. "
            f"`secretlink --proxy {TOR_EXAMPLE} ...` (9150 while Tor Browser runs), "
            "or set ALL_PROXY"
        )
    if urlsplit(chosen).scheme.lower() in LOCAL_NAMES:
        raise ClientError(
            f"the proxy {urlsplit(chosen).scheme}:// would have this computer look up "
            f"{host}; use socks5h:// so that Tor resolves it (e.g. {TOR_EXAMPLE})"
        )


class Session(requests.Session):
    """requests' session, with the chosen proxy ahead of the environment's (requests
    itself lets the environment override a session's proxies) and onion requests
    checked before they are sent."""

    def merge_environment_settings(self, url, proxies, stream, verify, cert):
        merged = super().merge_environment_settings(url, proxies, stream, verify, cert)
        if _chosen is not None:
            merged["proxies"] = {"http": _chosen, "https": _chosen}
        check_route(url, merged["proxies"])
        return merged


def session() -> requests.Session:
    return Session()
