"""GET /healthz: is the service up, and can it reach its database (and Redis)?"""

from flask import Blueprint, current_app, jsonify
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

bp = Blueprint("health", __name__)


def database_ok() -> bool:
    engine = current_app.extensions["secretlink.storage"].engine
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except SQLAlchemyError:
        return False
    return True


def redis_status() -> str | None:
    """None without Redis; "ok" or "unreachable" with it."""
    redis = current_app.extensions["secretlink.client_key"].redis
    if redis is None:
        return None
    from redis.exceptions import RedisError

    try:
        redis.ping()
    except RedisError:
        return "unreachable"
    return "ok"


@bp.get("/healthz")
def healthz():
    report = {"status": "ok", "database": "ok" if database_ok() else "unreachable"}
    redis = redis_status()
    if redis is not None:
        report["redis"] = redis
    if "unreachable" in report.values():
        current_app.logger.warning("health check failed: %s", report)
        report["status"] = "error"
        return jsonify(report), 503
    return jsonify(report)
