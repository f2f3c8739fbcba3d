"""The one-file build: `python3 dist/secretlink.pyz` serves, and its CLI round-trips.

`make test` builds dist/secretlink.pyz first; run alone, this test skips without it
(under CI=true a missing zipapp fails).
"""

import json
import os
import subprocess
import sys

import pytest
from conftest import IN_CI, ROOT
from test_serve import free_port, stop, wait_until_healthy

PYZ = ROOT / "dist" / "secretlink.pyz"


@pytest.fixture
def pyz():
    if not PYZ.is_file():
        message = f"{PYZ} is missing: build it with `make dist`"
        if IN_CI:
            pytest.fail(message)
        pytest.skip("ZIPAPP TEST SKIPPED: " + message)
    return PYZ


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
        cli("keygen", "--key-file", "inbox.key", "--server", url)
        link = cli("inbox", "create", "--key-file", "inbox.key").strip()
        cli("send", link, stdin="from the zipapp\n")
        messages = json.loads(cli("inbox", "read", "--key-file", "inbox.key", "--json"))
        assert [m["text"] for m in messages] == ["from the zipapp"]
    finally:
        assert stop(server) == 0, log_path.read_text()
    # Data lives beside the user, never in the zipapp's extraction cache.
    assert (tmp_path / "secretlink-data" / "secretlink.sqlite3").is_file()
    assert not list((tmp_path / "shiv").rglob("*.sqlite3"))
