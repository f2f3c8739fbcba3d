"""Every documented install path gives a working server on a machine without Node.js.

The wheel and the sdist that `make dist` builds, `pip install` of a clean clone of
this repository, and the zipapp: each is installed into a fresh virtualenv (the
zipapp runs on the bare interpreter) with nothing on PATH but that environment's own
scripts, so no Node.js; then `secretlink serve` starts and real Chromium creates an
inbox, sends and reads a message through the installed pages and scripts.

Dependencies come from a wheelhouse built once per run with the project's pip
configuration, so the installs themselves use no package index. `make test` builds
dist/ first; run alone, this test skips without it (under CI=true it fails). The
checkout case clones the committed HEAD: uncommitted changes are not in it.
"""

import base64
import hashlib
import os
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
import test_browser
from conftest import IN_CI, ROOT
from test_browser import create_inbox_in_browser, new_page, send_in_browser, shown_messages
from test_dist import check_page_and_assets
from test_serve import free_port, stop, wait_until_healthy

# The browser fixtures of the browser tests, used here as they are.
playwright_driver = test_browser.playwright_driver
browser = test_browser.browser
page_errors = test_browser.page_errors

DIST = ROOT / "dist"
PYTHON = Path(sys.base_prefix) / "bin" / "python3"  # the interpreter, not this test's venv
INSTALL_SECONDS = 180


def dist_file(pattern: str) -> Path:
    found = sorted(DIST.glob(pattern))
    if not found:
        message = f"no {DIST / pattern}: build it with `make dist`"
        if IN_CI:
            pytest.fail(message)
        pytest.skip("INSTALL TEST SKIPPED: " + message)
    return found[-1]


def run(command: list, env: dict, cwd: Path, timeout: float = INSTALL_SECONDS) -> str:
    result = subprocess.run(
        [str(part) for part in command],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert result.returncode == 0, f"{command} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def without_node(bin_dir: Path, tmp_path: Path) -> dict:
    """A minimal environment whose PATH is bin_dir alone: no node, npm or npx on it."""
    env = {
        "PATH": str(bin_dir),
        "HOME": str(tmp_path / "home"),
        "LANG": "C.UTF-8",
        "SECRETLINK_DATA_DIR": str(tmp_path / "data"),
        "SECRETLINK_RATE_LIMITS_ENABLED": "false",
        # A real but cheap proof of work: the browser solves it as in production.
        "SECRETLINK_POW_DIFFICULTY": "8",
    }
    for tool in ("node", "nodejs", "npm", "npx"):
        assert shutil.which(tool, path=env["PATH"]) is None, tool
    return env


@pytest.fixture(scope="module")
def wheelhouse(tmp_path_factory) -> Path:
    """Wheels of every runtime dependency and of the build backend, fetched once."""
    house = tmp_path_factory.mktemp("wheelhouse")
    backend = tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]["requires"]
    wheel = dist_file("secretlink-*.whl")
    run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--wheel-dir", house, wheel, *backend],
        env=dict(os.environ),
        cwd=house,
    )
    return house


@dataclass
class Installed:
    serve: list  # the command that starts the server, before its options
    env: dict
    webui: Path | None  # where the installed pages live (None: in the zipapp's cache)


def install_into_venv(target: str, wheelhouse: Path, tmp_path: Path) -> Installed:
    venv = tmp_path / "venv"
    subprocess.run([PYTHON, "-m", "venv", "--without-pip", venv], check=True, timeout=60)
    env = without_node(venv / "bin", tmp_path)
    # This test's pip installs into the new environment; --no-index: only the wheelhouse.
    pip = [sys.executable, "-m", "pip", "--python", venv / "bin" / "python", "install"]
    run([*pip, "--quiet", "--no-index", "--find-links", wheelhouse, target], env, tmp_path)
    python = venv / "bin" / "python"
    where = run([python, "-c", "import secretlink.web.assets as a; print(a.WEBUI)"], env, tmp_path)
    webui = Path(where.strip())
    assert webui.is_relative_to(venv), f"secretlink imported from {webui}, not the new venv"
    assert sorted(p.name for p in (webui / "static" / "build").glob("*.js")) == [
        "backup-worker.js",
        "home.js",
        "inbox.js",
        "notify-sw.js",
        "pow-worker.js",
        "reply.js",
        "seal-worker.js",
        "send.js",
    ]
    # The documented entry points.
    assert "version 0.1.0" in run([venv / "bin" / "secretlink", "--version"], env, tmp_path)
    assert "version 0.1.0" in run([python, "-m", "secretlink", "--version"], env, tmp_path)
    return Installed([venv / "bin" / "secretlink", "serve"], env, webui)


def clean_clone(tmp_path: Path) -> Path:
    if not (ROOT / ".git").exists():
        pytest.skip("INSTALL TEST SKIPPED: the checkout case needs a git repository")
    clone = tmp_path / "clone"
    head = run(["git", "rev-parse", "HEAD"], dict(os.environ), ROOT).strip()
    run(["git", "clone", "--quiet", "--no-checkout", ROOT, clone], dict(os.environ), tmp_path)
    run(["git", "checkout", "--quiet", "--detach", head], dict(os.environ), clone)
    return clone


@pytest.fixture(params=["wheel", "sdist", "checkout", "zipapp"])
def installed(request, tmp_path) -> Iterator[Installed]:
    kind = request.param
    if kind == "zipapp":
        pyz = dist_file("secretlink.pyz")
        (tmp_path / "no-node").mkdir()
        env = without_node(tmp_path / "no-node", tmp_path) | {"SHIV_ROOT": str(tmp_path / "shiv")}
        assert "version 0.1.0" in run([PYTHON, pyz, "--version"], env, tmp_path)
        yield Installed([PYTHON, pyz, "serve"], env, None)
        return
    wheelhouse = request.getfixturevalue("wheelhouse")
    if kind == "checkout":
        clone = clean_clone(tmp_path)
        yield install_into_venv(str(clone), wheelhouse, tmp_path)
        # Installing builds nothing into the checkout that git would show.
        assert run(["git", "status", "--porcelain"], dict(os.environ), clone) == ""
        return
    target = dist_file("secretlink-*.whl" if kind == "wheel" else "secretlink-*.tar.gz")
    yield install_into_venv(str(target), wheelhouse, tmp_path)


def installed_webui(installed: Installed, tmp_path: Path) -> Path:
    if installed.webui is not None:
        return installed.webui
    # The zipapp's files, as shiv extracted them on its first start.
    [webui] = (tmp_path / "shiv").glob("*/site-packages/secretlink/webui")
    return webui


def test_installed_server_runs_the_browser_flow(installed, browser, page_errors, tmp_path):
    port = free_port()
    log_path = tmp_path / "serve.log"
    with log_path.open("wb") as log:
        server = subprocess.Popen(
            [*installed.serve, "--port", str(port), "--workers", "1"],
            env=installed.env,
            cwd=tmp_path,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until_healthy(url, server, log_path)
        # The compiled catalogues were installed with the pages.
        german = requests.get(url + "/", headers={"Accept-Language": "de"}, timeout=10)
        assert "Postfach erstellen" in german.text
        recipient = new_page(browser, page_errors)
        link = create_inbox_in_browser(recipient, url)
        for page in (url + "/", url + "/inbox", link):
            check_page_and_assets(page)
        sender = new_page(browser, page_errors)
        send_in_browser(sender, link, "installed without Node.js")
        recipient.goto(url + "/inbox")
        assert shown_messages(recipient) == ["installed without Node.js"]
    finally:
        assert stop(server) == 0, log_path.read_text()

    # The same install, broken: it fails at start, once, in one line; no worker starts.
    (installed_webui(installed, tmp_path) / "static" / "build" / "send.js").unlink()
    result = subprocess.run(
        [*installed.serve, "--port", str(free_port())],
        env=installed.env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert "send.js is missing" in line, line
    assert "install is incomplete" in line, line


def test_printed_hashes_are_the_shipped_scripts():
    """`python -m secretlink.web.assets` (README: reproducing the page scripts) prints each
    shipped script's SHA-256 and SRI hash, as `node webui/build.mjs --check` does."""
    printed = run([sys.executable, "-m", "secretlink.web.assets"], dict(os.environ), ROOT)
    expected = []
    for path in sorted((ROOT / "webui" / "static" / "build").glob("*.js")):
        data = path.read_bytes()
        sri = base64.b64encode(hashlib.sha384(data).digest()).decode()
        expected.append(
            f"sha256:{hashlib.sha256(data).hexdigest()}  sha384-{sri}  build/{path.name}"
        )
    # home, inbox, send, pow-worker, notify-sw, reply, backup-worker, seal-worker
    assert len(expected) == 8
    assert printed.splitlines() == expected
