"""Static assets referenced with Subresource Integrity and a content-hashed URL.

The page scripts in static/build/ are committed and ship in every sdist, wheel and
zipapp, so an install needs no Node.js. `python -m secretlink.web.assets` prints their
SHA-256 and SRI hashes, in the format of `node webui/build.mjs --check`, so a
release's files can be set against a rebuild from source (README.md).
"""

import base64
import functools
import hashlib
import sys
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

import jinja2
import jinja2.meta
from flask import Flask, url_for

# The installed webui package (webui/ in a checkout): where app.py serves from.
WEBUI = Path(str(files("secretlink.webui")))
REQUIRED = (
    "style.css",
    "no-js.css",
    *(f"build/{name}.js" for name in ("home", "inbox", "send", "reply", "notify-sw")),
    *(f"build/{name}.js" for name in ("pow-worker", "backup-worker", "seal-worker")),
)
# The pages the app renders; the partials they include are found by reading them
# (referenced_templates), so a new partial needs no entry here.
PAGE_TEMPLATES = ("error.html", "home.html", "inbox.html", "send.html", "reply.html")


class MissingAssetError(RuntimeError):
    """A page needs an asset that this install lacks: the install is broken."""


def check_installed(webui: Path = WEBUI) -> None:
    """Raise MissingAssetError naming the first missing page file or script.

    `secretlink serve` calls this once before any worker starts, so a broken install
    stops with one line instead of every worker dying at start."""
    for path in [webui / "static" / name for name in REQUIRED]:
        _require(path)
    for name in referenced_templates(webui / "templates", PAGE_TEMPLATES):
        _require(webui / "templates" / name)


def _require(path: Path) -> None:
    if not path.is_file() or path.stat().st_size == 0:
        raise MissingAssetError(
            f"this secretlink install is incomplete: {path} is missing or empty; "
            "reinstall secretlink (in a checkout, `git checkout -- webui` restores it)"
        )


def referenced_templates(folder: Path, pages: tuple[str, ...]) -> list[str]:
    """The pages and every template they extend or include, at any depth, in the
    order found; a missing one is listed too (the caller reports it)."""
    found: list[str] = []
    pending = list(pages)
    while pending:
        name = pending.pop(0)
        if name in found:
            continue
        found.append(name)
        path = folder / name
        if path.is_file():
            pending += _references(path.read_text(encoding="utf-8"))
    return found


@functools.lru_cache(maxsize=64)
def _references(source: str) -> tuple[str, ...]:
    """The templates a template's source extends or includes. Cached by the source
    itself: every app built in one process (the tests build hundreds) parses each
    page once, and an edited template is parsed again."""
    # Parsed only, never rendered; the i18n extension knows the {% trans %} tag.
    environment = jinja2.Environment(autoescape=True, extensions=["jinja2.ext.i18n"])
    names = jinja2.meta.find_referenced_templates(environment.parse(source))
    return tuple(name for name in names if name is not None)


@dataclass(frozen=True)
class Asset:
    url: str
    integrity: str


def _digest(path: Path) -> tuple[str, str]:
    data = path.read_bytes()
    sri = "sha384-" + base64.b64encode(hashlib.sha384(data).digest()).decode()
    return sri, hashlib.sha256(data).hexdigest()[:12]


def install(app: Flask) -> None:
    cache: dict[str, Asset] = {}
    static = Path(app.static_folder or "")

    def asset(name: str) -> Asset:
        if name in cache and not app.debug:
            return cache[name]
        path = static / name
        if not path.is_file():
            raise MissingAssetError(f"{path} is missing: this secretlink install is incomplete")
        integrity, version = _digest(path)
        cache[name] = Asset(url_for("static", filename=name, v=version), integrity)
        return cache[name]

    app.jinja_env.globals["asset"] = asset
    # Fail when the app is made, not on the first page view (`serve` checked already).
    check_installed(static.parent)


def script_hashes(webui: Path = WEBUI) -> list[str]:
    """One line per shipped page script: its SHA-256, its SRI hash and its name."""
    lines = []
    for path in sorted((webui / "static" / "build").glob("*.js")):
        data = path.read_bytes()
        sha256 = hashlib.sha256(data).hexdigest()
        sha384 = base64.b64encode(hashlib.sha384(data).digest()).decode()
        lines.append(f"sha256:{sha256}  sha384-{sha384}  build/{path.name}")
    return lines


if __name__ == "__main__":
    try:
        check_installed()
    except MissingAssetError as exc:
        sys.exit(str(exc))
    print("\n".join(script_hashes()))
