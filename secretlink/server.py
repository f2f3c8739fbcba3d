"""`secretlink serve`: the app under gunicorn, a production WSGI server.

The master process prepares everything once before any worker starts (data
folder, secret key, schema upgrade, TLS certificate), so every worker uses the
same key and nobody races to migrate. Gunicorn stops gracefully on SIGTERM:
workers finish the requests they hold, and a message is acknowledged only after
its transaction commits, so no acknowledged message is lost. Each worker runs
the periodic retention purge.
"""

import logging
import random
import threading
import time
from dataclasses import replace

from gunicorn.app.base import BaseApplication
from gunicorn.glogging import Logger as GunicornLogger

from secretlink import logs, retention
from secretlink.settings import Settings

log = logging.getLogger("secretlink.server")


class RedactingLogger(GunicornLogger):
    """Gunicorn's logger with the address filter on each of its handlers."""

    def setup(self, cfg):
        super().setup(cfg)
        for logger in (self.error_log, self.access_log):
            for handler in logger.handlers:
                handler.addFilter(logs.RedactAddresses())


def bind_address(host: str, port: int) -> str:
    """host:port, with an IPv6 literal in brackets as gunicorn expects."""
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{host}:{port}"


def gunicorn_options(settings: Settings) -> dict:
    options = {
        "bind": bind_address(settings.host, settings.port),
        "workers": settings.workers,
        "threads": settings.threads,
        "worker_class": "gthread",
        "graceful_timeout": 30,
        "timeout": 60,
        "accesslog": None,  # an access log would record every client's address
        "errorlog": "-",
        "loglevel": settings.log_level.lower(),
        "logger_class": RedactingLogger,
        "forwarded_allow_ips": "",  # proxies are trusted through ProxyFix, if at all
        "control_socket_disable": True,
        "proc_name": "secretlink",
    }
    if settings.tls_cert:
        options |= {"certfile": str(settings.tls_cert), "keyfile": str(settings.tls_key)}
    return options


class SecretlinkServer(BaseApplication):
    def __init__(self, settings: Settings):
        self.settings = settings
        super().__init__()

    def load_config(self) -> None:
        for name, value in gunicorn_options(self.settings).items():
            self.cfg.set(name, value)
        self.cfg.set("post_worker_init", self._start_purge_thread)

    def load(self):
        from secretlink.app import create_app

        # The master already upgraded the schema: workers must not race to do it.
        return create_app(replace(self.settings, auto_upgrade=False))

    def _start_purge_thread(self, _worker) -> None:
        # The purge runs in the workers, not the master: a thread in the master could
        # hold a lock at the moment it forks a worker, and the child would inherit the
        # lock held forever. Several workers purging is harmless (idempotent deletes).
        if self.settings.retention_days:
            thread = threading.Thread(target=self._purge_forever, name="purge", daemon=True)
            thread.start()

    def _purge_forever(self) -> None:
        while True:
            try:
                result = retention.purge(self.settings.database_url, self.settings.retention_days)
                log.info(
                    "purge: %d old messages, %d spent challenges deleted",
                    result.messages,
                    result.nonces,
                )
            except Exception:
                log.exception("purge failed; will try again")
            # Spread the workers' purges over the interval.
            time.sleep(self.settings.purge_interval * random.uniform(0.9, 1.1))  # noqa: S311


def prepare(settings: Settings) -> Settings:
    """Everything done once, in the master, before the workers start."""
    from secretlink.app import default_instance_path
    from secretlink.migrate import require_current, upgrade

    settings = settings.with_data_dir(default_instance_path())
    if settings.auto_upgrade:
        upgrade(settings.database_url)
    else:
        require_current(settings.database_url)
    return settings


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
    SecretlinkServer(settings).run()
