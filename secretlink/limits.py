"""Rate limits that never learn who the client is.

A client is known to the limiter only as a keyed hash of its address (IPv6 grouped
by /64, since one host usually holds a whole /64). The hashing key rotates every
hour and lives only in memory or, with SECRETLINK_REDIS_URL, in Redis (for two
hours), so that all workers and machines agree on it. Nothing reaches the database
or the logs (Flask-Limiter's refusal lines name the hashed client, so they are
logged only at DEBUG: see secretlink/logs.py); someone who copies Redis within
those two hours could test guessed addresses against the counters, never list
them. A new key also starts each client afresh, so an hourly limit can let through
up to twice its count around a rotation. With the limits switched off there is no
limiter at all. Tor exits and large proxies merge many people into one "client".
"""

import ipaddress
import secrets
import threading
import time
from collections.abc import Callable

from flask import Flask, current_app, request
from flask_limiter import Limiter
from nacl.encoding import HexEncoder
from nacl.hash import blake2b

from secretlink import logs

ROTATE_SECONDS = 3600
CLIENT_KEY_PURPOSE = b"secretlink/v1/client-rate-key"


def network_of(address: str) -> str:
    """The unit a limit applies to: one IPv4 address, or one IPv6 /64."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return "unknown"
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


class RotatingKey:
    """The current hashing key: random, per hour, shared through Redis when there is one."""

    def __init__(self, redis_url: str | None):
        self.redis = None
        if redis_url:
            import redis

            self.redis = redis.Redis.from_url(redis_url)
        self._lock = threading.Lock()
        self._period = -1
        self._key = b""

    def current(self) -> bytes:
        period = int(time.time()) // ROTATE_SECONDS
        with self._lock:
            if period != self._period:
                self._key = self._fetch(period)
                self._period = period
            return self._key

    def _fetch(self, period: int) -> bytes:
        fresh = secrets.token_bytes(32)
        if self.redis is None:
            return fresh
        name = f"secretlink:client-key:{period}"
        # The first worker to ask sets it; everyone reads the same value back.
        self.redis.set(name, fresh, nx=True, ex=2 * ROTATE_SECONDS)
        return self.redis.get(name) or fresh


def client_key() -> str:
    rotating: RotatingKey = current_app.extensions["secretlink.client_key"]
    network = network_of(request.remote_addr or "").encode()
    digest = blake2b(
        CLIENT_KEY_PURPOSE + b"\x00" + network,
        key=rotating.current(),
        digest_size=16,
        encoder=HexEncoder,
    )
    return "client:" + digest.decode()


def inbox_from_url() -> str:
    return "inbox:" + str((request.view_args or {}).get("public_key", ""))


def instance_wide() -> str:
    return "instance"


def limit(setting: str, key_func: Callable[[], str], scope: str):
    """A rule: the limit string is read from the settings when a request is made."""
    return setting, key_func, scope


# endpoint -> rules; every rule must hold for a request to pass.
RULES = {
    "api.post_message": [
        limit("rate_limit_client", client_key, "send-client"),
        limit("rate_limit_inbox", inbox_from_url, "send-inbox"),
        limit("rate_limit_global", instance_wide, "send-global"),
    ],
    "api.create_puzzle": [limit("rate_limit_client", client_key, "puzzle-client")],
    "api.create_inbox_puzzle": [limit("rate_limit_client", client_key, "puzzle-client")],
    "api.create_challenge": [limit("rate_limit_auth", client_key, "auth")],
    "api.create_token": [limit("rate_limit_auth", client_key, "auth")],
}


def install(app: Flask) -> Limiter | None:
    """Give this app its own limiter (its own counters) and wrap the limited views.

    With the limits switched off there is no limiter at all: the views stay as they
    are and no request pays for Flask-Limiter's hooks. The rotating key is made either
    way, since the health check pings Redis through it.
    """
    settings = app.config["SECRETLINK"]
    app.extensions["secretlink.client_key"] = RotatingKey(settings.redis_url)
    logs.quiet_limiter_log(settings.log_level)
    if not settings.rate_limits_enabled:
        return None
    limiter = Limiter(
        key_func=client_key,
        app=app,
        storage_uri=settings.redis_url or "memory://",
        strategy="moving-window",
        headers_enabled=True,
        key_prefix="secretlink",
    )
    for endpoint, rules in RULES.items():
        view = app.view_functions[endpoint]
        for setting, key_func, scope in rules:
            value = getattr(settings, setting)
            view = limiter.shared_limit(value, scope=scope, key_func=key_func)(view)
        app.view_functions[endpoint] = view
    # The wrapped views refer to the limiter weakly: the app must hold it.
    app.extensions["secretlink.limiter"] = limiter
    return limiter
