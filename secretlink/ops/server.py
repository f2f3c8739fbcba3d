"""`secretlink serve`: the app under granian, behind a layer that reads whole bodies.

Why this stack (docs/PERFORMANCE.md has the measurements): granian parses HTTP/1.1
and TLS in Rust (hyper, rustls) and keeps each open connection as an async task, so
connections that stall in their TLS handshake or their headers cost memory, not a
thread, and are closed by its timeouts. The Flask app is WSGI: secretlink.ops.asgi reads
each request's whole body on the event loop, under a minimum rate, before a worker
thread is taken, so a thread only ever runs a request that has fully arrived.

The main process prepares everything once before any worker starts (data folder,
secret key, schema upgrade, TLS certificate), so every worker uses the same key and
nobody races to migrate. On SQLite it also starts the message writer, one process
that commits every worker's messages (secretlink.ops.writer). SIGTERM stops
gracefully: the workers stop accepting, finish the requests they hold, and a message
is acknowledged only after its transaction commits, so no acknowledged message is
lost. Each worker runs the periodic retention purge.
"""

import functools
import logging
import random
import resource
import threading
import time
from dataclasses import replace

from secretlink.notify import worker as notify_worker
from secretlink.ops import logs
from secretlink.ops.writer import WriterProcess
from secretlink.settings import Settings
from secretlink.store import retention
from secretlink.store.blob_backends import StorageUnavailable
from secretlink.store.database import is_sqlite_file

log = logging.getLogger("secretlink.ops.server")

# Headers larger than this are refused (431) by the HTTP parser; browsers send 1-2 KiB.
MAX_HEADER_BYTES = 16 * 1024
# Open connections one worker process holds at once; more wait in the listen backlog.
# Each costs an async task and a file descriptor, not a thread.
CONNECTIONS_PER_WORKER = 4096
BACKLOG = 1024
# The TLS handshake deadline of granian's TLS listener (tls-listener's default; granian
# does not make it configurable).
TLS_HANDSHAKE_SECONDS = 10
# How long a worker is given to finish its requests after SIGTERM before it is killed.
GRACEFUL_SECONDS = 30


def body_policy(settings: Settings):
    from secretlink.ops.asgi import BodyPolicy
    from secretlink.store.blobs import UPLOAD_CHUNK_BYTES
    from secretlink.web.app import MAX_REQUEST_BYTES

    return BodyPolicy(
        max_bytes=MAX_REQUEST_BYTES,
        min_rate=settings.body_min_rate,
        grace_seconds=settings.header_timeout,
        upload_max_bytes=UPLOAD_CHUNK_BYTES,
    )


def load_app(settings: Settings, app_factory=None, writer_socket: str | None = None):
    """The ASGI app of one worker process (called in the worker, after the fork);
    `writer_socket`, where the instance's writer process takes its messages."""
    from secretlink.ops.asgi import wsgi_as_asgi
    from secretlink.web.app import create_app

    logs.configure(settings.log_level)
    # The main process upgraded the schema: workers must not race to do it.
    flask_app = (app_factory or create_app)(replace(settings, auto_upgrade=False))
    if writer_socket is not None:
        flask_app.extensions["secretlink.storage"].use_writer_process(writer_socket)
    start_purge_thread(settings)
    notify_worker.start_thread(settings)  # a thread of this worker, like the purge
    # Messages are answered on the event loop where they can be (secretlink/web/fast_path.py).
    fast = flask_app.extensions["secretlink.fast_path"]
    return wsgi_as_asgi(flask_app, settings.threads, body_policy(settings), fast.answer_on_loop)


def start_purge_thread(settings: Settings) -> None:
    # The purge runs in the workers, not the main process: a thread there could hold a
    # lock at the moment it forks a worker, and the child would inherit the lock held
    # forever. Several workers purging is harmless (idempotent deletes). It runs even
    # when the instance keeps messages forever: an inbox may have a retention of its own.
    thread = threading.Thread(target=purge_forever, args=(settings,), name="purge", daemon=True)
    thread.start()


def purge_forever(settings: Settings) -> None:
    while True:
        try:
            result = retention.purge_for(settings)
            log.info(
                "purge: %d old messages, %d spent challenges, %d abandoned uploads deleted",
                result.messages,
                result.nonces,
                result.abandoned_uploads,
            )
        except StorageUnavailable as exc:
            log.warning("purge: %s; will try again", exc)
        except Exception:
            log.exception("purge failed; will try again")
        # Spread the workers' purges over the interval.
        time.sleep(settings.purge_interval * random.uniform(0.9, 1.1))  # noqa: S311


def raise_open_files_limit(wanted: int) -> None:
    """Let the workers hold `wanted` descriptors, as far as the hard limit allows."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def granian_server(settings: Settings, app_factory=None, writer_socket: str | None = None):
    from granian.constants import HTTPModes, Interfaces, Loops
    from granian.http import HTTP1Settings
    from granian.log import LogLevels
    from granian.server import Server

    raise_open_files_limit(settings.workers * CONNECTIONS_PER_WORKER + 1024)
    tls = {}
    if settings.tls_cert:
        from granian.constants import SSLProtocols

        tls = {
            "ssl_cert": settings.tls_cert,
            "ssl_key": settings.tls_key,
            "ssl_protocol_min": SSLProtocols.tls12,
        }
    server = Server(
        "secretlink.ops.server:load_app",  # named in granian's log; the loader below is used
        address=settings.host,
        port=settings.port,
        # ASGI without lifespan events: nothing to start or stop per worker but the
        # purge thread, started when the app is loaded.
        interface=Interfaces.ASGINL,
        workers=settings.workers,
        loop=Loops.asyncio,
        # HTTP/1.1 only: the header timeout is hyper's HTTP/1 timeout, and HTTP/2 would
        # let one connection carry many slow streams.
        http=HTTPModes.http1,
        websockets=False,
        backlog=BACKLOG,
        backpressure=CONNECTIONS_PER_WORKER,
        http1_settings=HTTP1Settings(
            header_read_timeout=settings.header_timeout * 1000,
            keep_alive=True,
            max_buffer_size=MAX_HEADER_BYTES,
        ),
        log_level=LogLevels(settings.log_level.lower()),
        log_access=False,  # an access log would record every client's address
        workers_kill_timeout=GRACEFUL_SECONDS,
        # A worker that dies (out of memory, a crash in a C library) is replaced; one
        # that keeps dying right after its start stops the whole server.
        respawn_failed_workers=True,
        **tls,
    )
    loader = functools.partial(load_app, settings, app_factory, writer_socket)
    return server, loader


def prepare(settings: Settings) -> Settings:
    """Everything done once, in the main process, before the workers start."""
    from secretlink.store.migrate import require_current, upgrade
    from secretlink.web.app import default_instance_path

    settings = settings.with_data_dir(default_instance_path())
    if settings.auto_upgrade:
        upgrade(settings.database_url)
    else:
        require_current(settings.database_url)
    return settings


def run(settings: Settings, app_factory=None) -> None:
    """Serve until SIGTERM or SIGINT; `app_factory` stands in for create_app (benchmarks).
    On SQLite, messages are committed by a writer process (secretlink.ops.writer),
    stopped only after the workers have finished their requests."""
    # Only SQLite in a file needs one writer for all workers (PostgreSQL takes many).
    writer = start_writer(settings) if is_sqlite_file(settings.database_url) else None
    try:
        server, loader = granian_server(
            settings, app_factory, writer.socket_path if writer else None
        )
        logs.configure(settings.log_level)  # granian configured logging its own way
        server.serve(target_loader=loader, wrap_loader=False)
    finally:
        if writer is not None:
            writer.stop()


def start_writer(settings: Settings) -> WriterProcess | None:
    """The message writer, started; None if it cannot be (no temporary folder for its
    socket): then each worker commits its own messages, more slowly but as safely."""
    try:
        writer = WriterProcess(settings)
    except OSError as exc:
        log.warning("no message writer process (%s): each worker commits its own", exc)
        return None
    writer.start()
    return writer


def serve(settings: Settings) -> None:
    logs.configure(settings.log_level)
    settings = prepare(settings)
    if settings.trust_host_header and not (settings.base_url or settings.onion_url):
        log.warning(
            "--trust-host-header: links and proofs of possession take the origin from each "
            "request's Host header; a relay can choose it (docs/DEPLOY.md)."
        )
    scheme = "https" if settings.tls_cert else "http"
    log.info(
        "serving on %s://%s:%d with %d workers x %d threads (data in %s)",
        scheme,
        settings.host,
        settings.port,
        settings.workers,
        settings.threads,
        settings.data_dir,
    )
    log.info(
        "client timeouts: headers within %d s, bodies at %d bytes/s after that, "
        "TLS handshakes within %d s",
        settings.header_timeout,
        settings.body_min_rate,
        TLS_HANDSHAKE_SECONDS,
    )
    if settings.onion_listen is None:
        run(settings)
        return
    from secretlink.ops import onion

    listener = onion.start(settings)  # after prepare(): it derives its token from the key
    try:
        run(settings)
    finally:
        onion.stop(listener)
