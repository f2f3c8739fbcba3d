"""The benchmark instance: `secretlink serve`'s production stack, plus a baseline.

It is the same granian configuration, body layer and app as `secretlink serve`, with
one extra endpoint, POST /bench/echo, which parses a JSON body and answers 201 like
the message endpoint does but stores nothing: the trivial baseline the goals are
measured against (so the baseline is the chosen server answering a trivial POST).
Rate limits and the proof-of-work gate are off (the load comes from one address,
and the goals measure the service, not the puzzle), and so are the quota caps (a run
sends far more than one inbox holds); the usage counters are kept as always, so their
cost is measured.

    python -m benchmarks.bench_server PORT
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


def main() -> None:
    settings = replace(
        Settings.from_env(),
        port=int(sys.argv[1]),
        rate_limits_enabled=False,
        pow_difficulty=0,
        inbox_max_messages=0,
        inbox_max_bytes=0,
        storage_budget_bytes=0,
        log_level="WARNING",
    )
    run(prepare(settings), app_factory=bench_app)


if __name__ == "__main__":
    main()
