"""Choose the server by measurement: trivial POST/s and slow-client outcomes per candidate.

    python -m benchmarks.servers [ROUNDS]

Each candidate serves benchmarks/bare_app.py (a bare Flask JSON POST) on loopback
with 2 workers (or one process of 8 threads, for waitress). Per round and candidate:
wrk with 16 connections POSTing the same 426-byte JSON body for 5 s; then 256
connections stalled in their headers, and then 256 stalled in their bodies, each
time asking /healthz three times with a 1 s timeout ("fine" if all three answer).
Candidates run one after another within each round, and rounds repeat, so a drift
of the (shared) machine spreads over all of them. Candidates whose server is not
installed are skipped.
"""

import importlib.util
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
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
BODY = json.dumps({"ciphertext": "A" * 400})  # 426 bytes, like P1's envelope
STALLED = 256

CANDIDATES = {
    "gunicorn gthread 2x8 (before)": (
        "gunicorn",
        "gunicorn -k gthread -w 2 --threads 8 -b 127.0.0.1:{port} benchmarks.bare_app:app",
    ),
    "granian WSGI 2x8": (
        "granian",
        "granian --interface wsgi --workers 2 --blocking-threads 8 --port {port} "
        "--log-level warning benchmarks.bare_app:app",
    ),
    "waitress 8 threads, 1 process": (
        "waitress",
        "waitress-serve --threads 8 --listen 127.0.0.1:{port} benchmarks.bare_app:app",
    ),
    "granian ASGI 2 + body layer + a2wsgi (8 threads each)": (
        "granian",
        "granian --interface asginl --workers 2 --http 1 --http1-header-read-timeout 10000 "
        "--http1-buffer-size 16384 --backpressure 4096 --port {port} --log-level warning "
        "benchmarks.bare_app:asgi_app_a2wsgi",
    ),
    "granian ASGI 2 + secretlink.ops.asgi (8 threads each; chosen)": (
        "granian",
        "granian --interface asginl --workers 2 --http 1 --http1-header-read-timeout 10000 "
        "--http1-buffer-size 16384 --backpressure 4096 --port {port} --log-level warning "
        "benchmarks.bare_app:asgi_app",
    ),
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def healthy(port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            return sock.recv(64).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


def start(command: str, port: int) -> subprocess.Popen:
    program, *args = command.format(port=port).split()
    argv = [str(BIN / program), *args]
    process = subprocess.Popen(
        argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.monotonic() + 20
    while not healthy(port):
        if time.monotonic() > deadline or process.poll() is not None:
            raise RuntimeError(f"{program} did not start")
        time.sleep(0.2)
    time.sleep(1)  # let every worker boot
    return process


def stop(process: subprocess.Popen) -> None:
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def wrk(port: int, seconds: int = 5) -> float:
    script = Path(tempfile.mkstemp(suffix=".lua")[1])
    script.write_text(
        f"wrk.method = 'POST'\nwrk.body = {json.dumps(BODY)}\n"
        "wrk.headers['Content-Type'] = 'application/json'\n"
    )
    output = subprocess.run(
        ["wrk", "-t1", "-c16", f"-d{seconds}s", "-s", str(script), f"http://127.0.0.1:{port}/echo"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    script.unlink()
    return float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))


def stall_outcome(port: int, head: bytes) -> str:
    socks = []
    try:
        for _ in range(STALLED):
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            sock.sendall(head)
            socks.append(sock)
        time.sleep(0.3)
        answers = [healthy(port) for _ in range(3)]
    finally:
        for sock in socks:
            sock.close()
    time.sleep(1)
    return "fine" if all(answers) else "down"


STALLED_HEADERS = b"GET /healthz HTTP/1.1\r\nHost: x\r\n"
STALLED_BODY = (
    b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    b"Content-Length: 1000\r\n\r\n{"
)


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    results: dict[str, dict[str, list]] = {}
    for number in range(rounds):
        for name, (module, command) in CANDIDATES.items():
            if importlib.util.find_spec(module) is None:
                continue
            port = free_port()
            process = start(command, port)
            try:
                wrk(port, seconds=1)  # warm-up
                rate = wrk(port)
                headers = stall_outcome(port, STALLED_HEADERS)
                bodies = stall_outcome(port, STALLED_BODY)
            finally:
                stop(process)
            row = results.setdefault(name, {"rate": [], "headers": [], "bodies": []})
            row["rate"].append(rate)
            row["headers"].append(headers)
            row["bodies"].append(bodies)
            print(f"round {number + 1}: {name}: {rate:.0f}/s, headers {headers}, bodies {bodies}")
    print("\n| server | trivial POST/s (median; rounds) | stalled headers | stalled bodies |")
    print("| --- | --- | --- | --- |")
    for name, row in results.items():
        rates = ", ".join(f"{rate:.0f}" for rate in row["rate"])
        print(
            f"| {name} | {statistics.median(row['rate']):,.0f} ({rates}) | "
            f"{'/'.join(row['headers'])} | {'/'.join(row['bodies'])} |"
        )


if __name__ == "__main__":
    main()
