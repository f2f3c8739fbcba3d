"""The one-file build: `python3 dist/secretlink.pyz` serves, and its CLI round-trips.

`make test` builds dist/secretlink.pyz first; run alone, this test skips without it
(under CI=true a missing zipapp fails).
"""

import json
import os
import subprocess
import sys
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

import pytest
import requests
from conftest import IN_CI, ROOT
from test_serve import free_port, stop, wait_for_writer_ready, wait_until_healthy

PYZ = ROOT / "dist" / "secretlink.pyz"


@pytest.fixture
def pyz():
    if not PYZ.is_file():
        message = f"{PYZ} is missing: build it with `make dist`"
        if IN_CI:
            pytest.fail(message)
        pytest.skip("ZIPAPP TEST SKIPPED: " + message)
    return PYZ


class Assets(HTMLParser):
    """The scripts, stylesheets and worker a page loads."""

    def __init__(self):
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if tag == "script" and attributes.get("src"):
            self.urls.append(attributes["src"])
        if tag == "link" and attributes.get("rel") in ("stylesheet", "icon"):
            self.urls.append(attributes["href"])
        for worker in (
            "data-pow-worker",
            "data-service-worker",
            "data-backup-worker",
            "data-seal-worker",
        ):
            if attributes.get(worker):
                self.urls.append(attributes[worker])


def check_page_and_assets(page_url: str) -> set[str]:
    """The page and everything it loads answer 200 from the zipapp; returns the assets."""
    page = requests.get(page_url, timeout=10)
    assert page.status_code == 200, page_url
    parser = Assets()
    parser.feed(page.text)
    scripts = [url for url in parser.urls if urlsplit(url).path.endswith(".js")]
    assert scripts, f"{page_url} loads no script"
    for url in parser.urls:
        asset = requests.get(urljoin(page_url, url), timeout=10)
        assert asset.status_code == 200, url
        assert asset.content, url
        if url in scripts:
            assert "javascript" in asset.headers["Content-Type"], url
    return set(parser.urls)


def test_zipapp_serves_and_round_trips(pyz, tmp_path):
    # Only the standard library and what the zipapp carries: no virtualenv on the path.
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env |= {"SHIV_ROOT": str(tmp_path / "shiv"), "SECRETLINK_RATE_LIMITS_ENABLED": "false"}
    python = sys.base_prefix + "/bin/python3"

    def cli(*args, stdin=None):
        result = subprocess.run(
            [python, str(pyz), *args],
            input=stdin,
            capture_output=True,
            text=True,
            cwd=tmp_path,
            env=env,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    port = free_port()
    log_path = tmp_path / "pyz.log"
    with log_path.open("wb") as log:
        server = subprocess.Popen(
            [python, str(pyz), "serve", "--port", str(port)],
            cwd=tmp_path,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until_healthy(url, server, log_path)
        # The message writer runs from the zipapp too (its own process, same packages).
        wait_for_writer_ready(log_path)
        cli("keygen", "--key-file", "inbox.key", "--server", url)
        link = cli("inbox", "create", "--key-file", "inbox.key").strip()
        cli("send", link, stdin="from the zipapp\n")
        messages = json.loads(cli("inbox", "read", "--key-file", "inbox.key", "--json"))
        assert [m["text"] for m in messages] == ["from the zipapp"]
        # The web assets travel in the zipapp too: every page and what it loads.
        loaded = set()
        for page in (url + "/", url + "/inbox", url + "/reply", link):
            loaded |= check_page_and_assets(page)
        assert any("pow-worker" in asset for asset in loaded)
        assert "/notify-sw.js" in loaded
    finally:
        assert stop(server) == 0, log_path.read_text()
    # Data lives beside the user, never in the zipapp's extraction cache.
    assert (tmp_path / "secretlink-data" / "secretlink.sqlite3").is_file()
    assert not list((tmp_path / "shiv").rglob("*.sqlite3"))
