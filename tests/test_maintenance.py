"""Retention purge and online backup, through the CLI a self-hoster runs."""

import sqlite3
from datetime import timedelta

from click.testing import CliRunner
from sqlalchemy import update

from secretlink import create_app
from secretlink.cli import main
from secretlink.crypto import b64encode, generate_keypair, seal
from secretlink.retention import purge
from secretlink.settings import Settings
from secretlink.storage import MessageRow, utcnow


def app_with_messages(tmp_path, count: int):
    from conftest import register

    app = create_app(Settings(data_dir=tmp_path, rate_limits_enabled=False, pow_difficulty=0))
    client, keypair = app.test_client(), generate_keypair()
    register(client, keypair)
    for i in range(count):
        client.post(
            f"/api/v1/inboxes/{keypair.public_key_text}/messages",
            json={"ciphertext": b64encode(seal(str(i), keypair.public_key))},
        )
    return app


def age_messages(app, days: int, how_many: int) -> None:
    storage = app.extensions["secretlink.storage"]
    with storage.engine.begin() as connection:
        oldest = connection.execute(
            MessageRow.__table__.select().order_by(MessageRow.seq).limit(how_many)
        ).fetchall()
        connection.execute(
            update(MessageRow)
            .where(MessageRow.seq.in_([row.seq for row in oldest]))
            .values(received_at=utcnow() - timedelta(days=days))
        )


def count(app) -> int:
    storage = app.extensions["secretlink.storage"]
    with storage.engine.connect() as connection:
        return len(connection.execute(MessageRow.__table__.select()).fetchall())


def test_purge_deletes_only_messages_past_retention(tmp_path):
    app = app_with_messages(tmp_path, 5)
    age_messages(app, days=91, how_many=2)
    result = purge(app.config["SECRETLINK"].database_url, retention_days=90)
    assert result.messages == 2 and count(app) == 3


def test_zero_retention_keeps_everything(tmp_path):
    app = app_with_messages(tmp_path, 3)
    age_messages(app, days=3650, how_many=3)
    assert purge(app.config["SECRETLINK"].database_url, retention_days=0).messages == 0
    assert count(app) == 3


def test_purge_command(tmp_path, monkeypatch):
    app = app_with_messages(tmp_path, 4)
    age_messages(app, days=40, how_many=1)
    monkeypatch.setenv("SECRETLINK_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("SECRETLINK_RETENTION_DAYS", "30")
    result = CliRunner().invoke(main, ["purge"])
    assert result.exit_code == 0 and "deleted 1 old messages" in result.stderr
    assert count(app) == 3


def test_backup_is_a_consistent_readable_copy(tmp_path, monkeypatch):
    app = app_with_messages(tmp_path / "live", 7)
    monkeypatch.setenv("SECRETLINK_DATA_DIR", str(tmp_path / "live"))
    target = tmp_path / "backup.sqlite3"
    result = CliRunner().invoke(main, ["backup", str(target)])
    assert result.exit_code == 0, result.stderr
    copy = sqlite3.connect(target)
    assert copy.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert copy.execute("SELECT count(*) FROM messages").fetchone() == (7,)
    copy.close()
    assert count(app) == 7
    again = CliRunner().invoke(main, ["backup", str(target)])
    assert again.exit_code == 1 and "refusing to overwrite" in again.stderr


def test_backup_of_postgres_points_to_pg_dump(tmp_path, monkeypatch):
    monkeypatch.setenv("SECRETLINK_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("SECRETLINK_DATABASE_URL", "postgresql+psycopg://nobody@127.0.0.1/none")
    result = CliRunner().invoke(main, ["backup", str(tmp_path / "x")])
    assert result.exit_code == 1 and "pg_dump" in result.stderr


def test_maintenance_on_a_folder_without_a_database_creates_nothing(tmp_path, monkeypatch):
    empty = tmp_path / "not-the-data-dir"
    monkeypatch.setenv("SECRETLINK_DATA_DIR", str(empty))
    for command in (["purge"], ["backup", str(tmp_path / "b.sqlite3")]):
        result = CliRunner().invoke(main, command)
        assert result.exit_code == 1 and "no secretlink database" in result.stderr
    assert not empty.exists()
