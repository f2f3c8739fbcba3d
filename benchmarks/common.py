"""What the goals share: the report line, the server under test, the browser's flags,
the load tool.

benchmarks/run.py holds P2-P5 and the command line; benchmarks/throughput.py P1;
benchmarks/attachments.py P6.
"""

import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import requests

from secretlink.client.http import InboxClient
from secretlink.crypto import generate_keypair

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@dataclass
class Result:
    goal: str
    name: str
    ratio: float
    op: str
    target: float
    raw: list[str] = field(default_factory=list)
    # The goal's other conditions that were missed (their figures are in `raw`).
    missed: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        met = self.ratio <= self.target if self.op == "<=" else self.ratio >= self.target
        return met and not self.missed

    def report(self) -> str:
        verdict = "PASS" if self.passed else "FAIL"
        if self.missed:
            verdict += f" (missed: {', '.join(self.missed)})"
        lines = [
            f"{self.goal} {self.name}: {self.ratio:.2f} (goal {self.op} {self.target}) {verdict}"
        ]
        return "\n".join(lines + [f"    {line}" for line in self.raw])


def spread(values: list[float], unit: str, digits: int = 0) -> str:
    """A figure measured in rounds: `median unit (median of n; min to max)`, so that a
    reader sees how far the rounds were apart."""
    if len(values) == 1:
        return f"{values[0]:.{digits}f}{unit}"
    low, high = min(values), max(values)
    return (
        f"{statistics.median(values):.{digits}f}{unit} (median of {len(values)}; "
        f"{low:.{digits}f} to {high:.{digits}f})"
    )


# ---- the load tool ----


def wrk_rate(url: str, script: str, args: list[str], seconds: int, connections: int) -> dict:
    """Run wrk (one thread) with a Lua `script` and its arguments; requests/s, the
    count of answers that were not 2xx, and the count of requests."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as lua:
        lua.write(script)
        lua.flush()
        command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "-s", lua.name, url]
        output = subprocess.run(
            [*command, "--", *args], capture_output=True, text=True, check=True
        ).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    errors = re.search(r"Socket errors:.*", output)
    total = int(re.search(r"(\d+) requests in", output).group(1))
    return {
        "rate": rate,
        "non_2xx": int(non_2xx.group(1)) if non_2xx else 0,
        "total": total,
        "errors": errors.group(0) if errors else None,
    }


def json_post_script(body: str) -> str:
    """A wrk script that POSTs the same JSON body every time."""
    return (
        f"wrk.method = 'POST'\nwrk.body = {json.dumps(body)}\n"
        "wrk.headers['Content-Type'] = 'application/json'\n"
    )


# ---- the server under test ----


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Instance:
    url: str
    process: subprocess.Popen
    data_dir: Path

    def pids(self) -> list[int]:
        """The master process and all its workers."""
        children = subprocess.run(
            ["pgrep", "-P", str(self.process.pid)], capture_output=True, text=True, check=False
        ).stdout.split()
        return [self.process.pid, *map(int, children)]

    def rss_kib(self) -> int:
        """Resident memory of the master and all its workers."""
        return sum(status_kib(pid, "VmRSS") for pid in self.pids())


def status_kib(pid: int, name: str) -> int:
    """A memory figure of /proc/<pid>/status (VmRSS, VmHWM: the peak of VmRSS), in KiB."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(rf"{name}:\s+(\d+)", status).group(1))


# The checks that a goal other than P1 does not measure: rate limits (the load comes
# from one address), the proof-of-work gate, and the quota caps (a run sends far more
# than one inbox holds). The usage counters are kept as always, so their cost is
# measured. P1 turns all of them on (benchmarks/throughput.py).
CHECKS_OFF = {
    "rate_limits_enabled": "false",
    "pow_difficulty": "0",
    "inbox_max_messages": "0",
    "inbox_max_bytes": "0",
    "storage_budget_bytes": "0",
}
# The stack secretlink ran on before the open-internet issue, for P1's comparison: the
# same app, two gunicorn worker processes of eight threads each.
GUNICORN = ["-m", "gunicorn", "-k", "gthread", "-w", "2", "--threads", "8"]


@contextmanager
def instance(data_dir: Path, server: str = "granian", **env: str):
    """The benchmark app on a free loopback port, with CHECKS_OFF unless `env` (setting
    names without the SECRETLINK_ prefix) says otherwise; `server`: granian, as
    `secretlink serve`, or gunicorn."""
    port = free_port()
    environment = {
        **os.environ,
        "SECRETLINK_DATA_DIR": str(data_dir),
        "SECRETLINK_PORT": str(port),  # the app's own origin (proofs of possession)
        **{f"SECRETLINK_{k.upper()}": v for k, v in {**CHECKS_OFF, **env}.items()},
    }
    if server == "granian":
        command = [sys.executable, "-m", "benchmarks.bench_server", str(port)]
    else:
        address = ["-b", f"127.0.0.1:{port}", "--log-level", "warning"]
        command = [sys.executable, *GUNICORN, *address, "benchmarks.bench_server:wsgi()"]
    process = subprocess.Popen(
        command, cwd=ROOT, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if requests.get(url + "/healthz", timeout=1).ok:
                break
        except requests.RequestException:
            pass
        if time.monotonic() > deadline or process.poll() is not None:
            raise RuntimeError("benchmark server did not start")
        time.sleep(0.2)
    try:
        yield Instance(url, process, data_dir)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)


def new_inbox(url: str):
    keypair = generate_keypair()
    InboxClient(url, keypair).register("")
    return keypair
