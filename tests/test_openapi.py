"""The OpenAPI document, secretlink/openapi.json: served, valid, complete, and true.

Three layers:

1. the document the app serves is the file, valid OpenAPI 3.1, and lists exactly the
   app's routes under /api/v1 (and /healthz), so a new endpoint fails here until it is
   documented;
2. every documented answer (status, error code, body schema, headers) is produced by
   the real app in an explicit request ("probes"), and every answer to those requests
   is documented;
3. schemathesis fuzzes every operation in-process (WSGI, no network), with a
   registered inbox's key and a valid token mixed into the generated requests, and
   checks that nothing answers 5xx and that every answer conforms to the document.
"""

import copy
import io
import json
import os
import re
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import jsonschema_rs
import pytest
import schemathesis
from conftest import ROOT, bearer, get_token, register
from flask import Flask
from schemathesis import checks as core_checks
from schemathesis.specs.openapi import checks as openapi_checks

import secretlink.web.health
from secretlink import create_app
from secretlink.crypto import KeyPair, b64decode, b64encode, generate_keypair, seal
from secretlink.crypto.pow import meets, solve
from secretlink.crypto.proof import prove
from secretlink.settings import Settings
from secretlink.store.blob_backends import DirectoryBackend, StorageUnavailable
from secretlink.web.app import MAX_REQUEST_BYTES

OPENAPI_FILE = ROOT / "secretlink" / "openapi.json"
DOCUMENT = json.loads(OPENAPI_FILE.read_text(encoding="utf-8"))
DOC_SCHEMA = schemathesis.openapi.from_dict(copy.deepcopy(DOCUMENT))
JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
# Answered by Flask for every route; the document leaves them out (its description says so).
AUTOMATIC_METHODS = {"HEAD", "OPTIONS"}


def resolve(node: dict) -> dict:
    """Follow a local `$ref` (`#/components/...`) to what it names."""
    while "$ref" in node:
        target = DOCUMENT
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part.replace("~1", "/").replace("~0", "~")]
        node = target
    return node


def documented_operations() -> dict[str, tuple[str, str, dict]]:
    """operationId -> (path template, method, operation object)."""
    return {
        operation["operationId"]: (path, method, operation)
        for path, item in DOCUMENT["paths"].items()
        for method, operation in item.items()
        if method in HTTP_METHODS
    }


OPERATIONS = documented_operations()


def documented_codes(response: dict) -> list[str | None]:
    """The error codes a documented answer can carry; [None] for answers that are not errors."""
    media = resolve(response).get("content", {}).get("application/json")
    if media is None:
        return [None]
    schema = media["schema"]
    # An error with a member of its own (pow_stale's fresh puzzle) is one of two shapes.
    alternatives = schema.get("oneOf", [schema])
    # Errors with a member of their own (PowStale, OffsetMismatch) name their one code.
    codes = [
        resolve(part)["properties"]["code"]["const"]
        for part in alternatives
        if "$ref" in part and "const" in resolve(part)["properties"].get("code", {})
    ]
    for part in alternatives:
        pieces = part.get("allOf", [])
        if any(piece.get("$ref") == "#/components/schemas/Error" for piece in pieces):
            (enum,) = [
                piece["properties"]["code"]["enum"] for piece in pieces if "properties" in piece
            ]
            codes += enum
    return codes or [None]


# ---- 1. served, valid, complete ----


@pytest.fixture
def plain_app(tmp_path) -> Flask:
    app = create_app(
        Settings(
            data_dir=tmp_path,
            base_url=ORIGIN,
            rate_limits_enabled=False,
            pow_difficulty=0,
        )
    )
    yield app
    app.extensions["secretlink.storage"].engine.dispose()


def test_served_document_is_the_file(plain_app):
    response = plain_app.test_client().get("/api/v1/openapi.json")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert response.data == OPENAPI_FILE.read_bytes()
    assert response.get_json() == DOCUMENT


def walk(node, pointer=""):
    """Every (JSON pointer, value) in the document."""
    yield pointer, node
    if isinstance(node, dict):
        for key, value in node.items():
            yield from walk(value, f"{pointer}/{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from walk(value, f"{pointer}/{index}")


def test_document_is_valid_openapi_3_1():
    assert DOCUMENT["openapi"].startswith("3.1.")
    # The official OpenAPI 3.1 meta-schema (2022-10-07), which schemathesis bundles.
    schemathesis.openapi.from_dict(copy.deepcopy(DOCUMENT)).validate()
    # That meta-schema does not look inside Schema Objects: check each as JSON Schema 2020-12.
    components = DOCUMENT["components"]
    schemas = [(f"/components/schemas/{name}", s) for name, s in components["schemas"].items()]
    schemas += [(p, s) for p, s in walk(DOCUMENT["paths"]) if p.endswith("/schema")]
    schemas += [
        (p, s)
        for kind in ("parameters", "responses", "headers")
        for p, s in walk(components[kind], f"/components/{kind}")
        if p.endswith("/schema")
    ]
    assert len(schemas) > 30
    for pointer, schema in schemas:
        try:
            jsonschema_rs.meta.validate({"$schema": JSON_SCHEMA_DIALECT, **schema})
        except jsonschema_rs.ValidationError as exc:
            pytest.fail(f"{pointer} is not a valid JSON Schema: {exc}")
    # Every reference resolves, every operation loads, ids are unique, path templates
    # and path parameters agree.
    for pointer, node in walk(DOCUMENT):
        if isinstance(node, dict) and "$ref" in node:
            assert node["$ref"].startswith("#/"), pointer
            resolve(node)
    ids = [
        operation["operationId"]
        for item in DOCUMENT["paths"].values()
        for method, operation in item.items()
        if method in HTTP_METHODS
    ]
    assert len(ids) == len(set(ids)) == len(OPERATIONS)
    for path, item in DOCUMENT["paths"].items():
        for method, operation in item.items():
            if method not in HTTP_METHODS:
                continue
            declared = item.get("parameters", []) + operation.get("parameters", [])
            parameters = [resolve(p) for p in declared]
            in_path = {p["name"] for p in parameters if p["in"] == "path"}
            assert in_path == set(re.findall(r"{([^}]+)}", path)), f"{method} {path}"
            assert operation["responses"], f"{method} {path}"
            DOC_SCHEMA[path][method]  # schemathesis can load the operation


def app_routes(app: Flask) -> dict[tuple[str, str], str]:
    """(path template, method) -> endpoint name, for the API and the health check."""
    routes = {}
    for rule in app.url_map.iter_rules():
        if not (rule.rule.startswith("/api/") or rule.rule == "/healthz"):
            continue
        path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)
        for method in rule.methods - AUTOMATIC_METHODS:
            routes[(path, method.lower())] = rule.endpoint.rpartition(".")[2]
    return routes


def test_document_lists_exactly_the_app_routes(plain_app):
    routes = app_routes(plain_app)
    documented = {(path, method): op_id for op_id, (path, method, _) in OPERATIONS.items()}
    assert set(documented) == set(routes), (
        f"undocumented routes: {sorted(set(routes) - set(documented))}; "
        f"documented but missing: {sorted(set(documented) - set(routes))}"
    )
    # operationId is the Flask view's name, so each operation is easy to find in the code.
    assert documented == routes


def test_public_key_parameter_has_the_key_pattern():
    key = resolve(DOCUMENT["components"]["parameters"]["PublicKey"]["schema"])
    assert key["pattern"] == "^[A-Za-z0-9_-]{43}$"
    assert re.fullmatch(key["pattern"], generate_keypair().public_key_text)


# ---- 2. probes: every documented answer, produced by the real app ----


CHALLENGE = "/api/v1/auth/challenge"
TOKEN = "/api/v1/auth/token"
BAD_KEY = "not-a-key"
ORIGIN = "http://localhost"
TOO_BIG = {"data": "x" * (MAX_REQUEST_BYTES + 1), "content_type": "application/json"}
NOT_JSON = {"data": "{}", "content_type": "text/plain"}
# Valid JSON, not text: the Flask test client sends it as the escape \ud800.
SURROGATE = "\ud800"


def chunked_too_big() -> dict:
    """A body over the limit without Content-Length, as gunicorn hands over a chunked
    request (input marked as terminated by the server). White space after a complete
    object: cut at the limit, it would still parse."""
    body = b'{"ciphertext": "AA"}' + b" " * MAX_REQUEST_BYTES
    return {
        "input_stream": io.BytesIO(body),
        "content_type": "application/json",
        "headers": {"Transfer-Encoding": "chunked"},
        "environ_overrides": {"wsgi.input_terminated": True},
    }


POW = {"pow_difficulty": 8}
AUTH_LIMIT = {"rate_limits_enabled": True, "rate_limit_auth": "2/minute"}  # register() uses 2
CLIENT_LIMIT = {"rate_limits_enabled": True, "rate_limit_client": "1/minute"}
OWNER_READ_LIMIT = {"rate_limits_enabled": True, "rate_limit_owner_read": "1/minute"}
# register() saves the inbox once: the next owner write is over this limit.
OWNER_WRITE_LIMIT = {"rate_limits_enabled": True, "rate_limit_owner_write": "1/minute"}


def unknown_key() -> str:
    return generate_keypair().public_key_text


@dataclass
class World:
    """A fresh app with one registered inbox, for one probe."""

    app: Flask
    keypair: KeyPair
    monkeypatch: pytest.MonkeyPatch
    token: str = ""

    def __post_init__(self):
        self.client = self.app.test_client()
        self.token = register(self.client, self.keypair)

    @property
    def key(self) -> str:
        return self.keypair.public_key_text

    def send(self, method: str, url: str, token: str | None = None, **kwargs):
        headers = {**kwargs.pop("headers", {}), **(bearer(token) if token is not None else {})}
        return self.client.open(url, method=method, headers=headers, **kwargs)

    def inbox(self, method: str, suffix: str = "", token=None, key=None, **kwargs):
        """A request to /api/v1/inboxes/<key><suffix> (the registered key by default)."""
        return self.send(method, f"/api/v1/inboxes/{key or self.key}{suffix}", token, **kwargs)

    def later(self, seconds: int) -> None:
        """Move the clock forward (itsdangerous and the expiry checks read time.time)."""
        now = time.time() + seconds
        self.monkeypatch.setattr(time, "time", lambda: now)

    def expired_token(self) -> str:
        self.later(self.app.config["SECRETLINK"].token_ttl + 5)
        return self.token

    def other_token(self) -> str:
        """A valid token for another key, whose inbox does not exist."""
        return get_token(self.client, generate_keypair())

    def envelope(self, text: str = "hello") -> str:
        return b64encode(seal(text, self.keypair.public_key))

    def post_message(self, **fields):
        return self.inbox("POST", "/messages", json={"ciphertext": self.envelope(), **fields})

    def post_envelope(self, envelope: bytes):
        return self.inbox("POST", "/messages", json={"ciphertext": b64encode(envelope)})

    def message_id(self) -> str:
        response = self.post_message()
        assert response.status_code == 201
        return response.get_json()["id"]

    def challenge(self) -> dict:
        response = self.send("POST", CHALLENGE, json={"public_key": self.key})
        assert response.status_code == 200
        return response.get_json()

    def answer(self, challenge: dict, origin: str = ORIGIN):
        mac = prove(
            self.keypair.secret_key,
            b64decode(challenge["server_key"]),
            b64decode(challenge["nonce"]),
            challenge["expires_at"],
            origin,
        )
        body = {"challenge": challenge["challenge"], "proof": b64encode(mac)}
        return self.send("POST", TOKEN, json=body)

    def puzzle(self) -> dict:
        response = self.inbox("POST", "/puzzle")
        assert response.status_code == 200
        return response.get_json()


@dataclass
class Probe:
    operation: str
    status: int
    code: str | None
    send: Callable[[World], object]
    settings: dict = field(default_factory=dict)

    @property
    def id(self) -> str:
        return f"{self.operation}-{self.status}-{self.code or 'ok'}"


def twice(send: Callable[[World], object]) -> Callable[[World], object]:
    """Send a request two times; the second answer counts."""

    def again(w: World):
        send(w)
        return send(w)

    return again


def answer_twice(w: World):
    challenge = w.challenge()
    w.answer(challenge)
    return w.answer(challenge)


def answer_late(w: World):
    challenge = w.challenge()
    w.later(120)
    return w.answer(challenge)


def bad_proof_encoding(w: World):
    return w.send("POST", TOKEN, json={"challenge": w.challenge()["challenge"], "proof": "+/"})


def create_another_inbox(w: World):
    keypair = generate_keypair()
    token = get_token(w.client, keypair)
    return w.inbox("PUT", token=token, key=keypair.public_key_text, json={})


def create_with(w: World, fields: Callable[[World, str], dict]):
    """PUT a new inbox (its own key and token) with the body `fields(w, key)` gives."""
    keypair = generate_keypair()
    token = get_token(w.client, keypair)
    key = keypair.public_key_text
    return w.inbox("PUT", token=token, key=key, json=fields(w, key))


def creation_solved(w: World, key: str) -> dict:
    response = w.inbox("POST", "/creation-puzzle", key=key)
    assert response.status_code == 200
    puzzle = response.get_json()
    return {"puzzle": puzzle["puzzle"], "solution": solve(puzzle["puzzle"], puzzle["difficulty"])}


def creation_wrong(w: World, key: str) -> dict:
    puzzle = w.inbox("POST", "/creation-puzzle", key=key).get_json()
    counter = next(c for c in range(1000) if not meets(puzzle["puzzle"], c, puzzle["difficulty"]))
    return {"puzzle": puzzle["puzzle"], "solution": counter}


def creation_expired(w: World):
    keypair = generate_keypair()
    key = keypair.public_key_text
    fields = creation_solved(w, key)
    w.later(601)  # then a token, which lives only 600 s
    return w.inbox("PUT", token=get_token(w.client, keypair), key=key, json=fields)


def creation_twice(w: World):
    keypair = generate_keypair()
    token = get_token(w.client, keypair)
    key = keypair.public_key_text
    fields = creation_solved(w, key)
    assert w.inbox("PUT", token=token, key=key, json=fields).status_code == 201
    w.inbox("DELETE", token=token, key=key)
    return w.inbox("PUT", token=token, key=key, json=fields)


def stale_puzzles(w: World, ask: Callable[[], dict], count: int = 8) -> list[dict]:
    """Solved puzzles issued more than 120 s ago, while the difficulty was lower."""
    gate = w.app.extensions["secretlink.pow"]
    issued = time.time() - 200
    gate.clock = lambda: issued
    puzzles = [ask() for _ in range(count)]
    gate.clock = time.time
    gate.base_difficulty += 4  # the operator raised the setting since
    # Kept: the solutions that do not meet the risen difficulty (by luck, 1 in 16 does).
    return [
        {"puzzle": p["puzzle"], "solution": solve(p["puzzle"], p["difficulty"])}
        for p in puzzles
        if not meets(p["puzzle"], solve(p["puzzle"], p["difficulty"]), p["difficulty"] + 4)
    ]


def stale_message_puzzle(w: World):
    return w.post_message(**stale_puzzles(w, w.puzzle)[0])


def stale_creation_puzzle(w: World):
    keypair = generate_keypair()
    key = keypair.public_key_text
    token = get_token(w.client, keypair)
    ask = lambda: w.inbox("POST", "/creation-puzzle", key=key).get_json()  # noqa: E731
    return w.inbox("PUT", token=token, key=key, json=stale_puzzles(w, ask)[0])


def v1_envelope(first: bytes = b"\x01", key: bytes | None = None) -> bytes:
    """306 bytes (the smallest v1 length) with a chosen version byte and ephemeral key."""
    return first + (key if key is not None else generate_keypair().public_key) + bytes(273)


def solved(w: World) -> dict:
    puzzle = w.puzzle()
    return {"puzzle": puzzle["puzzle"], "solution": solve(puzzle["puzzle"], puzzle["difficulty"])}


def wrong_solution(w: World):
    puzzle = w.puzzle()
    counter = next(c for c in range(1000) if not meets(puzzle["puzzle"], c, puzzle["difficulty"]))
    return w.post_message(puzzle=puzzle["puzzle"], solution=counter)


def expired_puzzle(w: World):
    fields = solved(w)
    w.later(601)
    return w.post_message(**fields)


def puzzle_twice(w: World):
    fields = solved(w)
    w.post_message(**fields)
    return w.post_message(**fields)


def list_a_page(w: World):
    w.message_id()
    w.message_id()
    return w.inbox("GET", "/messages?limit=1", w.token)


def list_deleted_inbox(w: World):
    w.inbox("DELETE", token=w.token)
    return w.inbox("GET", "/messages", w.token)


def delete_a_message(w: World):
    return w.inbox("DELETE", f"/messages/{w.message_id()}", w.token)


def failing_storage(w: World):
    def explode(*_args, **_kwargs):
        raise RuntimeError("simulated storage failure")

    w.monkeypatch.setattr(w.app.extensions["secretlink.storage"], "get_inbox", explode)
    return w.inbox("GET")


def failing_health_check(w: World):
    def explode():
        raise RuntimeError("simulated failure")

    w.monkeypatch.setattr(secretlink.web.health, "database_ok", explode)
    return w.send("GET", "/healthz")


def unreachable_database(w: World):
    w.monkeypatch.setattr(secretlink.web.health, "database_ok", lambda: False)
    return w.send("GET", "/healthz")


P = Probe


NOTIFY = "/notifications"
NOTIFY_OFF = {"notifications_enabled": False}
HOOK = {"webhook": "https://ntfy.example/topic"}
P256DH = b64encode(bytes([4]) + bytes(64))  # 65 bytes, but not a point on P-256


def notify_unknown_inbox(method: str, **kwargs) -> Callable[[World], object]:
    """A valid token for a key without an inbox on the server."""

    def send(w: World):
        keypair = generate_keypair()
        token = get_token(w.client, keypair)
        return w.inbox(method, NOTIFY, token, key=keypair.public_key_text, **kwargs)

    return send


def notification_probes() -> list["Probe"]:
    probes = []
    for op, method, ok, body in (
        ("show_notifications", "GET", 200, {}),
        ("save_notifications", "PUT", 200, {"json": HOOK}),
        ("delete_notifications", "DELETE", 204, {}),
    ):
        limit = OWNER_READ_LIMIT if method == "GET" else OWNER_WRITE_LIMIT
        probes += [
            Probe(op, ok, None, lambda w, m=method, b=body: w.inbox(m, NOTIFY, w.token, **b)),
            Probe(
                op,
                400,
                "bad_public_key",
                lambda w, m=method, b=body: w.inbox(m, NOTIFY, w.token, key=BAD_KEY, **b),
            ),
            Probe(op, 401, "token_required", lambda w, m=method, b=body: w.inbox(m, NOTIFY, **b)),
            Probe(
                op, 401, "bad_token", lambda w, m=method, b=body: w.inbox(m, NOTIFY, "forged", **b)
            ),
            Probe(
                op,
                401,
                "token_expired",
                lambda w, m=method, b=body: w.inbox(m, NOTIFY, w.expired_token(), **b),
            ),
            Probe(
                op,
                403,
                "wrong_inbox",
                lambda w, m=method, b=body: w.inbox(m, NOTIFY, w.other_token(), **b),
            ),
            Probe(op, 404, "unknown_inbox", notify_unknown_inbox(method, **body)),
            Probe(
                op,
                404,
                "notifications_off",
                lambda w, m=method, b=body: w.inbox(m, NOTIFY, w.token, **b),
                NOTIFY_OFF,
            ),
            Probe(
                op,
                429,
                "rate_limited",
                twice(lambda w, m=method, b=body: w.inbox(m, NOTIFY, w.token, **b)),
                limit,
            ),
        ]
    push = {"endpoint": "https://push.example/1", "keys": {"p256dh": P256DH, "auth": "A" * 22}}
    for code, json_body in (
        ("bad_json", ["webhook"]),
        ("bad_field", {"webhook": 5}),
        ("bad_text", {**HOOK, "text": " "}),
        ("text_too_long", {**HOOK, "text": "x" * 101}),
        ("bad_delay", {**HOOK, "max_delay_minutes": 61}),
        ("bad_url", {"webhook": "https://10.0.0.1/hook"}),
        ("bad_key", {"push": push}),
        ("no_target", {"text": "Hello"}),
    ):
        probes.append(
            Probe(
                "save_notifications",
                400,
                code,
                lambda w, b=json_body: w.inbox("PUT", NOTIFY, w.token, json=b),
            )
        )
    probes += [
        Probe(
            "save_notifications",
            413,
            "too_large",
            lambda w: w.inbox("PUT", NOTIFY, w.token, **TOO_BIG),
        ),
        Probe(
            "save_notifications",
            415,
            "unsupported_media_type",
            lambda w: w.inbox("PUT", NOTIFY, w.token, **NOT_JSON),
        ),
    ]
    return probes


PROBES = [
    # POST /auth/challenge
    P(
        "create_challenge",
        200,
        None,
        lambda w: w.send("POST", CHALLENGE, json={"public_key": w.key}),
    ),
    P("create_challenge", 400, "bad_json", lambda w: w.send("POST", CHALLENGE, json=[w.key])),
    P("create_challenge", 400, "bad_field", lambda w: w.send("POST", CHALLENGE, json={})),
    P(
        "create_challenge",
        400,
        "bad_public_key",
        lambda w: w.send("POST", CHALLENGE, json={"public_key": BAD_KEY}),
    ),
    P(
        "create_challenge",
        400,
        "bad_field",
        lambda w: w.send("POST", CHALLENGE, json={"public_key": SURROGATE}),
    ),
    P("create_challenge", 413, "too_large", lambda w: w.send("POST", CHALLENGE, **TOO_BIG)),
    P(
        "create_challenge",
        415,
        "unsupported_media_type",
        lambda w: w.send("POST", CHALLENGE, **NOT_JSON),
    ),
    P(
        "create_challenge",
        429,
        "rate_limited",
        lambda w: w.send("POST", CHALLENGE, json={"public_key": w.key}),
        AUTH_LIMIT,
    ),
    # POST /auth/token
    P("create_token", 200, None, lambda w: w.answer(w.challenge())),
    P("create_token", 400, "bad_json", lambda w: w.send("POST", TOKEN, json="challenge")),
    P("create_token", 400, "bad_field", lambda w: w.send("POST", TOKEN, json={"challenge": "x"})),
    P(
        "create_token",
        400,
        "bad_field",
        lambda w: w.send("POST", TOKEN, json={"challenge": SURROGATE, "proof": "AA"}),
    ),
    P("create_token", 400, "bad_proof", bad_proof_encoding),
    P(
        "create_token",
        401,
        "bad_challenge",
        lambda w: w.send("POST", TOKEN, json={"challenge": "forged", "proof": "AA"}),
    ),
    P("create_token", 401, "challenge_used", answer_twice),
    P("create_token", 401, "bad_proof", lambda w: w.answer(w.challenge(), "https://other.example")),
    P("create_token", 401, "challenge_expired", answer_late),
    P("create_token", 413, "too_large", lambda w: w.send("POST", TOKEN, **TOO_BIG)),
    P("create_token", 413, "too_large", lambda w: w.send("POST", TOKEN, **chunked_too_big())),
    P("create_token", 415, "unsupported_media_type", lambda w: w.send("POST", TOKEN, **NOT_JSON)),
    P(
        "create_token",
        429,
        "rate_limited",
        lambda w: w.send("POST", TOKEN, json={"challenge": "x", "proof": "AA"}),
        AUTH_LIMIT,
    ),
    # PUT /inboxes/{public_key}
    P("save_inbox", 200, None, lambda w: w.inbox("PUT", token=w.token, json={"prompt": " Hi "})),
    P("save_inbox", 201, None, create_another_inbox),
    P("save_inbox", 507, "instance_full", create_another_inbox, {"max_inboxes": 1}),
    P("save_inbox", 400, "bad_public_key", lambda w: w.inbox("PUT", token=w.token, key=BAD_KEY)),
    P(
        "save_inbox",
        400,
        "bad_json",
        lambda w: w.inbox("PUT", token=w.token, data="", content_type="application/json"),
    ),
    P("save_inbox", 400, "bad_field", lambda w: w.inbox("PUT", token=w.token, json={"prompt": 5})),
    P(
        "save_inbox",
        400,
        "bad_field",
        lambda w: w.inbox("PUT", token=w.token, json={"prompt": SURROGATE}),
    ),
    P(
        "save_inbox",
        400,
        "prompt_too_long",
        lambda w: w.inbox("PUT", token=w.token, json={"prompt": "a" * 501}),
    ),
    P("save_inbox", 201, None, lambda w: create_with(w, creation_solved), POW),
    P("save_inbox", 400, "pow_required", lambda w: create_with(w, lambda w, k: {}), POW),
    P(
        "save_inbox",
        400,
        "bad_field",
        lambda w: create_with(w, lambda w, k: {"puzzle": 1, "solution": "1"}),
        POW,
    ),
    P(
        "save_inbox",
        400,
        "bad_puzzle",
        lambda w: create_with(w, lambda w, k: {"puzzle": "x", "solution": 0}),
        POW,
    ),
    P("save_inbox", 400, "bad_solution", lambda w: create_with(w, creation_wrong), POW),
    P("save_inbox", 400, "puzzle_expired", creation_expired, POW),
    P("save_inbox", 400, "puzzle_used", creation_twice, POW),
    P("save_inbox", 400, "pow_stale", stale_creation_puzzle, POW),
    P("save_inbox", 401, "token_required", lambda w: w.inbox("PUT", json={})),
    P("save_inbox", 401, "bad_token", lambda w: w.inbox("PUT", token="forged", json={})),
    P("save_inbox", 401, "token_expired", lambda w: w.inbox("PUT", token=w.expired_token())),
    P("save_inbox", 403, "wrong_inbox", lambda w: w.inbox("PUT", token=w.other_token())),
    P("save_inbox", 413, "too_large", lambda w: w.inbox("PUT", token=w.token, **TOO_BIG)),
    P(
        "save_inbox",
        415,
        "unsupported_media_type",
        lambda w: w.inbox("PUT", token=w.token, **NOT_JSON),
    ),
    # GET /inboxes/{public_key}
    P("show_inbox", 200, None, lambda w: w.inbox("GET")),
    P("show_inbox", 400, "bad_public_key", lambda w: w.inbox("GET", key=BAD_KEY)),
    P("show_inbox", 404, "unknown_inbox", lambda w: w.inbox("GET", key=unknown_key())),
    P("show_inbox", 500, "internal_error", failing_storage),
    # DELETE /inboxes/{public_key}
    P("delete_inbox", 204, None, lambda w: w.inbox("DELETE", token=w.token)),
    P(
        "delete_inbox",
        400,
        "bad_public_key",
        lambda w: w.inbox("DELETE", token=w.token, key=BAD_KEY),
    ),
    P("delete_inbox", 401, "token_required", lambda w: w.inbox("DELETE")),
    P("delete_inbox", 401, "bad_token", lambda w: w.inbox("DELETE", token="forged")),
    P("delete_inbox", 401, "token_expired", lambda w: w.inbox("DELETE", token=w.expired_token())),
    P("delete_inbox", 403, "wrong_inbox", lambda w: w.inbox("DELETE", token=w.other_token())),
    P("delete_inbox", 404, "unknown_inbox", twice(lambda w: w.inbox("DELETE", token=w.token))),
    # POST /inboxes/{public_key}/puzzle
    P("create_puzzle", 200, None, lambda w: w.inbox("POST", "/puzzle"), POW),
    P("create_puzzle", 400, "bad_public_key", lambda w: w.inbox("POST", "/puzzle", key=BAD_KEY)),
    P(
        "create_puzzle",
        404,
        "unknown_inbox",
        lambda w: w.inbox("POST", "/puzzle", key=unknown_key()),
    ),
    P(
        "create_puzzle",
        429,
        "rate_limited",
        twice(lambda w: w.inbox("POST", "/puzzle")),
        CLIENT_LIMIT,
    ),
    # POST /inboxes/{public_key}/creation-puzzle
    P(
        "create_inbox_puzzle",
        200,
        None,
        lambda w: w.inbox("POST", "/creation-puzzle", key=unknown_key()),
        POW,
    ),
    P(
        "create_inbox_puzzle",
        400,
        "bad_public_key",
        lambda w: w.inbox("POST", "/creation-puzzle", key=BAD_KEY),
    ),
    P(
        "create_inbox_puzzle",
        429,
        "rate_limited",
        twice(lambda w: w.inbox("POST", "/creation-puzzle")),
        CLIENT_LIMIT,
    ),
    # POST /inboxes/{public_key}/messages
    P("post_message", 201, None, lambda w: w.post_message()),
    P("post_message", 201, None, lambda w: w.post_message(**solved(w)), POW),
    P(
        "post_message",
        400,
        "bad_public_key",
        lambda w: w.inbox("POST", "/messages", key=BAD_KEY, json={}),
    ),
    P(
        "post_message",
        400,
        "bad_json",
        lambda w: w.inbox("POST", "/messages", data="{", content_type="application/json"),
    ),
    P("post_message", 400, "bad_field", lambda w: w.inbox("POST", "/messages", json={"text": ""})),
    P(
        "post_message",
        400,
        "bad_ciphertext",
        lambda w: w.inbox("POST", "/messages", json={"ciphertext": "AQ=="}),
    ),
    P("post_message", 400, "unsupported_version", lambda w: w.post_envelope(v1_envelope(b"\x02"))),
    P("post_message", 400, "bad_envelope_length", lambda w: w.post_envelope(b"\x01" + bytes(40))),
    P("post_message", 400, "bad_envelope", lambda w: w.post_envelope(v1_envelope(key=bytes(32)))),
    P("post_message", 400, "pow_required", lambda w: w.post_message(), POW),
    P("post_message", 400, "bad_field", lambda w: w.post_message(puzzle=1, solution="1"), POW),
    P(
        "post_message",
        400,
        "bad_field",
        lambda w: w.post_message(puzzle=SURROGATE, solution=0),
        POW,
    ),
    P("post_message", 400, "bad_puzzle", lambda w: w.post_message(puzzle="x", solution=0), POW),
    P("post_message", 400, "bad_solution", wrong_solution, POW),
    P("post_message", 400, "puzzle_expired", expired_puzzle, POW),
    P("post_message", 400, "puzzle_used", puzzle_twice, POW),
    P("post_message", 400, "pow_stale", stale_message_puzzle, POW),
    P(
        "post_message",
        404,
        "unknown_inbox",
        lambda w: w.inbox(
            "POST", "/messages", key=unknown_key(), json={"ciphertext": w.envelope()}
        ),
    ),
    P("post_message", 413, "too_large", lambda w: w.inbox("POST", "/messages", **TOO_BIG)),
    P(
        "post_message",
        413,
        "too_large",
        lambda w: w.inbox("POST", "/messages", **chunked_too_big()),
    ),
    P(
        "post_message",
        413,
        "too_large",
        lambda w: w.inbox("POST", "/messages", json={"ciphertext": "A" * 87_449}),
    ),
    P(
        "post_message",
        413,
        "too_large",
        lambda w: w.inbox("POST", "/messages", json={"ciphertext": w.envelope("x" * 400)}),
        {"max_envelope_bytes": 306},
    ),
    P(
        "post_message",
        415,
        "unsupported_media_type",
        lambda w: w.inbox("POST", "/messages", **NOT_JSON),
    ),
    P("post_message", 429, "rate_limited", twice(lambda w: w.post_message()), CLIENT_LIMIT),
    P(
        "post_message",
        409,
        "inbox_full",
        twice(lambda w: w.post_message()),
        {"inbox_max_messages": 1},
    ),
    P(
        "post_message",
        507,
        "instance_full",
        twice(lambda w: w.post_message()),
        {"storage_budget_bytes": 306},
    ),
    P("list_messages", 429, "rate_limited", twice(list_a_page), OWNER_READ_LIMIT),
    P(
        "save_inbox",
        429,
        "rate_limited",
        lambda w: w.inbox("PUT", token=w.token, json={}),
        OWNER_WRITE_LIMIT,
    ),
    P(
        "delete_inbox",
        429,
        "rate_limited",
        lambda w: w.inbox("DELETE", token=w.token),
        OWNER_WRITE_LIMIT,
    ),
    P(
        "delete_message",
        429,
        "rate_limited",
        lambda w: w.inbox("DELETE", "/messages/x", w.token),
        OWNER_WRITE_LIMIT,
    ),
    # GET /inboxes/{public_key}/messages
    P("list_messages", 200, None, list_a_page),
    P(
        "list_messages",
        400,
        "bad_public_key",
        lambda w: w.inbox("GET", "/messages", w.token, key=BAD_KEY),
    ),
    P("list_messages", 400, "bad_limit", lambda w: w.inbox("GET", "/messages?limit=51", w.token)),
    P("list_messages", 400, "bad_cursor", lambda w: w.inbox("GET", "/messages?before=x", w.token)),
    P("list_messages", 401, "token_required", lambda w: w.inbox("GET", "/messages")),
    P("list_messages", 401, "bad_token", lambda w: w.inbox("GET", "/messages", "forged")),
    P(
        "list_messages",
        401,
        "token_expired",
        lambda w: w.inbox("GET", "/messages", w.expired_token()),
    ),
    P("list_messages", 403, "wrong_inbox", lambda w: w.inbox("GET", "/messages", w.other_token())),
    P("list_messages", 404, "unknown_inbox", list_deleted_inbox),
    # DELETE /inboxes/{public_key}/messages/{message_id}
    P("delete_message", 204, None, delete_a_message),
    P(
        "delete_message",
        400,
        "bad_public_key",
        lambda w: w.inbox("DELETE", "/messages/x", w.token, key=BAD_KEY),
    ),
    P("delete_message", 401, "token_required", lambda w: w.inbox("DELETE", "/messages/x")),
    P("delete_message", 401, "bad_token", lambda w: w.inbox("DELETE", "/messages/x", "forged")),
    P(
        "delete_message",
        401,
        "token_expired",
        lambda w: w.inbox("DELETE", "/messages/x", w.expired_token()),
    ),
    P(
        "delete_message",
        403,
        "wrong_inbox",
        lambda w: w.inbox("DELETE", "/messages/x", w.other_token()),
    ),
    P(
        "delete_message",
        404,
        "unknown_message",
        lambda w: w.inbox("DELETE", "/messages/x", w.token),
    ),
    # /inboxes/{public_key}/notifications
    *notification_probes(),
    # the document itself, and the health check
    P("openapi_document", 200, None, lambda w: w.send("GET", "/api/v1/openapi.json")),
    P("healthz", 200, None, lambda w: w.send("GET", "/healthz")),
    P("healthz", 503, None, unreachable_database),
    P("healthz", 500, None, failing_health_check),
]


# ---- inbox settings (secretlink/web/api/settings.py) ----


def settings_store(w: World):
    from secretlink.store.inbox_settings import InboxSettingsStore

    return InboxSettingsStore(w.app.extensions["secretlink.storage"].engine)


def pause(w: World) -> None:
    assert w.inbox("PATCH", "/settings", w.token, json={"paused": True}).status_code == 200


def new_inbox(w: World) -> tuple[str, str]:
    """Another registered inbox of the same owner: (key, token)."""
    keypair = generate_keypair()
    return keypair.public_key_text, register(w.client, keypair)


def rotate_to(w: World, key: str, token: str, old_token: str | None = None, old_key=None):
    body = {"new_public_key": key, "new_token": token}
    return w.inbox("POST", "/rotate", old_token or w.token, key=old_key, json=body)


def move(w: World) -> None:
    assert rotate_to(w, *new_inbox(w)).status_code == 200


def disable(w: World) -> None:
    assert settings_store(w).disable(w.key, "a test")


def closed(before: Callable[[World], None], request: Callable[[World], object]):
    def send(w: World):
        before(w)
        return request(w)

    return send


def unregistered(w: World) -> tuple[str, str]:
    """A key with a valid token and no inbox."""
    keypair = generate_keypair()
    return keypair.public_key_text, get_token(w.client, keypair)


def settings_of_unknown_inbox(w: World, method: str, suffix: str, **kwargs):
    key, token = unregistered(w)
    return w.inbox(method, suffix, token, key=key, **kwargs)


def over_the_hourly_cap(w: World):
    w.inbox("PATCH", "/settings", w.token, json={"hourly_cap": 1})
    w.post_message()
    return w.post_message()


def rotate_expired_new_token(w: World):
    key, token = new_inbox(w)
    w.later(w.app.config["SECRETLINK"].token_ttl + 5)
    return rotate_to(w, key, token, old_token=get_token(w.client, w.keypair))


def rotate_unknown_old(w: World):
    key, token = unregistered(w)
    return rotate_to(w, *new_inbox(w), old_token=token, old_key=key)


def rotate_to_a_moved_inbox(w: World):
    key, token = new_inbox(w)
    third = new_inbox(w)
    assert rotate_to(w, *third, old_token=token, old_key=key).status_code == 200
    return rotate_to(w, key, token)


def rotate_elsewhere(w: World):
    move(w)
    return rotate_to(w, *new_inbox(w))


SETTINGS = "/settings"
RETENTION_30 = {"retention_days": 30}
SETTINGS_PROBES = [
    # the sender's side
    P("create_puzzle", 403, "inbox_paused", closed(pause, lambda w: w.inbox("POST", "/puzzle"))),
    P("create_puzzle", 403, "inbox_moved", closed(move, lambda w: w.inbox("POST", "/puzzle"))),
    P(
        "create_puzzle",
        403,
        "inbox_disabled",
        closed(disable, lambda w: w.inbox("POST", "/puzzle")),
    ),
    P("post_message", 403, "inbox_paused", closed(pause, lambda w: w.post_message())),
    P("post_message", 403, "inbox_moved", closed(move, lambda w: w.post_message())),
    P("post_message", 403, "inbox_disabled", closed(disable, lambda w: w.post_message())),
    P("post_message", 429, "hourly_cap_reached", over_the_hourly_cap),
    # GET /inboxes/{public_key}/settings
    P("show_settings", 200, None, lambda w: w.inbox("GET", SETTINGS, w.token)),
    P(
        "show_settings",
        400,
        "bad_public_key",
        lambda w: w.inbox("GET", SETTINGS, w.token, key=BAD_KEY),
    ),
    P("show_settings", 401, "token_required", lambda w: w.inbox("GET", SETTINGS)),
    P("show_settings", 401, "bad_token", lambda w: w.inbox("GET", SETTINGS, "forged")),
    P("show_settings", 401, "token_expired", lambda w: w.inbox("GET", SETTINGS, w.expired_token())),
    P("show_settings", 403, "wrong_inbox", lambda w: w.inbox("GET", SETTINGS, w.other_token())),
    P(
        "show_settings",
        404,
        "unknown_inbox",
        lambda w: settings_of_unknown_inbox(w, "GET", SETTINGS),
    ),
    P(
        "show_settings",
        429,
        "rate_limited",
        twice(lambda w: w.inbox("GET", SETTINGS, w.token)),
        OWNER_READ_LIMIT,
    ),
    # PATCH /inboxes/{public_key}/settings
    P(
        "change_settings",
        200,
        None,
        lambda w: w.inbox("PATCH", SETTINGS, w.token, json=RETENTION_30),
    ),
    P(
        "change_settings",
        400,
        "bad_public_key",
        lambda w: w.inbox("PATCH", SETTINGS, w.token, key=BAD_KEY, json={}),
    ),
    P(
        "change_settings",
        400,
        "bad_json",
        lambda w: w.inbox("PATCH", SETTINGS, w.token, data="{", content_type="application/json"),
    ),
    P(
        "change_settings",
        400,
        "bad_setting",
        lambda w: w.inbox("PATCH", SETTINGS, w.token, json={"hourly_cap": 0}),
    ),
    P(
        "change_settings",
        400,
        "unknown_setting",
        lambda w: w.inbox("PATCH", SETTINGS, w.token, json={"colour": 1}),
    ),
    P(
        "change_settings",
        400,
        "read_only_setting",
        lambda w: w.inbox("PATCH", SETTINGS, w.token, json={"disabled": False}),
    ),
    P(
        "change_settings",
        400,
        "retention_too_long",
        lambda w: w.inbox("PATCH", SETTINGS, w.token, json={"retention_days": 90}),
        {"retention_days": 30},
    ),
    P("change_settings", 401, "token_required", lambda w: w.inbox("PATCH", SETTINGS, json={})),
    P("change_settings", 401, "bad_token", lambda w: w.inbox("PATCH", SETTINGS, "forged", json={})),
    P(
        "change_settings",
        401,
        "token_expired",
        lambda w: w.inbox("PATCH", SETTINGS, w.expired_token(), json={}),
    ),
    P(
        "change_settings",
        403,
        "wrong_inbox",
        lambda w: w.inbox("PATCH", SETTINGS, w.other_token(), json={}),
    ),
    P(
        "change_settings",
        404,
        "unknown_inbox",
        lambda w: settings_of_unknown_inbox(w, "PATCH", SETTINGS, json={}),
    ),
    P(
        "change_settings",
        413,
        "too_large",
        lambda w: w.inbox("PATCH", SETTINGS, w.token, **TOO_BIG),
    ),
    P(
        "change_settings",
        415,
        "unsupported_media_type",
        lambda w: w.inbox("PATCH", SETTINGS, w.token, **NOT_JSON),
    ),
    P(
        "change_settings",
        429,
        "rate_limited",
        lambda w: w.inbox("PATCH", SETTINGS, w.token, json={}),
        OWNER_WRITE_LIMIT,
    ),
    # DELETE /inboxes/{public_key}/messages
    P(
        "delete_all_messages",
        200,
        None,
        closed(lambda w: w.message_id(), lambda w: w.inbox("DELETE", "/messages", w.token)),
    ),
    P(
        "delete_all_messages",
        400,
        "bad_public_key",
        lambda w: w.inbox("DELETE", "/messages", w.token, key=BAD_KEY),
    ),
    P("delete_all_messages", 401, "token_required", lambda w: w.inbox("DELETE", "/messages")),
    P("delete_all_messages", 401, "bad_token", lambda w: w.inbox("DELETE", "/messages", "forged")),
    P(
        "delete_all_messages",
        401,
        "token_expired",
        lambda w: w.inbox("DELETE", "/messages", w.expired_token()),
    ),
    P(
        "delete_all_messages",
        403,
        "wrong_inbox",
        lambda w: w.inbox("DELETE", "/messages", w.other_token()),
    ),
    P(
        "delete_all_messages",
        404,
        "unknown_inbox",
        lambda w: settings_of_unknown_inbox(w, "DELETE", "/messages"),
    ),
    P(
        "delete_all_messages",
        429,
        "rate_limited",
        lambda w: w.inbox("DELETE", "/messages", w.token),
        OWNER_WRITE_LIMIT,
    ),
    # POST /inboxes/{public_key}/rotate
    P("rotate", 200, None, lambda w: rotate_to(w, *new_inbox(w))),
    P("rotate", 400, "bad_public_key", lambda w: rotate_to(w, BAD_KEY, "x")),
    P(
        "rotate",
        400,
        "bad_json",
        lambda w: w.inbox("POST", "/rotate", w.token, data="[]", content_type="application/json"),
    ),
    P("rotate", 400, "bad_field", lambda w: w.inbox("POST", "/rotate", w.token, json={})),
    P(
        "rotate",
        400,
        "unknown_field",
        lambda w: w.inbox("POST", "/rotate", w.token, json={"new_key": w.key}),
    ),
    P("rotate", 400, "same_key", lambda w: rotate_to(w, w.key, w.token)),
    P("rotate", 401, "token_required", lambda w: w.inbox("POST", "/rotate", json={})),
    P("rotate", 401, "bad_token", lambda w: w.inbox("POST", "/rotate", "forged", json={})),
    P("rotate", 401, "token_expired", lambda w: w.inbox("POST", "/rotate", w.expired_token())),
    P("rotate", 401, "new_token_required", lambda w: rotate_to(w, new_inbox(w)[0], " ")),
    P("rotate", 401, "new_bad_token", lambda w: rotate_to(w, new_inbox(w)[0], "forged")),
    P("rotate", 401, "new_token_expired", rotate_expired_new_token),
    P("rotate", 403, "wrong_inbox", lambda w: w.inbox("POST", "/rotate", w.other_token())),
    P("rotate", 403, "new_wrong_inbox", lambda w: rotate_to(w, new_inbox(w)[0], w.token)),
    P("rotate", 403, "inbox_disabled", closed(disable, lambda w: rotate_to(w, *new_inbox(w)))),
    P("rotate", 404, "unknown_inbox", rotate_unknown_old),
    P("rotate", 404, "unknown_new_inbox", lambda w: rotate_to(w, *unregistered(w))),
    P("rotate", 409, "already_moved", rotate_elsewhere),
    P("rotate", 409, "new_inbox_not_open", rotate_to_a_moved_inbox),
    P("rotate", 413, "too_large", lambda w: w.inbox("POST", "/rotate", w.token, **TOO_BIG)),
    P(
        "rotate",
        415,
        "unsupported_media_type",
        lambda w: w.inbox("POST", "/rotate", w.token, **NOT_JSON),
    ),
    P("rotate", 429, "rate_limited", lambda w: rotate_to(w, w.key, "x"), OWNER_WRITE_LIMIT),
    # DELETE /inboxes/{public_key} of a disabled inbox (its owner cannot lift it so)
    P(
        "delete_inbox",
        403,
        "inbox_disabled",
        closed(disable, lambda w: w.inbox("DELETE", token=w.token)),
    ),
]
PROBES += SETTINGS_PROBES


# ---- attachments (docs/API.md 4.11) ----

UPLOADS = "/uploads"
BLOB_LENGTH = 3072  # the blob of a 3000-byte file
SMALL_FILES = {"attachment_max_file_bytes": 4000, "attachment_max_message_bytes": 8192}
BIG_BLOB = 8192  # longer than the blob of a 4000-byte file (4096)


def accepting(w: World) -> None:
    on = {"accepts_attachments": True}
    assert w.inbox("PATCH", "/settings", w.token, json=on).status_code == 200


def upload_puzzle(w: World, length: int = BLOB_LENGTH) -> dict:
    response = w.inbox("POST", f"{UPLOADS}/puzzle", json={"length": length})
    assert response.status_code == 200, response.get_json()
    puzzle = response.get_json()
    return {"puzzle": puzzle["puzzle"], "solution": solve(puzzle["puzzle"], puzzle["difficulty"])}


def start_upload(w: World, blob_id: str | None = None, length: int = BLOB_LENGTH, **fields):
    body = {"blob_id": blob_id or b64encode(os.urandom(16)), "length": length, **fields}
    return w.inbox("POST", UPLOADS, json=body)


def started(w: World, length: int = BLOB_LENGTH) -> tuple[str, str]:
    """An accepting inbox and an upload started on it: (blob id, capability)."""
    accepting(w)
    response = start_upload(w, length=length)
    assert response.status_code == 201, response.get_json()
    return response.get_json()["blob_id"], response.get_json()["upload"]


def append(w: World, blob_id: str, capability: str | None, offset="0", data=b"x", **kw):
    headers = {"Upload-Offset": offset, **kw.pop("headers", {})}
    kw.setdefault("content_type", "application/octet-stream")
    return w.inbox("PATCH", f"{UPLOADS}/{blob_id}", capability, data=data, headers=headers, **kw)


def upload_state(w: World, blob_id: str, capability: str | None):
    return w.inbox("GET", f"{UPLOADS}/{blob_id}", capability)


def complete_upload(w: World, length: int = BLOB_LENGTH) -> str:
    blob_id, capability = started(w, length)
    assert append(w, blob_id, capability, data=bytes(length)).status_code == 200
    return blob_id


def sent_blob(w: World) -> str:
    """A blob sent with a message: downloadable by the owner."""
    blob_id = complete_upload(w)
    assert w.post_message(attachments=[blob_id]).status_code == 201
    return blob_id


def blob(w: World, blob_id: str, token, **kw):
    return w.inbox("GET", f"/blobs/{blob_id}", token, **kw)


def upload_with_puzzle(fields: Callable[[World], dict]) -> Callable[[World], object]:
    def send(w: World):
        accepting(w)
        return start_upload(w, **fields(w))

    return send


def wrong_upload_solution(w: World) -> dict:
    response = w.inbox("POST", f"{UPLOADS}/puzzle", json={"length": BLOB_LENGTH}).get_json()
    counter = next(
        c for c in range(1000) if not meets(response["puzzle"], c, response["difficulty"])
    )
    return {"puzzle": response["puzzle"], "solution": counter}


def expired_upload_puzzle(w: World) -> dict:
    fields = upload_puzzle(w)
    w.later(601)
    return fields


def upload_puzzle_twice(w: World):
    accepting(w)
    fields = upload_puzzle(w)
    start_upload(w, **fields)
    return start_upload(w, **fields)


def stale_upload_puzzle(w: World):
    accepting(w)
    ask = lambda: w.inbox("POST", f"{UPLOADS}/puzzle", json={"length": BLOB_LENGTH}).get_json()  # noqa: E731
    return start_upload(w, **stale_puzzles(w, ask)[0])


def blob_id_twice(w: World):
    blob_id, _ = started(w)
    return start_upload(w, blob_id)


def over_the_attachment_quota(w: World):
    accepting(w)
    return start_upload(w, length=BIG_BLOB)


def expired_capability(w: World, request: Callable[[World, str, str], object]):
    blob_id, capability = started(w)
    w.later(w.app.config["SECRETLINK"].attachment_upload_ttl + 5)
    return request(w, blob_id, capability)


def abandoned_upload(w: World, request: Callable[[World, str, str], object]):
    blob_id, capability = started(w)
    storage = w.app.extensions["secretlink.storage"]
    with storage.engine.begin() as connection:
        connection.exec_driver_sql("DELETE FROM blobs")
    return request(w, blob_id, capability)


def another_upload_s_capability(w: World, request: Callable[[World, str, str], object]):
    blob_id, _ = started(w)
    _, other = started(w)
    return request(w, blob_id, other)


def capability_probes(operation: str, request: Callable[[World, str, str], object]) -> list:
    return [
        Probe(operation, 401, "capability_required", lambda w: request(w, started(w)[0], None)),
        Probe(operation, 401, "bad_capability", lambda w: request(w, started(w)[0], "forged")),
        Probe(operation, 401, "upload_expired", lambda w: expired_capability(w, request)),
        Probe(operation, 403, "wrong_upload", lambda w: another_upload_s_capability(w, request)),
        Probe(operation, 404, "unknown_blob", lambda w: abandoned_upload(w, request)),
    ]


def appended_then(w: World, offset: str, data: bytes = b"x"):
    blob_id, capability = started(w)
    assert append(w, blob_id, capability, data=b"x" * 10).status_code == 200
    return append(w, blob_id, capability, offset=offset, data=data)


def append_to_complete(w: World):
    blob_id, capability = started(w)
    append(w, blob_id, capability, data=bytes(BLOB_LENGTH))
    return append(w, blob_id, capability, offset=str(BLOB_LENGTH))


def message_with_blob(blob_id: Callable[[World], str]) -> Callable[[World], object]:
    return lambda w: w.post_message(attachments=[blob_id(w)])


def store_down(w: World) -> None:
    """From now on the blob store answers as an unreachable bucket does (the S3
    backend's own failures are tested against a real S3 server: test_blobs_s3.py)."""

    def unreachable(*args, **kwargs):
        raise StorageUnavailable("writing to s3://probe failed: Could not connect")

    for name in ("store", "exists", "open"):
        w.monkeypatch.setattr(DirectoryBackend, name, unreachable)


def completed_while_store_down(w: World) -> tuple[str, str, object]:
    blob_id, capability = started(w)
    store_down(w)
    return blob_id, capability, append(w, blob_id, capability, data=bytes(BLOB_LENGTH))


def state_while_store_down(w: World):
    blob_id, capability, _ = completed_while_store_down(w)
    return upload_state(w, blob_id, capability)


def download_while_store_down(w: World):
    blob_id = sent_blob(w)
    store_down(w)
    return blob(w, blob_id, w.token)


def blob_sent_twice(w: World):
    blob_id = sent_blob(w)
    return w.post_message(attachments=[blob_id])


def unfinished_blob(w: World) -> str:
    return started(w)[0]


def too_many_blob_bytes(w: World):
    first, second = complete_upload(w, 4096), complete_upload(w, 4096)
    third = complete_upload(w, 16)
    return w.post_message(attachments=[first, second, third])


def puzzle_request(length: int = BLOB_LENGTH, **kw) -> Callable[[World], object]:
    return lambda w: w.inbox("POST", f"{UPLOADS}/puzzle", json={"length": length}, **kw)


def accepting_then(before: Callable[[World], None], request: Callable[[World], object]):
    """An inbox that takes attachments, then `before` (paused, moved...), then the request."""

    def send(w: World):
        accepting(w)
        before(w)
        return request(w)

    return send


def nothing(w: World) -> None:
    pass


def upload_probes() -> list[Probe]:
    probes = []
    for op, request in (
        ("upload_puzzle", puzzle_request()),
        ("start_upload", lambda w: start_upload(w)),
    ):
        path = f"{UPLOADS}/puzzle" if op == "upload_puzzle" else UPLOADS
        probes += [
            P(
                op,
                400,
                "bad_public_key",
                lambda w, p=path: w.inbox("POST", p, key=BAD_KEY, json={}),
            ),
            P(op, 400, "bad_json", lambda w, p=path: w.inbox("POST", p, json=[1])),
            P(
                op,
                400,
                "bad_length",
                lambda w, p=path: w.inbox("POST", p, json={"blob_id": "A" * 22, "length": 17}),
            ),
            P(op, 413, "too_large", lambda w, p=path: w.inbox("POST", p, **TOO_BIG)),
            P(
                op,
                413,
                "file_too_large",
                lambda w, p=path: w.inbox(
                    "POST", p, json={"blob_id": "A" * 22, "length": BIG_BLOB}
                ),
                SMALL_FILES,
            ),
            P(op, 415, "unsupported_media_type", lambda w, p=path: w.inbox("POST", p, **NOT_JSON)),
            P(
                op,
                404,
                "unknown_inbox",
                lambda w, p=path: w.inbox(
                    "POST", p, key=unknown_key(), json={"blob_id": "A" * 22, "length": 16}
                ),
            ),
            P(op, 403, "attachments_not_accepted", request),
            P(op, 403, "inbox_paused", accepting_then(pause, request)),
            P(op, 403, "inbox_moved", accepting_then(move, request)),
            P(op, 403, "inbox_disabled", accepting_then(disable, request)),
            P(op, 429, "rate_limited", twice(accepting_then(nothing, request)), CLIENT_LIMIT),
        ]
    probes += [
        P("upload_puzzle", 200, None, accepting_then(nothing, puzzle_request())),
        P("start_upload", 201, None, accepting_then(nothing, lambda w: start_upload(w))),
        P("start_upload", 201, None, upload_with_puzzle(upload_puzzle), POW),
        P("start_upload", 400, "bad_blob_id", lambda w: start_upload(w, "A" * 21 + "B")),
        P("start_upload", 400, "pow_required", upload_with_puzzle(lambda w: {}), POW),
        P(
            "start_upload",
            400,
            "bad_field",
            upload_with_puzzle(lambda w: {"puzzle": 1, "solution": 1}),
            POW,
        ),
        P(
            "start_upload",
            400,
            "bad_puzzle",
            upload_with_puzzle(lambda w: {"puzzle": "x", "solution": 1}),
            POW,
        ),
        P(
            "start_upload",
            400,
            "bad_puzzle",
            upload_with_puzzle(lambda w: upload_puzzle(w, 16)),
            POW,
        ),
        P("start_upload", 400, "puzzle_expired", upload_with_puzzle(expired_upload_puzzle), POW),
        P("start_upload", 400, "bad_solution", upload_with_puzzle(wrong_upload_solution), POW),
        P("start_upload", 400, "puzzle_used", upload_puzzle_twice, POW),
        P("start_upload", 400, "pow_stale", stale_upload_puzzle, POW),
        P("start_upload", 409, "blob_id_taken", blob_id_twice),
        P(
            "start_upload",
            409,
            "inbox_full",
            over_the_attachment_quota,
            {"inbox_max_attachment_bytes": 4096},
        ),
        P(
            "start_upload",
            507,
            "instance_full",
            over_the_attachment_quota,
            {"storage_budget_bytes": 4096},
        ),
    ]
    return probes


def state_request(w: World, blob_id: str, capability: str | None):
    return upload_state(w, blob_id, capability)


def append_request(w: World, blob_id: str, capability: str | None):
    return append(w, blob_id, capability)


ATTACHMENT_PROBES = [
    *upload_probes(),
    # GET .../uploads/{blob_id}
    P("show_upload", 200, None, lambda w: upload_state(w, *started(w))),
    P(
        "show_upload",
        400,
        "bad_public_key",
        lambda w: w.inbox("GET", f"{UPLOADS}/{'A' * 22}", "x", key=BAD_KEY),
    ),
    *capability_probes("show_upload", state_request),
    P("show_upload", 503, "storage_unavailable", state_while_store_down),
    # PATCH .../uploads/{blob_id}
    P("append_upload", 200, None, lambda w: append(w, *started(w))),
    P("append_upload", 400, "bad_public_key", lambda w: append(w, "A" * 22, "x", key=BAD_KEY)),
    *capability_probes("append_upload", append_request),
    P(
        "append_upload",
        415,
        "unsupported_media_type",
        lambda w: append(w, *started(w), content_type="text/plain"),
    ),
    P("append_upload", 400, "bad_offset", lambda w: append(w, *started(w), offset="-1")),
    P("append_upload", 409, "upload_complete", append_to_complete),
    P("append_upload", 503, "storage_unavailable", lambda w: completed_while_store_down(w)[2]),
    P("append_upload", 409, "offset_mismatch", lambda w: appended_then(w, "0")),
    P(
        "append_upload",
        413,
        "chunk_too_large",
        lambda w: append(w, *started(w, 4 << 20), data=bytes((1 << 20) + 1)),
    ),
    P(
        "append_upload",
        400,
        "too_long",
        lambda w: append(w, *started(w), data=bytes(BLOB_LENGTH + 1)),
    ),
    # GET .../blobs/{blob_id}
    P("download_blob", 200, None, lambda w: blob(w, sent_blob(w), w.token)),
    P(
        "download_blob",
        206,
        None,
        lambda w: blob(w, sent_blob(w), w.token, headers={"Range": "bytes=10-"}),
    ),
    P("download_blob", 400, "bad_public_key", lambda w: blob(w, "A" * 22, w.token, key=BAD_KEY)),
    P("download_blob", 401, "token_required", lambda w: blob(w, "A" * 22, None)),
    P("download_blob", 401, "bad_token", lambda w: blob(w, "A" * 22, "forged")),
    P("download_blob", 401, "token_expired", lambda w: blob(w, "A" * 22, w.expired_token())),
    P("download_blob", 403, "wrong_inbox", lambda w: blob(w, "A" * 22, w.other_token())),
    P("download_blob", 404, "unknown_blob", lambda w: blob(w, complete_upload(w), w.token)),
    P(
        "download_blob",
        416,
        "bad_range",
        lambda w: blob(w, sent_blob(w), w.token, headers={"Range": "bytes=5000-"}),
    ),
    P("download_blob", 503, "storage_unavailable", download_while_store_down),
    P(
        "download_blob",
        429,
        "rate_limited",
        twice(lambda w: blob(w, "A" * 22, w.token)),
        OWNER_READ_LIMIT,
    ),
    # POST .../messages with attachments
    P("post_message", 201, None, message_with_blob(complete_upload)),
    P("post_message", 404, "unknown_blob", lambda w: w.post_message(attachments=["A" * 22])),
    P("post_message", 409, "upload_incomplete", message_with_blob(unfinished_blob)),
    P("post_message", 409, "blob_used", blob_sent_twice),
    P("post_message", 413, "message_too_large", too_many_blob_bytes, SMALL_FILES),
    P("post_message", 400, "bad_field", lambda w: w.post_message(attachments="x")),
]
PROBES += ATTACHMENT_PROBES


# One handler (secretlink/web/errors.py) answers every server failure; one probe shows its shape.
SHARED_500 = {
    (op, 500, "internal_error") for op in OPERATIONS if op not in ("show_inbox", "healthz")
}


def assert_documented(operation_id: str, response) -> None:
    """The answer's status, media type, headers and body are what the document says."""
    path, method, operation = OPERATIONS[operation_id]
    status = str(response.status_code)
    assert status in operation["responses"], f"{operation_id}: undocumented {status}"
    definition = resolve(operation["responses"][status])
    content = definition.get("content")
    if content:
        assert response.mimetype in content
    else:
        assert response.data == b""
    for name, header in definition.get("headers", {}).items():
        header = resolve(header)
        if header.get("required"):
            assert name in response.headers, f"{operation_id} {status}: no {name} header"
        if name in response.headers:
            value = response.headers[name]
            schema = resolve(header["schema"])
            if schema.get("type") == "integer":
                value = int(value)
            jsonschema_rs.validate(schema, value)
    # The body against its schema (through schemathesis, which resolves the references).
    DOC_SCHEMA[path][method].validate_response(response)


@pytest.mark.parametrize("probe", PROBES, ids=[p.id for p in PROBES])
def test_documented_answer_is_real(probe, tmp_path, monkeypatch):
    settings = {"rate_limits_enabled": False, "pow_difficulty": 0, **probe.settings}
    app = create_app(Settings(data_dir=tmp_path, base_url=ORIGIN, **settings))
    try:
        response = probe.send(World(app, generate_keypair(), monkeypatch))
        body = response.get_json(silent=True)
        assert response.status_code == probe.status, body
        assert (body or {}).get("code") == probe.code, body
        assert_documented(probe.operation, response)
    finally:
        app.extensions["secretlink.storage"].engine.dispose()


def test_every_documented_answer_has_a_probe():
    documented = {
        (op_id, int(status), code)
        for op_id, (_, _, operation) in OPERATIONS.items()
        for status, response in operation["responses"].items()
        for code in documented_codes(response)
    }
    probed = {(p.operation, p.status, p.code) for p in PROBES}
    assert probed <= documented, sorted(probed - documented)
    assert documented - probed == SHARED_500, sorted(documented - probed - SHARED_500)


def test_validation_notices_an_undocumented_code(plain_app):
    """The checks above would fail on a code the document does not list."""
    response = plain_app.test_client().post(CHALLENGE, json={})
    operation = DOC_SCHEMA[CHALLENGE]["post"]
    assert operation.is_valid_response(response)
    response.set_data(json.dumps({"code": "made_up", "error": "bad_field"}))
    assert not operation.is_valid_response(response)


# ---- 3. schemathesis: fuzz every operation against the app, in-process ----

# Generated cases per operation in the fuzzing phase (schemathesis adds its examples
# and coverage phases on top). Operations without inputs run a handful of cases.
MAX_EXAMPLES = 150
MIN_TOTAL_CASES = 1000
# A message id in the generated requests that the test swaps for a message it has
# just posted, so that deleting and paging hit real messages too.
EXISTING_MESSAGE = "existing-message"
FUZZ_CHECKS = [
    core_checks.not_a_server_error,
    openapi_checks.status_code_conformance,
    openapi_checks.content_type_conformance,
    openapi_checks.response_schema_conformance,
    openapi_checks.response_headers_conformance,
    # Owner endpoints that answered with a token refuse the same request without one.
    openapi_checks.ignored_auth,
]


@dataclass
class FuzzTarget:
    app: Flask
    keypair: KeyPair
    token: str
    envelope: str
    cases: Counter = field(default_factory=Counter)

    @property
    def key(self) -> str:
        return self.keypair.public_key_text

    def fresh_message(self) -> str:
        storage = self.app.extensions["secretlink.storage"]
        return storage.add_message(self.key, b64decode(self.envelope))


# schemathesis builds one test per operation when the module is collected, from a
# schema whose configuration carries the inbox key and token, so the app exists from
# import on. (Its fixture-based loader, schemathesis.pytest.from_fixture, fails under
# pytest 9.2: it sets Node._nodeid, which pytest no longer has.)
_FUZZ_DATA = tempfile.TemporaryDirectory(prefix="secretlink-openapi-fuzz-")


def make_fuzz_target() -> FuzzTarget:
    app = create_app(
        Settings(
            data_dir=Path(_FUZZ_DATA.name),
            base_url=ORIGIN,
            rate_limits_enabled=False,
            pow_difficulty=0,
        )
    )
    keypair = generate_keypair()
    token = register(app.test_client(), keypair, "fuzz")
    return FuzzTarget(app, keypair, token, b64encode(seal("fuzz", keypair.public_key)))


FUZZ = make_fuzz_target()


def fuzz_schema(target: FuzzTarget):
    config = schemathesis.Config.from_dict(
        {
            "generation": {"mode": "all", "max-examples": MAX_EXAMPLES, "database": "none"},
            # The token goes with every request to an operation that declares bearerAuth.
            "auth": {"openapi": {"bearerAuth": {"bearer": target.token}}},
            # Known values mixed into the generated ones: the registered inbox (else
            # almost every key is refused or unknown), message ids, a valid envelope.
            "dictionaries": {
                "inbox": {"values": [target.key]},
                "message": {"values": [EXISTING_MESSAGE]},
                "envelope": {"values": [target.envelope]},
            },
            "parameters": {
                "path.public_key": {"dictionary": "inbox", "probability": 0.6},
                "path.message_id": {"dictionary": "message", "probability": 0.5},
                "query.before": {"dictionary": "message", "probability": 0.5},
                "body.ciphertext": {"dictionary": "envelope", "probability": 0.5},
            },
        }
    )
    schema = schemathesis.openapi.from_path(OPENAPI_FILE, config=config)
    # In-process WSGI calls. (Loaded from the file rather than from /api/v1/openapi.json,
    # schemathesis keeps the operation that serves the document in the run.)
    schema.app = target.app
    return schema


FUZZ_SCHEMA = fuzz_schema(FUZZ)


@pytest.fixture(scope="module", autouse=True)
def close_fuzz_target():
    yield
    FUZZ.app.extensions["secretlink.storage"].engine.dispose()


@FUZZ_SCHEMA.parametrize()
def test_fuzz(case):
    for container in (case.path_parameters, case.query):
        for name, value in (container or {}).items():
            if value == EXISTING_MESSAGE:
                container[name] = FUZZ.fresh_message()
    response = case.call()
    FUZZ.cases[case.operation.label] += 1
    case.validate_response(response, checks=FUZZ_CHECKS)
    if FUZZ.app.extensions["secretlink.storage"].get_inbox(FUZZ.key) is None:
        # A generated DELETE removed the registered inbox: bring it back for what follows.
        FUZZ.app.extensions["secretlink.storage"].save_inbox(FUZZ.key, "fuzz")


def test_fuzz_ran_enough_cases(capsys):
    if not FUZZ.cases:
        pytest.skip("test_fuzz did not run in this session")
    total = sum(FUZZ.cases.values())
    with capsys.disabled():
        print(f"\nschemathesis: {total} cases over {len(FUZZ.cases)} operations")
    assert set(FUZZ.cases) == {f"{m.upper()} {p}" for p, m, _ in OPERATIONS.values()}
    assert total >= MIN_TOTAL_CASES
