"""The message fast path answers exactly as the Flask view would (secretlink/web/fast_path.py).

Each case is sent three ways, to three apps built and prepared the same way: through
the WSGI fast path (as every WSGI server and the tests' client reach the app), through
`secretlink serve`'s body layer, whose event loop answers messages itself, and to
Flask alone, the fast path taken out, so that the request cycle and the view answer.
Status, JSON members and headers must be the same (the message id and the seconds
left in a window are compared by shape). Each case also says whether the fast path
answered it, and on the event loop whether the loop did.
"""

import asyncio
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, replace

import pytest
from conftest import TEST_ORIGIN, bearer, register
from test_onion import ONION
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.test import Client, EnvironBuilder, TestResponse

from secretlink.crypto import b64encode, generate_keypair, seal
from secretlink.crypto.pow import solve
from secretlink.ops.asgi import BufferedWSGI
from secretlink.settings import Settings
from secretlink.web.fast_path import MessageFastPath

# Change from one request to the next: compared by shape, not value.
VOLATILE_HEADERS = {"x-ratelimit-reset", "x-ratelimit-remaining", "retry-after"}


@dataclass
class World:
    """One app, its inbox, and a client that reaches it the way the case says."""

    app: object
    keypair: object
    token: str
    client: Client
    answered_fast: list
    # How a message is sent: the test client's post(), or through the body layer.
    send: Callable[..., TestResponse] | None = None

    @property
    def url(self) -> str:
        return f"/api/v1/inboxes/{self.keypair.public_key_text}/messages"

    def body(self, text: str = "hello", **fields) -> dict:
        return {"ciphertext": b64encode(seal(text, self.keypair.public_key)), **fields}

    def solved(self) -> dict:
        puzzle = self.client.post(self.url.replace("/messages", "/puzzle")).get_json()
        return {
            "puzzle": puzzle["puzzle"],
            "solution": solve(puzzle["puzzle"], puzzle["difficulty"]),
        }

    def post(self, body=None, **kwargs) -> TestResponse:
        if body is not None:
            kwargs["json"] = body
        return (self.send or self.client.post)(kwargs.pop("url", self.url), **kwargs)

    def settings(self, **changes) -> None:
        answer = self.client.patch(
            self.url.replace("/messages", "/settings"), json=changes, headers=bearer(self.token)
        )
        assert answer.status_code == 200, answer.get_json()


def fast_path_of(app) -> MessageFastPath:
    layer = app.wsgi_app
    return layer.app if isinstance(layer, ProxyFix) else layer


def without_fast_path(app) -> None:
    fast = fast_path_of(app)
    if isinstance(app.wsgi_app, ProxyFix):
        app.wsgi_app.app = fast.flask_wsgi
    else:
        app.wsgi_app = fast.flask_wsgi


def world(make_app, settings: Settings, keypair, way: str) -> World:
    app = make_app(settings)
    answered: list = []
    if way == "flask":
        without_fast_path(app)
    elif way == "wsgi":
        layer = fast_path_of(app)
        reply = layer.reply

        def counted(*args, **kwargs):
            answered.append(True)
            return reply(*args, **kwargs)

        layer.reply = counted
    client = app.test_client()
    token = register(client, keypair)
    w = World(app, keypair, token, client, answered)
    if way == "loop":
        w.send = through_the_body_layer(app, answered)
    return w


def through_the_body_layer(app, answered_on_loop: list) -> Callable[..., TestResponse]:
    """post() through secretlink serve's body layer, run on an event loop of its own;
    its answer as a test response. Each answer the loop made is put in `answered_on_loop`."""
    fast = fast_path_of(app)

    async def on_loop(environ: dict, in_thread):
        reply = await fast.answer_on_loop(environ, in_thread)
        if reply is not None:
            answered_on_loop.append(True)
        return reply

    layer = BufferedWSGI(app, threads=2, on_loop=on_loop)

    def post(url: str, **kwargs) -> TestResponse:
        environ = EnvironBuilder(url, method="POST", base_url=TEST_ORIGIN, **kwargs).get_environ()
        body = environ["wsgi.input"].read()
        headers = [
            (name[5:].replace("_", "-").lower().encode(), value.encode("latin-1"))
            for name, value in environ.items()
            if name.startswith("HTTP_")
        ]
        for name in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            if environ.get(name):
                headers.append((name.replace("_", "-").lower().encode(), environ[name].encode()))
        scope = {
            "type": "http",
            "method": "POST",
            "scheme": environ["wsgi.url_scheme"],
            "path": environ["PATH_INFO"],
            "raw_path": environ["PATH_INFO"].encode(),
            "query_string": b"",
            "root_path": "",
            "headers": headers,
            "client": (environ.get("REMOTE_ADDR", "127.0.0.1"), 40000),
            "server": ("localhost", 80),
            "http_version": "1.1",
        }
        sent: list[dict] = []

        async def receive() -> dict:
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: dict) -> None:
            sent.append(message)

        asyncio.run(layer(scope, receive, send))
        start, whole = sent[0], b"".join(m.get("body", b"") for m in sent[1:])
        answer_headers = [(k.decode(), v.decode("latin-1")) for k, v in start["headers"]]
        return TestResponse(whole, start["status"], answer_headers, request=None)

    return post


def volatile(key: str, value):
    """A JSON member as compared: random or time-dependent parts by shape only."""
    if key in ("id", "puzzle", "expires_at"):
        return type(value).__name__
    if key == "error":
        return re.sub(r"\d+ s\b", "N s", value)  # "try again in 41 s"
    return value


def comparable(response: TestResponse) -> tuple:
    data = response.get_json(silent=True)
    if isinstance(data, dict):
        data = {key: volatile(key, value) for key, value in data.items()}
    headers = {}
    for name, value in response.headers.items():
        name = name.lower()  # the body layer sends them lowercase, as ASGI has them
        if name in VOLATILE_HEADERS:
            value = "digits" if value.isdigit() else value
        headers[name] = value
    return response.status_code, data, headers


Case = Callable[[World], TestResponse]


@pytest.fixture
def settings(tmp_path) -> Settings:
    # SQLite only: the fast path is the same code before the storage, whatever it is.
    return Settings(data_dir=tmp_path / "data", pow_difficulty=0, base_url=TEST_ORIGIN)


WAYS = ("wsgi", "loop", "flask")


def send_every_way(make_app, settings: Settings, case: Case) -> dict[str, tuple[tuple, bool]]:
    """way -> (the answer as compared, whether the fast path answered)."""
    runs = {}
    for way in WAYS:
        w = world(
            make_app, replace(settings, data_dir=settings.data_dir / way), generate_keypair(), way
        )
        runs[way] = (comparable(case(w)), bool(w.answered_fast))
    return runs


def paused(w: World) -> TestResponse:
    w.settings(paused=True)
    return w.post(w.body())


def capped(w: World) -> TestResponse:
    w.settings(hourly_cap=1)
    assert w.post(w.body()).status_code == 201
    return w.post(w.body())


def used_twice(w: World) -> TestResponse:
    solved = w.solved()
    assert w.post(w.body(**solved)).status_code == 201
    return w.post(w.body(**solved))


def over_client_limit(w: World) -> TestResponse:
    for _ in range(3):
        w.post(w.body())
    return w.post(w.body())


def over_inbox_limit(w: World) -> TestResponse:
    w.post(w.body())
    return w.post(w.body())


def failing_storage(w: World) -> TestResponse:
    def broken(*args, **kwargs):
        raise RuntimeError("disk on fire")

    async def broken_async(*args, **kwargs):
        broken()

    storage = w.app.extensions["secretlink.storage"]
    storage.add_message, storage.add_message_async = broken, broken_async
    return w.post(w.body())


# Answered by the fast path in the app's thread, but not on the event loop.
THREAD = "thread"

# (name, settings changes, case, answered by the fast path: True, False or THREAD)
CASES = [
    ("accepted", {}, lambda w: w.post(w.body()), True),
    (
        "accepted with a solved puzzle",
        {"pow_difficulty": 2},
        lambda w: w.post(w.body(**w.solved())),
        True,
    ),
    (
        "accepted over https behind a proxy",
        {"trusted_proxy_hops": 1},
        lambda w: w.post(w.body(), headers={"X-Forwarded-Proto": "https"}),
        True,
    ),
    (
        "accepted with rate limits on",
        {"rate_limits_enabled": True},
        lambda w: w.post(w.body()),
        True,
    ),
    (
        "unknown inbox",
        {},
        lambda w: w.post(
            w.body(), url=f"/api/v1/inboxes/{generate_keypair().public_key_text}/messages"
        ),
        True,
    ),
    (
        "bad key in the path",
        {},
        lambda w: w.post(w.body(), url="/api/v1/inboxes/not-a-key/messages"),
        True,
    ),
    ("bad base64", {}, lambda w: w.post({"ciphertext": "***"}), True),
    (
        "bad base64 to an unknown inbox",
        {},
        lambda w: w.post(
            {"ciphertext": "***"},
            url=f"/api/v1/inboxes/{generate_keypair().public_key_text}/messages",
        ),
        True,
    ),
    ("no ciphertext", {}, lambda w: w.post({"text": "hi"}), True),
    # Attachments are read from files and rows first: a thread answers, not the loop.
    ("not a list of attachments", {}, lambda w: w.post(w.body(attachments="x")), THREAD),
    ("puzzle missing", {"pow_difficulty": 2}, lambda w: w.post(w.body()), True),
    ("puzzle used twice", {"pow_difficulty": 2}, used_twice, True),
    ("paused inbox", {}, paused, True),
    ("hourly cap reached", {}, capped, True),
    ("inbox full", {"inbox_max_messages": 1}, over_inbox_limit, True),
    (
        "client over its limit",
        {"rate_limits_enabled": True, "rate_limit_client": "3/minute"},
        over_client_limit,
        True,
    ),
    (
        "inbox over its limit",
        {"rate_limits_enabled": True, "rate_limit_inbox": "1/minute"},
        over_inbox_limit,
        True,
    ),
    ("storage fails", {}, failing_storage, True),
    # Handed to Flask: the request cycle answers these.
    ("not JSON", {}, lambda w: w.post(data="hello", content_type="text/plain"), False),
    ("malformed JSON", {}, lambda w: w.post(data="{", content_type="application/json"), False),
    ("a JSON array", {}, lambda w: w.post([1, 2]), False),
    ("empty body", {}, lambda w: w.post(data=b"", content_type="application/json"), False),
    ("a foreign Host", {}, lambda w: w.post(w.body(), headers={"Host": "evil.example"}), False),
    ("Host in capitals", {}, lambda w: w.post(w.body(), headers={"Host": "LOCALHOST"}), False),
    (
        "onion circuit header",
        {"rate_limits_enabled": True},
        lambda w: w.post(w.body(), headers={"Secretlink-Onion-Circuit": "forged 7"}),
        False,
    ),
    ("a trailing slash", {}, lambda w: w.post(w.body(), url=w.url + "/"), False),
    ("too large", {}, lambda w: w.post({"ciphertext": "A" * 300_000}), False),
]


@pytest.mark.parametrize(
    ("changes", "case", "fast"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_the_fast_path_answers_as_the_view_does(settings, make_app, changes, case, fast):
    runs = send_every_way(make_app, replace(settings, **changes), case)
    flask_answer = runs["flask"][0]
    assert runs["wsgi"] == (flask_answer, fast is not False)
    assert runs["loop"] == (flask_answer, fast is True)


def test_with_redis_the_loop_leaves_messages_to_the_threads(settings, make_app, redis_url):
    """Redis's limits and load counters are network calls: not made on the event loop."""
    app = make_app(replace(settings, redis_url=redis_url, rate_limits_enabled=True))
    assert fast_path_of(app).on_loop is False
    assert fast_path_of(make_app(replace(settings, data_dir=settings.data_dir / "2"))).on_loop


def test_the_host_values_all_pass_the_host_check(settings, make_app):
    """Every Host the fast path takes is one the app's own Host check accepts."""
    app = make_app(replace(settings, base_url="https://secretlink.example", onion_url=ONION))
    hosts = fast_path_of(app).hosts
    assert hosts == {"secretlink.example", "secretlink.example:443"}
    client = app.test_client()
    unknown = f"/api/v1/inboxes/{generate_keypair().public_key_text}"
    for host in hosts:
        answer = client.get(unknown, headers={"Host": host}, base_url="https://" + host)
        assert answer.get_json()["code"] == "unknown_inbox"


def test_the_answer_is_one_json_line(settings, make_app):
    app = make_app(settings)
    keypair = generate_keypair()
    client = app.test_client()
    register(client, keypair)
    answer = client.post(
        f"/api/v1/inboxes/{keypair.public_key_text}/messages",
        json={"ciphertext": b64encode(seal("x", keypair.public_key))},
    )
    assert answer.status_code == 201
    assert answer.content_type == "application/json"
    assert answer.data.endswith(b"\n") and json.loads(answer.data)["id"]
