"""GET /healthz reports the database's state."""

from sqlalchemy import create_engine


def test_healthy(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok", "database": "ok"}


def test_database_unreachable_is_503(app, tmp_path):
    storage = app.extensions["secretlink.storage"]
    storage.engine = create_engine(f"sqlite:///{tmp_path}/missing-dir/none.sqlite3")
    response = app.test_client().get("/healthz")
    assert response.status_code == 503
    assert response.get_json() == {"status": "error", "database": "unreachable"}


def test_redis_is_reported_when_configured(tmp_path):
    from secretlink import create_app
    from secretlink.settings import Settings

    app = create_app(
        Settings(data_dir=tmp_path, base_url="http://localhost", redis_url="redis://127.0.0.1:1/0")
    )
    response = app.test_client().get("/healthz")
    assert response.status_code == 503
    assert response.get_json() == {"status": "error", "database": "ok", "redis": "unreachable"}
