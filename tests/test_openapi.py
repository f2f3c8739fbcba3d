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

import secretlink.health
from secretlink import create_app
from secretlink.app import MAX_REQUEST_BYTES
from secretlink.crypto import KeyPair, b64decode, b64encode, generate_keypair, seal
from secretlink.crypto.pow import meets, solve
from secretlink.crypto.proof import prove
from secretlink.settings import Settings

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
    codes = [
        resolve(part)["properties"]["code"]["const"]
        for part in alternatives
        if part.get("$ref") == "#/components/schemas/PowStale"
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

    w.monkeypatch.setattr(secretlink.health, "database_ok", explode)
    return w.send("GET", "/healthz")


def unreachable_database(w: World):
    w.monkeypatch.setattr(secretlink.health, "database_ok", lambda: False)
    return w.send("GET", "/healthz")


P = Probe
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
    # the document itself, and the health check
    P("openapi_document", 200, None, lambda w: w.send("GET", "/api/v1/openapi.json")),
    P("healthz", 200, None, lambda w: w.send("GET", "/healthz")),
    P("healthz", 503, None, unreachable_database),
    P("healthz", 500, None, failing_health_check),
]

# One handler (secretlink/errors.py) answers every server failure; one probe shows its shape.
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
