"""Origins (crypto/SPEC.md section 7.5): the text a proof of possession is bound to.

One parser for every place an origin comes from: the server's settings, the CLI's
`--server`, links and key files, and the HTTP Host header. It accepts only what a
browser and this code read the same way (no user information, no percent-escapes,
no backslashes, no whitespace), so that the origin a client proves for is the origin
the server checks. Internationalized names are mapped with UTS 46 non-transitional
processing and the IDNA2008 rules, from the `idna` package: never the standard
library's `idna` codec, which implements IDNA2003 and maps `faß` to `fass`, another
name than the `xn--fa-hia` a browser (and `requests`) sends.
"""

import ipaddress
import re
import unicodedata

import idna

from secretlink.crypto.errors import InvalidOriginError

DEFAULT_PORTS = {"http": 80, "https": 443}
MAX_HOST_LENGTH = 253  # a DNS name, RFC 1035; IPv6 literals are far shorter
# "https://" + the longest host + ":65535": no canonical origin is longer.
MAX_ORIGIN_LENGTH = len("https://") + MAX_HOST_LENGTH + len(":65535")

_URL = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://([^/?#]*)([/?#].*)?", re.DOTALL)
_PORT = re.compile(r"[0-9]{1,5}")
_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
_NUMERIC_LAST_LABEL = re.compile(r"(0[xX][0-9a-fA-F]*|[0-9]+)")
# Characters that end, split or escape a host in some parser: refused, not guessed at.
_NOT_IN_HOST = re.compile(r"[\x00-\x20\x7f@%\\/?#\[\]:<>^|\"'`{}]")


def canonical_origin(url: str) -> str:
    """`scheme://host[:port]` of an http(s) URL, as section 7.5 normalises it.

    Any path, query or fragment is ignored here; callers that must refuse them check
    `url_rest(url)`.
    """
    scheme, authority, _ = _split(url)
    host, port = parse_authority(authority)
    return format_origin(scheme, host, port)


def url_rest(url: str) -> str:
    """What follows the origin in `url` (path, query, fragment), "" if nothing."""
    return _split(url)[2]


def parse_authority(authority: str) -> tuple[str, int | None]:
    """(canonical host, port or None) of `host[:port]`, as in a URL or a Host header."""
    if authority.startswith("["):
        end = authority.find("]")
        if end < 0:
            raise InvalidOriginError("an IPv6 address must be closed with ']'")
        host, after = _ipv6(authority[1:end]), authority[end + 1 :]
        if after and not after.startswith(":"):
            raise InvalidOriginError("only ':PORT' may follow an IPv6 address")
        port_text = after[1:] if after else None
    else:
        name, colon, port_text = authority.partition(":")
        host = _host_name(name)
        if not colon:
            port_text = None
    return host, _port(port_text)


def format_origin(scheme: str, host: str, port: int | None) -> str:
    shown_port = "" if port is None or port == DEFAULT_PORTS[scheme] else f":{port}"
    return f"{scheme}://{host}{shown_port}"


def _split(url: str) -> tuple[str, str, str]:
    if not isinstance(url, str):
        raise InvalidOriginError("an origin must be text")
    match = _URL.fullmatch(url.strip(" \t\r\n"))
    if match is None:
        raise InvalidOriginError("not a URL of the form http(s)://HOST[:PORT]")
    scheme = match[1].lower()
    if scheme not in DEFAULT_PORTS:
        raise InvalidOriginError("the scheme must be http or https")
    return scheme, match[2], match[3] or ""


def _port(text: str | None) -> int | None:
    if text is None:
        return None
    if not _PORT.fullmatch(text) or not 0 < int(text) < 65536:
        raise InvalidOriginError("the port must be a number from 1 to 65535")
    return int(text)


def _ipv6(text: str) -> str:
    # No zone identifiers (`%eth0`): they mean nothing outside one machine.
    if "%" in text:
        raise InvalidOriginError("an IPv6 address in an origin cannot have a zone")
    try:
        return f"[{ipaddress.IPv6Address(text).compressed}]"
    except ValueError:
        raise InvalidOriginError("not a valid IPv6 address") from None


def _name_character(character: str) -> bool:
    """Letters, marks, numbers, `-` and `.`: what the JavaScript side checks too, before
    the mapping (which then refuses more, and maps the rest to [a-z0-9-])."""
    return character in "-." or unicodedata.category(character)[0] in "LMN"


def _host_name(name: str) -> str:
    """An IPv4 address in dotted decimal, or a DNS name mapped to its ASCII form."""
    if not name:
        raise InvalidOriginError("the host is empty")
    if _NOT_IN_HOST.search(name) or not all(_name_character(c) for c in name):
        raise InvalidOriginError("the host holds a character no host name may hold")
    last = name.rstrip(".").rsplit(".", 1)[-1]
    if _NUMERIC_LAST_LABEL.fullmatch(last):
        # Browsers read any name ending in a number as an IPv4 address, in forms such
        # as 127.1 or 0x7f.1; only the one plain form is accepted, so both sides agree.
        try:
            return str(ipaddress.IPv4Address(name))
        except ValueError:
            raise InvalidOriginError(
                "a host ending in a number must be an IPv4 address such as 192.0.2.1"
            ) from None
    try:
        ascii_name = idna.encode(name, uts46=True, transitional=False).decode("ascii")
    except (idna.IDNAError, UnicodeError):
        raise InvalidOriginError("the host is not a valid (internationalized) name") from None
    labels = ascii_name.split(".")
    if len(ascii_name) > MAX_HOST_LENGTH or not all(_LABEL.fullmatch(x) for x in labels):
        raise InvalidOriginError(
            f"the host must be letters, digits and hyphens in labels of 1 to 63, "
            f"at most {MAX_HOST_LENGTH} in all"
        )
    if _NUMERIC_LAST_LABEL.fullmatch(labels[-1]):
        # Mapped to a number (`²` is `2`): a browser would now read an IPv4 address.
        raise InvalidOriginError("a host ending in a number must be an IPv4 address")
    return ascii_name
