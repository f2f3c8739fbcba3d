"""The writer process of `secretlink serve` on SQLite: started, watched and stopped here.

The main process starts it before the workers (secretlink.store.writer_process says
what it does and why), starts it again when it ends without being asked to, and stops
it after the workers have finished their requests. Its socket lies in a folder of its
own that only the service's user can open. PostgreSQL takes concurrent writers well,
so an instance on it keeps a writer in each worker and starts no process.

    python -m secretlink.ops.writer SOCKET_PATH   (the settings come pickled on stdin)
"""

import logging
import os
import pickle
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

from secretlink.ops import logs
from secretlink.settings import Settings

log = logging.getLogger("secretlink.ops.writer")

# Given to the workers to finish their requests after SIGTERM (as the server gives them).
GRACEFUL_SECONDS = 30
# Waits between restarts of a writer that keeps ending, growing to the longest.
RESTART_SECONDS = (0.1, 0.5, 2.0, 5.0)
# A writer that ran this long before it ended is restarted after the shortest wait again.
STEADY_SECONDS = 60.0


FOLDER_PREFIX = "secretlink-writer-"
PID_IN_NAME = re.compile(r"([0-9]{1,9})-[A-Za-z0-9_]+")  # after the prefix: mkdtemp's


def remove_stale_folders(parent: str | None = None) -> None:
    """Remove the socket folders that servers killed outright (SIGKILL, the OOM
    killer) could not: this user's, named after a process that no longer runs."""
    parent = parent or tempfile.gettempdir()
    try:
        names = [name for name in os.listdir(parent) if name.startswith(FOLDER_PREFIX)]
    except OSError:
        return
    for name in names:
        pid = PID_IN_NAME.fullmatch(name.removeprefix(FOLDER_PREFIX))
        path = os.path.join(parent, name)
        try:
            if pid is None or os.lstat(path).st_uid != os.getuid():
                continue
        except OSError:
            continue
        if not _running(int(pid.group(1))):
            shutil.rmtree(path, ignore_errors=True)


def _running(pid: int) -> bool:
    """Whether a process with this pid exists (signal 0 checks without sending one)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, and belongs to another user
    return True


class WriterProcess:
    """The writer process, restarted whenever it ends until stop() is called."""

    def __init__(self, settings: Settings):
        self._settings = settings
        remove_stale_folders()
        # mode 0700; named after this process, which removes it when it stops.
        self._folder = tempfile.mkdtemp(prefix=f"{FOLDER_PREFIX}{os.getpid()}-")
        self.socket_path = os.path.join(self._folder, "writer.sock")
        self._lock = threading.Lock()
        self._stopping = False
        self._process: subprocess.Popen | None = None
        self._watcher: threading.Thread | None = None

    def start(self) -> None:
        with self._lock:
            self._process = self._spawn()
        self._watcher = threading.Thread(target=self._watch, name="writer-watch", daemon=True)
        self._watcher.start()

    def stop(self) -> None:
        """Ask the writer to end once the workers are gone, and wait for it."""
        with self._lock:
            self._stopping = True
            process = self._process
        if process is not None:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=GRACEFUL_SECONDS + 5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            process.stdin.close()
        shutil.rmtree(self._folder, ignore_errors=True)

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def _spawn(self) -> subprocess.Popen:
        process = subprocess.Popen(  # noqa: S603 (this interpreter, this package)
            [sys.executable, "-m", "secretlink.ops.writer", self.socket_path],
            stdin=subprocess.PIPE,
            # This process's import path: a zipapp's or a checkout's packages are found
            # where this process found them.
            env={**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, sys.path))},
        )
        # The settings as the main process prepared them (data folder, key); the pipe
        # stays open: the writer ends when it reads its end (this process is gone).
        process.stdin.write(pickle.dumps(self._settings))
        process.stdin.flush()
        return process

    def _watch(self) -> None:
        failures = 0
        while True:
            with self._lock:
                process = self._process
            started = time.monotonic()
            status = process.wait()
            with self._lock:
                if self._stopping:
                    return
            process.stdin.close()
            failures = 0 if time.monotonic() - started > STEADY_SECONDS else failures + 1
            pause = RESTART_SECONDS[min(failures, len(RESTART_SECONDS)) - 1] if failures else 0
            log.warning(
                "the message writer ended (status %s); workers commit their own messages "
                "until it is back, in %.1f s",
                status,
                pause,
            )
            time.sleep(pause)
            with self._lock:
                if self._stopping:
                    return
                self._process = self._spawn()


def main() -> None:
    from secretlink.store.instance import open_storage
    from secretlink.store.writer_process import WriterServer, listen

    socket_path = sys.argv[1]
    settings: Settings = pickle.load(sys.stdin.buffer)  # noqa: S301 (from the main process)
    logs.configure(settings.log_level)
    # Ctrl-C reaches the whole process group; the main process decides when this ends.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    storage, _ = open_storage(settings)
    server = WriterServer(storage.settle_messages, listen(socket_path), sys.stdin.fileno())
    signal.signal(signal.SIGTERM, lambda *_: server.stop(GRACEFUL_SECONDS))
    log.info("message writer ready (process %d)", os.getpid())
    server.serve()
    storage.engine.dispose()


if __name__ == "__main__":
    main()
