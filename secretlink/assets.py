"""Static assets referenced with Subresource Integrity and a content-hashed URL."""

import base64
import hashlib
from dataclasses import dataclass
from pathlib import Path

from flask import Flask, url_for

REQUIRED = ("style.css", "build/home.js", "build/inbox.js", "build/send.js", "build/pow-worker.js")


class MissingAssetError(RuntimeError):
    """A page needs a built asset that is not there (run `make build`)."""


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
            raise MissingAssetError(f"{path} is missing; build the page scripts with `make build`")
        integrity, version = _digest(path)
        cache[name] = Asset(url_for("static", filename=name, v=version), integrity)
        return cache[name]

    app.jinja_env.globals["asset"] = asset
    # Fail at start-up, not on the first page view, when the bundles were not built.
    for name in REQUIRED:
        if not (static / name).is_file():
            raise MissingAssetError(f"{static / name} is missing; build it with `make build`")
