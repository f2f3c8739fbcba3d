"""The bare Flask JSON POST that benchmarks/servers.py serves with each candidate server.

`app` is the WSGI app; `asgi_app` is the same app behind secretlink's body layer
(secretlink.ops.asgi), as `secretlink serve` runs its own; `asgi_app_a2wsgi` is the body
layer in front of a2wsgi's streaming WSGIMiddleware instead of secretlink.ops.asgi's own
buffered adapter.
"""

from a2wsgi import WSGIMiddleware
from flask import Flask, jsonify, request

from secretlink.ops.asgi import BodyPolicy, WholeBodyFirst, wsgi_as_asgi

app = Flask(__name__)


@app.post("/echo")
def echo():
    body = request.get_json()
    return jsonify(id="x" * 22, size=len(body.get("ciphertext", ""))), 201


@app.get("/healthz")
def healthz():
    return jsonify(status="ok")


POLICY = BodyPolicy(max_bytes=88_000, min_rate=1024, grace_seconds=10)
asgi_app = wsgi_as_asgi(app, 8, POLICY)
asgi_app_a2wsgi = WholeBodyFirst(WSGIMiddleware(app, workers=8), POLICY)
