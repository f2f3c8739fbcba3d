"""What the goals share: the report line, the server under test, the browser's flags.

benchmarks/run.py holds P1-P5 and the command line; benchmarks/attachments.py P6.
"""

import os
import re
import signal
import socket
import subprocess
import sys
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


@contextmanager
def instance(data_dir: Path, **env: str):
    port = free_port()
    environment = {
        **os.environ,
        "SECRETLINK_DATA_DIR": str(data_dir),
        **{f"SECRETLINK_{k.upper()}": v for k, v in env.items()},
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.bench_server", str(port)],
        cwd=ROOT,
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
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
