import os
import secrets
import shutil
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import OperationalError
from werkzeug.serving import WSGIRequestHandler, make_server

from secretlink import create_app
from secretlink.crypto import KeyPair, b64decode, b64encode, generate_keypair
from secretlink.crypto.pow import solve
from secretlink.crypto.proof import prove
from secretlink.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def redis_database_for_this_process(url: str) -> str:
    """`url` with a database number of its own for each process running tests:
    pytest-xdist's workers gw0, gw1, ... take the number given, then one less each.
    The tests flush it before and after each use."""
    worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
    base, _, number = url.rpartition("/")
    return f"{base}/{int(number or 0) - worker}"


REDIS_URL = redis_database_for_this_process(
    os.environ.get("SECRETLINK_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
)
POSTGRES_URL = os.environ.get(
    "SECRETLINK_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
# The origin of Flask's test client (Host `localhost`): test apps name it as their
# SECRETLINK_BASE_URL, as a deployment would, instead of the loopback default.
TEST_ORIGIN = "http://localhost"
DATABASES = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgresql),
]


def pytest_configure(config) -> None:
    # Registered here rather than in pyproject.toml so that `-m "not postgresql"`
    # works wherever this conftest is.
    config.addinivalue_line(
        "markers", "postgresql: runs against the server at SECRETLINK_TEST_POSTGRES_URL"
    )


def pytest_collection_modifyitems(items) -> None:
    """Give each schemathesis operation test (tests/test_openapi.py) its own node id.

    schemathesis names them `test_fuzz[<operation>]`, but under pytest 9.2 their ids
    all read `...::test_fuzz`; pytest-xdist, which `make test` runs, schedules tests by
    id, and would run one operation of the 24."""
    for item in items:
        label = getattr(item, "operation_label", None)
        if label is None or item.nodeid.endswith("]"):
            continue
        if hasattr(item, "_id"):  # pytest 9.2 and newer
            item._id = item._id.with_params(label)
        else:
            item._nodeid = f"{item.nodeid}[{label}]"


@pytest.fixture(autouse=True)
def private_state_home(tmp_path, monkeypatch) -> None:
    """The CLI's per-device state (conversations) goes to the test's own folder, never
    to the home folder of whoever runs the tests."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg-state"))


# ---- databases: every test that uses `database_url` (and so `settings`, `app`,
# `client`, `inbox`) runs once on SQLite and once on PostgreSQL ----


@pytest.fixture(scope="session")
def postgres_admin() -> Iterator[Engine]:
    """The PostgreSQL test server, for making and dropping one schema per test.

    Checked once per session: pytest remembers the skip (or failure) and repeats it
    for every PostgreSQL test instead of trying to connect again.
    """
    engine = create_engine(
        POSTGRES_URL, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 5}
    )
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except OperationalError as exc:
        engine.dispose()
        where = make_url(POSTGRES_URL).render_as_string(hide_password=True)
        first_line = str(exc.orig).strip().splitlines()[0]
        require_service(
            "POSTGRESQL",
            f"cannot connect to {where} ({first_line}); start PostgreSQL or set "
            "SECRETLINK_TEST_POSTGRES_URL to a database this user may create schemas in",
        )
    yield engine
    engine.dispose()


def with_search_path(url: URL, schema: str) -> str:
    """`url` with every connection's search_path set to `schema`, keeping other options."""
    options = " ".join(filter(None, [url.query.get("options"), f"-csearch_path={schema}"]))
    return url.update_query_dict({"options": options}).render_as_string(hide_password=False)


@contextmanager
def fresh_postgres_schema(admin: Engine) -> Iterator[str]:
    """A database URL whose tables live in a new, empty schema, dropped afterwards."""
    schema = f"test_{secrets.token_hex(6)}"
    with admin.connect() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield with_search_path(admin.url, schema)
    finally:
        with admin.connect() as connection:
            # An app left holding a lock would otherwise hang the run here.
            connection.execute(text("SET lock_timeout = '10s'"))
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))


@contextmanager
def database_for(kind: str, request, tmp_path: Path) -> Iterator[str]:
    """An empty database of its own for this test: an SQLite file, or a PostgreSQL schema."""
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path / 'secretlink.sqlite3'}"
        return
    with fresh_postgres_schema(request.getfixturevalue("postgres_admin")) as url:
        yield url


@pytest.fixture(params=DATABASES)
def database_url(request, tmp_path) -> Iterator[str]:
    with database_for(request.param, request, tmp_path) as url:
        yield url


# ---- blob stores: the attachment tests run with blobs in the data directory and in an
# S3 bucket of moto's S3-compatible server, on loopback ----

BLOB_STORES = [pytest.param("directory", id="directory"), pytest.param("s3", id="s3")]


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """moto's S3 server in a thread of the test process, on 127.0.0.1 and a free port."""
    try:
        from moto.server import ThreadedMotoServer
    except ImportError as exc:
        require_service("S3", f"moto is not installed ({exc}): pip install -e '.[dev]'")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


S3_ENVIRONMENT = {
    "AWS_ACCESS_KEY_ID": "secretlink-test",
    "AWS_SECRET_ACCESS_KEY": "secretlink-test-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@pytest.fixture
def s3_credentials(monkeypatch, tmp_path) -> dict[str, str]:
    """Test credentials in boto3's usual variables; no profile or file of the machine's."""
    environment = {
        **S3_ENVIRONMENT,
        "AWS_CONFIG_FILE": str(tmp_path / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-aws-credentials"),
    }
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    return environment


@pytest.fixture
def s3_store(s3_endpoint, s3_credentials) -> dict[str, str]:
    """Settings for blobs in a new, empty bucket of its own (under a prefix)."""
    from secretlink.store.blob_backends import make_client

    bucket = f"test-{secrets.token_hex(8)}"
    make_client(s3_endpoint).create_bucket(Bucket=bucket)
    return {"blob_store": f"s3://{bucket}/blobs", "s3_endpoint_url": s3_endpoint}


def blob_store_settings(kind: str, request) -> dict[str, str]:
    """Settings overrides for a blob store kind of BLOB_STORES."""
    return request.getfixturevalue("s3_store") if kind == "s3" else {}


def stored_blob_names(settings: Settings, public_key: str) -> list[str]:
    """What an instance holds of an inbox's attachments: its uploads' partial files in
    the data directory, and its blobs wherever they are kept."""
    from secretlink.store.blob_backends import backend_for
    from secretlink.store.blobs import blob_directory

    directory = blob_directory(settings.data_dir)
    folder = directory / public_key
    local = set(os.listdir(folder)) if folder.is_dir() else set()
    backend = backend_for(settings.blob_store, directory, settings.s3_endpoint_url)
    return sorted(local | set(backend.names(public_key)))


@pytest.fixture
def settings(tmp_path, database_url) -> Settings:
    # The proof-of-work gate has tests of its own (test_pow.py); elsewhere it is off so
    # that tests can post envelopes directly.
    return Settings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        pow_difficulty=0,
        base_url=TEST_ORIGIN,
    )


@pytest.fixture
def make_app() -> Iterator[Callable[[Settings], Flask]]:
    """Build apps, and close their database connections when the test ends.

    Each app's engine keeps a pool of connections: left open, hundreds of tests would
    exhaust PostgreSQL's connection limit.
    """
    engines: list[Engine] = []

    def make(settings: Settings) -> Flask:
        app = create_app(settings)
        engines.append(app.extensions["secretlink.storage"].engine)
        return app

    yield make
    for engine in engines:
        engine.dispose()


@pytest.fixture
def app(settings, make_app) -> Flask:
    return make_app(settings)


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def keypair() -> KeyPair:
    return generate_keypair()


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def challenge_and_proof(
    client, keypair: KeyPair, origin: str = "http://localhost"
) -> tuple[dict, str]:
    """A fresh challenge for this key and the right answer to it, not yet sent."""
    challenge = client.post(
        "/api/v1/auth/challenge", json={"public_key": keypair.public_key_text}
    ).get_json()
    mac = prove(
        keypair.secret_key,
        b64decode(challenge["server_key"]),
        b64decode(challenge["nonce"]),
        challenge["expires_at"],
        origin,
    )
    return challenge, b64encode(mac)


def get_token(client, keypair: KeyPair, origin: str = "http://localhost") -> str:
    challenge, proof = challenge_and_proof(client, keypair, origin)
    answer = client.post(
        "/api/v1/auth/token", json={"challenge": challenge["challenge"], "proof": proof}
    )
    assert answer.status_code == 200, answer.get_json()
    return answer.get_json()["token"]


def creation_proof(client, keypair: KeyPair) -> dict:
    """A solved creation puzzle for this key: the body members PUT needs to create it."""
    puzzle = client.post(f"/api/v1/inboxes/{keypair.public_key_text}/creation-puzzle")
    assert puzzle.status_code == 200, puzzle.get_json()
    puzzle = puzzle.get_json()
    return {"puzzle": puzzle["puzzle"], "solution": solve(puzzle["puzzle"], puzzle["difficulty"])}


def register(client, keypair: KeyPair, prompt: str = "") -> str:
    token = get_token(client, keypair)
    response = client.put(
        f"/api/v1/inboxes/{keypair.public_key_text}",
        json={"prompt": prompt, **creation_proof(client, keypair)},
        headers=bearer(token),
    )
    assert response.status_code == 201, response.get_json()
    return token


@pytest.fixture
def inbox(client, keypair) -> tuple[KeyPair, str]:
    """A registered inbox and a live token for it."""
    return keypair, register(client, keypair)


@dataclass
class LiveServer:
    url: str
    app: object
    data_dir: Path


# How often a test's HTTP server in a thread looks for shutdown(): the socketserver
# default, 0.5 s, made every test that stops one wait that long at its end.
SHUTDOWN_POLL_SECONDS = 0.02


def serve_in_thread(server) -> threading.Thread:
    """Run a socketserver-style server's loop in a daemon thread; shutdown() ends it."""
    thread = threading.Thread(
        target=server.serve_forever,
        kwargs={"poll_interval": SHUTDOWN_POLL_SECONDS},
        daemon=True,
    )
    thread.start()
    return thread


class QuietRequestHandler(WSGIRequestHandler):
    """No request log: it would print each client's address, and the tests' output."""

    def log(self, type: str, message: str, *args) -> None:
        pass


@contextmanager
def serving_in_thread(data_dir: Path, origin: Callable[[str], str] = lambda url: url, **overrides):
    """The real app on a real socket, served by Werkzeug's threaded server in a thread
    of the test process (it stops cleanly from another thread: `shutdown()`).

    The app's origin is `origin(url)` of the address the server binds: the address
    itself, or (for a test with a proxy in front) the proxy's. `secretlink serve` runs
    granian instead; tests/test_serve.py and the attack tests cover that stack."""
    # The CLI and browser flows send more from one address than the default limits
    # allow; the limits have tests of their own (test_limits.py).
    # A real but cheap proof of work: the CLI and the browser solve it as in production.
    # The app must be told its origin, whose port is picked when the server binds: it
    # binds first, serving through a hand-off that the app fills in before any request.
    apps: list[Flask] = []
    server = make_server(
        "127.0.0.1",
        0,
        lambda environ, start_response: apps[0](environ, start_response),
        threaded=True,
        request_handler=QuietRequestHandler,
    )
    url = f"http://127.0.0.1:{server.server_port}"
    apps.append(
        create_app(
            Settings(
                data_dir=data_dir,
                rate_limits_enabled=False,
                pow_difficulty=8,
                base_url=origin(url),
                # Backups made in the pages get the smallest Argon2id cost readers accept.
                key_backup_memory_kib=19456,
                key_backup_passes=2,
                **overrides,  # more settings a test needs
            )
        )
    )
    thread = serve_in_thread(server)
    try:
        yield LiveServer(url, apps[0], data_dir)
    finally:
        server.shutdown()  # waits for the serving loop to end
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def live_server(tmp_path) -> Iterator[LiveServer]:
    with serving_in_thread(tmp_path / "live") as server:
        yield server


def require_redis() -> None:
    """The test Redis, emptied; under CI a missing Redis fails instead of skipping."""
    import redis

    connection = redis.Redis.from_url(REDIS_URL, socket_timeout=5)
    try:
        connection.ping()
    except redis.RedisError as exc:
        require_service("REDIS", f"Redis not reachable at {REDIS_URL} ({exc})")
    connection.flushdb()


@pytest.fixture
def redis_url() -> Iterator[str]:
    """The test Redis's URL, empty at the start of the test and flushed after it."""
    require_redis()
    yield REDIS_URL
    require_redis()


def require_chromium() -> str:
    """The browser's path; under CI a missing browser fails instead of skipping."""
    if Path(CHROMIUM).exists():
        return CHROMIUM
    require_service(
        "BROWSER", f"Chromium not found at {CHROMIUM}: install Debian's 'chromium' package"
    )
    raise AssertionError("unreachable")


def require_service(kind: str, message: str) -> None:
    """A missing test dependency skips loudly, and fails the run under CI."""
    if IN_CI:
        pytest.fail(f"{kind} TESTS CANNOT RUN UNDER CI: {message}")
    pytest.skip(f"{kind} TESTS SKIPPED: {message}")
