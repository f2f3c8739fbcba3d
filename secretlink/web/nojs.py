"""What each page says when JavaScript is off (Tor Browser's "Safest" level).

The pages encrypt, decrypt and make keys in page scripts; without JavaScript they
can do none of it, so they say why and give the command line that does the same on
the visitor's own computer: the exact command for this page, with this request's
origin (the one the Host check matched, so on the onion name the onion origin and
Tor's SOCKS port) and, on a sender page, this inbox's link. The explanation is in a
<noscript> block (webui/templates/_no-js.html) and webui/static/no-js.css, loaded
only without JavaScript, hides every control that would need a script: nothing on
the page can look as if it sent something. No page path accepts POST.
"""

from flask import Flask, request

from secretlink.web.onion import on_onion_origin
from secretlink.web.origin import link_for, request_origin

# Tor's SOCKS port as Debian's tor service opens it (Tor Browser's own is 9150).
TOR_SOCKS_PROXY = "socks5h://127.0.0.1:9050"
# The name the commands give the inbox's key file.
KEY_FILE = "inbox.key"


def cli() -> str:
    """The command's start: through Tor when the page was reached over the onion name."""
    return f"secretlink --proxy {TOR_SOCKS_PROXY}" if on_onion_origin() else "secretlink"


def no_js_commands(public_key: str | None = None) -> list[str]:
    """The command lines that do what this page does, one per line."""
    endpoint = request.endpoint
    if endpoint == "pages.send" and public_key:
        return [f"{cli()} send {link_for(public_key)}"]
    if endpoint == "pages.home":
        return [
            f"secretlink keygen --key-file {KEY_FILE}",  # offline: no proxy needed
            f"{cli()} inbox create --server {request_origin()} --key-file {KEY_FILE}",
        ]
    if endpoint == "pages.inbox":
        return [f"{cli()} inbox read --server {request_origin()} --key-file {KEY_FILE}"]
    if endpoint == "pages.reply":
        return [f"{cli()} replies -"]
    return []


def install(app: Flask) -> None:
    app.jinja_env.globals.update(
        no_js_commands=no_js_commands, tor_socks_proxy=TOR_SOCKS_PROXY, on_onion=on_onion_origin
    )
