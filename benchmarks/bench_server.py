"""The benchmark instance: `secretlink serve`'s production stack, plus a baseline.

It is the same granian configuration, body layer and app as `secretlink serve`, with
one extra endpoint, POST /bench/echo, which parses a JSON body and answers 201 like
the message endpoint does but stores nothing: the trivial baseline the goals are
measured against (so the baseline is the chosen server answering a trivial POST).
Settings come from the environment (benchmarks/common.py's `instance` sets them per
goal: the checks off where a goal measures something else, on where P1 measures
the submission path with all of them).

    python -m benchmarks.bench_server PORT

`wsgi()` is the same app for gunicorn, the server secretlink ran under before the
open-internet issue (P1 compares the two).
"""

import sys
from dataclasses import replace

from flask import Flask, jsonify, request

from secretlink.ops.server import prepare, run
from secretlink.settings import Settings
from secretlink.web.app import create_app


def bench_app(settings: Settings) -> Flask:
    app = create_app(settings)

    @app.post("/bench/echo")
    def echo():
        body = request.get_json()
        return jsonify(id="x" * 22, size=len(body.get("ciphertext", ""))), 201

    return app


def settings_from_env() -> Settings:
    return replace(Settings.from_env(), log_level="WARNING")


def wsgi() -> Flask:
    """For `gunicorn 'benchmarks.bench_server:wsgi()'` (each worker calls it)."""
    settings = prepare(settings_from_env())
    return bench_app(replace(settings, auto_upgrade=False))


def main() -> None:
    settings = replace(settings_from_env(), port=int(sys.argv[1]))
    run(prepare(settings), app_factory=bench_app)


if __name__ == "__main__":
    main()
