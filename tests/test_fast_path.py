"""The message fast path answers exactly as the Flask view would (secretlink/web/fast_path.py).

Each case is sent twice, to two apps built and prepared the same way: one as the
server runs it, the other with the fast path taken out, so that Flask's request
cycle and the view answer. Status, JSON members and headers must be the same (the
message id and the seconds left in a window are compared by shape). Each case also
says whether the fast path is the one that answered it.
"""

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, replace

import pytest
from conftest import TEST_ORIGIN, bearer, register
from test_onion import ONION
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.test import Client, TestResponse

from secretlink.crypto import b64encode, generate_keypair, seal
from secretlink.crypto.pow import solve
from secretlink.settings import Settings
from secretlink.web.fast_path import MessageFastPath

# Change from one request to the next: compared by shape, not value.
VOLATILE_HEADERS = {"X-RateLimit-Reset", "X-RateLimit-Remaining", "Retry-After"}


@dataclass
class World:
    """One app, its inbox, and a client that reaches it the way the case says."""

    app: object
    keypair: object
    token: str
    client: Client
    answered_fast: list

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
        return self.client.post(kwargs.pop("url", self.url), **kwargs)

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


def world(make_app, settings: Settings, keypair, fast: bool) -> World:
    app = make_app(settings)
    answered: list = []
    if fast:
        layer = fast_path_of(app)
        answer = layer.answer

        def counted(*args, **kwargs):
            answered.append(True)
            return answer(*args, **kwargs)

        layer.answer = counted
    else:
        without_fast_path(app)
    client = app.test_client()
    token = register(client, keypair)
    return World(app, keypair, token, client, answered)


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
        if name in VOLATILE_HEADERS:
            value = "digits" if value.isdigit() else value
        headers[name] = value
    return response.status_code, data, headers


Case = Callable[[World], TestResponse]


@pytest.fixture
def settings(tmp_path) -> Settings:
    # SQLite only: the fast path is the same code before the storage, whatever it is.
    return Settings(data_dir=tmp_path / "data", pow_difficulty=0, base_url=TEST_ORIGIN)


def send_twice(make_app, settings: Settings, case: Case) -> tuple[tuple, tuple, bool]:
    runs = {}
    for fast in (True, False):
        changed = replace(settings, data_dir=settings.data_dir / str(fast))
        w = world(make_app, changed, generate_keypair(), fast)
        answer = case(w)
        runs[fast] = (comparable(answer), bool(w.answered_fast))
    (fast_answer, answered_fast), (slow_answer, _) = runs[True], runs[False]
    return fast_answer, slow_answer, answered_fast


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

    w.app.extensions["secretlink.storage"].add_message = broken
    return w.post(w.body())


# (name, settings changes, case, answered by the fast path)
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
    ("no ciphertext", {}, lambda w: w.post({"text": "hi"}), True),
    ("not a list of attachments", {}, lambda w: w.post(w.body(attachments="x")), True),
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
    fast_answer, slow_answer, answered_fast = send_twice(
        make_app, replace(settings, **changes), case
    )
    assert fast_answer == slow_answer
    assert answered_fast is fast


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
