"""Rate limits that never learn who the client is.

A client is known to the limiter only as a keyed hash of its address (IPv6 grouped
by /64, since one host usually holds a whole /64). The hashing key rotates every
hour and lives only in memory or, with SECRETLINK_REDIS_URL, in Redis (for two
hours), so that all workers and machines agree on it. Nothing reaches the database
or the logs (Flask-Limiter's refusal lines name the hashed client, so they are
logged only at DEBUG: see secretlink/ops/logs.py); someone who copies Redis within
those two hours could test guessed addresses against the counters, never list
them. A new key also starts each client afresh, so an hourly limit can let through
up to twice its count around a rotation. With the limits switched off there is no
limiter at all. Tor exits and large proxies merge many people into one "client";
onion visitors on the onion listener are told apart by tor circuit instead.

The windows are sliding-window counters (the `limits` library's): per key, a count
for the current clock window and one for the window before, the older count weighted
by how much of its window still overlaps the last `period`. A moving window would be
exact to the request, but it keeps the time of every request (to the microsecond),
in memory or Redis: more to correlate for anyone who copies that state, and work
and memory that grow with the limit (docs/PERFORMANCE.md, "The message fast path").
The weighting assumes the older window's requests were spread evenly: a client that
spent its whole budget at the start of one window waits longer than an exact window
would make it, one that spent it at the end gets room back sooner. Since no clock
window counts more than the limit, no stretch of one period lets through more than
twice the limit.

Two kinds of counter, so that nobody can spend a budget that is not theirs:

- A client's own budget (Flask-Limiter, around the view) is counted on entry, for
  every request, whatever happens next: junk costs its sender.
- The shared budgets, per inbox and for the whole instance (`Budgets`), are counted
  only for work done: a message when it has been accepted and stored, an owner's
  request once its token has verified. Their keys are inbox keys that passed every
  check, never text copied from a URL, so made-up paths create no counters.
"""

import hashlib
import ipaddress
import logging
import math
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import ClassVar

from flask import Flask, current_app, jsonify, request
from flask_limiter import Limiter
from limits import RateLimitItem, parse_many
from limits.storage import MemoryStorage
from limits.strategies import RateLimiter

from secretlink.ops import logs
from secretlink.web import onion
from secretlink.web.errors import ApiError

ROTATE_SECONDS = 3600
LIMITER_LOG = logging.getLogger("flask-limiter")
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
    # An onion request is known by its tor circuit: every onion client has the same
    # address, the local tor daemon's (secretlink/web/onion.py).
    circuit = onion.onion_circuit()
    network = "circuit " + circuit if circuit else network_of(request.remote_addr or "")
    return hashed_client(current_app.extensions["secretlink.client_key"], network)


def hashed_client(rotating: RotatingKey, network: str) -> str:
    """The limiter's name for a client: a keyed hash of its network (or circuit)."""
    # hashlib's BLAKE2b: the same function as libsodium's generichash, without the
    # cost of a call through cffi (this runs for every limited request).
    digest = hashlib.blake2b(
        CLIENT_KEY_PURPOSE + b"\x00" + network.encode(), key=rotating.current(), digest_size=16
    )
    return "client:" + digest.hexdigest()


def limit(setting: str, key_func: Callable[[], str], scope: str):
    """A rule: the limit string is read from the settings when a request is made."""
    return setting, key_func, scope


# The clients' own budgets, counted on entry: endpoint -> rules, every rule must hold.
RULES = {
    "messages.post_message": [limit("rate_limit_client", client_key, "send-client")],
    "messages.create_puzzle": [limit("rate_limit_client", client_key, "puzzle-client")],
    "inboxes.create_inbox_puzzle": [limit("rate_limit_client", client_key, "puzzle-client")],
    "attachments.upload_puzzle": [limit("rate_limit_client", client_key, "puzzle-client")],
    # Starting an upload counts as a sending attempt; its pieces carry a capability.
    "attachments.start_upload": [limit("rate_limit_client", client_key, "send-client")],
    "auth.create_challenge": [limit("rate_limit_auth", client_key, "auth")],
    "auth.create_token": [limit("rate_limit_auth", client_key, "auth")],
}


class LockedMemoryStorage(MemoryStorage):
    """`limits`' in-memory counters, one caller at a time.

    The library's MemoryStorage (5.8.0, the newest) checks that its expiry timer has
    ended and starts the next one without a lock: two request threads of one worker
    (or a thread and the event loop's fast path) could start the same timer, and
    the second raised RuntimeError, a 500 for its request. Every call that schedules
    the timer, or counts in more than one step, runs here under one lock; each takes
    microseconds, so the lock costs nothing that shows.
    """

    STORAGE_SCHEME: ClassVar[list[str]] = ["secretlink-memory"]  # registered by `limits`

    def __init__(self, uri: str | None = None, **options):
        self._calls = threading.RLock()  # re-entered: the sliding window calls incr/get
        super().__init__(uri, **options)

    def incr(self, key: str, expiry: float, amount: int = 1) -> int:
        with self._calls:
            return super().incr(key, expiry, amount)

    def decr(self, key: str, amount: int = 1) -> int:
        with self._calls:
            return super().decr(key, amount)

    def get(self, key: str) -> int:
        with self._calls:
            return super().get(key)

    def clear(self, key: str) -> None:
        with self._calls:
            super().clear(key)

    def acquire_entry(self, key: str, limit: int, expiry: int, amount: int = 1) -> bool:
        with self._calls:
            return super().acquire_entry(key, limit, expiry, amount)

    def acquire_sliding_window_entry(
        self, key: str, limit: int, expiry: int, amount: int = 1
    ) -> bool:
        with self._calls:
            return super().acquire_sliding_window_entry(key, limit, expiry, amount)


MEMORY_STORAGE = "secretlink-memory://"


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
    # Registered before the limiter's own hook, so that it runs after it (Flask runs
    # after_request functions last-registered first).
    app.after_request(_at_least_a_second)
    limiter = Limiter(
        key_func=client_key,
        app=app,
        storage_uri=settings.redis_url or MEMORY_STORAGE,
        strategy="sliding-window-counter",
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
    # The shared budgets count in the same storage (memory, or Redis for everyone).
    app.extensions["secretlink.budgets"] = Budgets(limiter.limiter, settings)
    # The senders' own budget, for the messages the fast path answers.
    setting, _, scope = RULES["messages.post_message"][0]
    app.extensions["secretlink.send_budget"] = ClientBudget(
        limiter.limiter, getattr(settings, setting), scope
    )
    app.register_error_handler(RateLimited, _rate_limited_answer)
    return limiter


class ClientBudget:
    """A client's own budget of one shared scope, counted as Flask-Limiter counts it
    around a view (the same counters, keys and headers), for a request answered
    outside Flask's request cycle (secretlink/web/fast_path.py)."""

    def __init__(self, strategy: RateLimiter, limits: str, scope: str):
        self._strategy = strategy
        self._items = sorted(parse_many(limits))  # Flask-Limiter's order
        self._scope = scope

    def charge(self, client: str) -> RateLimitItem | None:
        """Count one request; the limit it broke (counting stops there), or None."""
        for item in self._items:
            if not self._strategy.hit(item, "secretlink", client, self._scope):
                # Flask-Limiter's line, on its logger (kept quiet below DEBUG: logs.py).
                LIMITER_LOG.info(
                    "ratelimit %s (%s) exceeded at endpoint: %s", item, client, self._scope
                )
                return item
        return None

    def headers(
        self, client: str, broken: RateLimitItem | None, retry_after: int | None
    ) -> list[tuple[str, str]]:
        """X-RateLimit-* and Retry-After, as Flask-Limiter's headers_enabled writes them:
        for the broken limit or the first one; Retry-After is the later of the answer's
        own (`retry_after`) and the limit's reset."""
        item = broken or self._items[0]
        window = self._strategy.get_window_stats(item, "secretlink", client, self._scope)
        reset_at = int(window.reset_time + 1)
        headers = [
            ("X-RateLimit-Limit", str(item.amount)),
            ("X-RateLimit-Remaining", str(window.remaining)),
            ("X-RateLimit-Reset", str(reset_at)),
        ]
        wait = reset_at - time.time()
        if retry_after is not None:
            wait = max(wait, retry_after)
        refused = broken is not None or retry_after is not None
        return [*headers, ("Retry-After", str(retry_after_seconds(wait, refused)))]


def retry_after_seconds(wait: float, refused: bool) -> int:
    """Whole seconds for Retry-After, rounded up: a refused client told 0 would come
    straight back (a sliding window's reset is often under a second away)."""
    return max(1 if refused else 0, math.ceil(wait))


def _at_least_a_second(response):
    """Flask-Limiter writes Retry-After truncated (`int(reset - now)`), which turns a
    reset under a second away into 0; a 429 always asks for at least one second."""
    if response.status_code == 429 and "Retry-After" in response.headers:
        try:
            seconds = int(response.headers["Retry-After"])
        except ValueError:  # an HTTP date: not one of ours
            return response
        response.headers["Retry-After"] = str(retry_after_seconds(seconds, refused=True))
    return response


def _rate_limited_answer(error: "RateLimited"):
    response = jsonify(error=error.message, code=error.code)
    response.status_code = error.status
    response.headers["Retry-After"] = str(error.retry_after)
    return response


# ---- shared budgets: per inbox and instance-wide, charged for work done ----


class Budgets:
    """Counters that strangers cannot spend for others.

    Messages: `hold_message` before the puzzle is spent, which counts nothing in the
    window but holds a place in it (`MessagePlace`); the place is charged once the
    message is stored, or given back if it is refused. A process counts the places it
    holds against the window, so its own concurrent senders cannot take the window
    past its limit, whether they wait in threads or on the event loop. A place is
    held while the puzzle is checked and given back at once if it fails: on the
    event loop no other request runs meanwhile, in a thread it is microseconds
    (a stale puzzle's difficulty is one read). Only the places held by other
    processes sharing the count (Redis) are unseen: with Redis, messages are
    accepted in threads, so that is at most SECRETLINK_THREADS per other worker.
    Owners: `charge_owner` right after the token verifies, counted whatever follows.
    """

    def __init__(self, strategy: RateLimiter, settings):
        self._strategy = strategy
        self._inbox = parse_many(settings.rate_limit_inbox)
        self._instance = parse_many(settings.rate_limit_global)
        self._owner = {
            "read": parse_many(settings.rate_limit_owner_read),
            "write": parse_many(settings.rate_limit_owner_write),
        }
        # Places held by messages this process is accepting, per counter.
        self._held: Counter[tuple[str, str]] = Counter()
        self._held_lock = threading.Lock()

    def _message_rules(self, public_key: str):
        yield from ((item, ("inbox:" + public_key, "send-inbox")) for item in self._inbox)
        yield from ((item, ("instance", "send-global")) for item in self._instance)

    def hold_message(self, public_key: str) -> "MessagePlace":
        """A place for one message in this inbox's and the instance's windows, or 429
        if their counts and the places already held leave no room."""
        rules = list(self._message_rules(public_key))
        counters = {ids for _, ids in rules}
        # Held first, then tested with every place held (this one included): two
        # messages tested at once both see each other, so neither overshoots (at the
        # window's last place, both may be refused).
        self.change_held(counters, +1)
        try:  # the first window without room, if any (the rest are not read)
            full = next(
                (
                    (item, ids)
                    for item, ids in rules
                    if not self._strategy.test(item, "secretlink", *ids, cost=self._held[ids])
                ),
                None,
            )
        except BaseException:  # the counters' storage failed (Redis down): no place kept
            self.change_held(counters, -1)
            raise
        if full is not None:
            self.change_held(counters, -1)
            item, ids = full
            who = "this inbox" if ids[1] == "send-inbox" else "this server"
            self._refuse(item, ids, f"{who} received too many messages in the last {_period(item)}")
        return MessagePlace(self, public_key, counters)

    def charge_message(self, public_key: str) -> None:
        """Count a message that was accepted and stored (its MessagePlace does)."""
        for item, ids in self._message_rules(public_key):
            self._strategy.hit(item, "secretlink", *ids)

    def change_held(self, counters: set[tuple[str, str]], change: int) -> None:
        """Take (+1) or give back (-1) one place in each of these counters."""
        with self._held_lock:
            for ids in counters:
                self._held[ids] += change
                if not self._held[ids]:
                    del self._held[ids]

    def charge_owner(self, public_key: str, kind: str) -> None:
        """Count an owner's request (token verified); 429 once the inbox's window is full."""
        ids = ("inbox:" + public_key, "owner-" + kind)
        for item in self._owner[kind]:
            if not self._strategy.hit(item, "secretlink", *ids):
                self._refuse(
                    item, ids, f"too many requests for this inbox in the last {_period(item)}"
                )

    def _refuse(self, item: RateLimitItem, ids: tuple[str, str], reason: str) -> None:
        reset = self._strategy.get_window_stats(item, "secretlink", *ids).reset_time
        retry_after = max(1, math.ceil(reset - time.time()))
        raise RateLimited(f"{reason}; try again in {retry_after} s", retry_after)


class MessagePlace:
    """One message's place in the shared windows, from its check to its end: `charge`
    once it is stored; leaving the `with` block without that gives the place back."""

    def __init__(self, budgets: Budgets | None, public_key: str, counters: set):
        self._budgets = budgets
        self._public_key = public_key
        self._counters = counters

    def charge(self) -> None:
        """Count the stored message in its windows, in place of the place it held."""
        try:
            if self._budgets is not None:
                self._budgets.charge_message(self._public_key)
        finally:
            self.release()

    def release(self) -> None:
        budgets, self._budgets = self._budgets, None
        if budgets is not None:
            budgets.change_held(self._counters, -1)

    def __enter__(self) -> "MessagePlace":
        return self

    def __exit__(self, *exc_info) -> None:
        self.release()


class RateLimited(ApiError):
    """429 from a shared budget, with the seconds until it has room again."""

    def __init__(self, message: str, retry_after: int):
        super().__init__(429, "rate_limited", message)
        self.retry_after = retry_after


def _period(item: RateLimitItem) -> str:
    unit = item.GRANULARITY.name
    return unit if item.multiples == 1 else f"{item.multiples} {unit}s"


class NoBudgets:
    """The shared budgets with the rate limits switched off: nothing is counted."""

    def hold_message(self, public_key: str) -> MessagePlace:
        return MessagePlace(None, public_key, set())

    def charge_owner(self, public_key: str, kind: str) -> None:
        pass


def budgets() -> Budgets | NoBudgets:
    return current_app.extensions.get("secretlink.budgets") or NoBudgets()
