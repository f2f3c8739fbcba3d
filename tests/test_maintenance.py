"""Retention purge and online backup, through the CLI a self-hoster runs."""

import os
import sqlite3
import stat
import subprocess
import sys
from datetime import timedelta

import pytest
from alembic import command as alembic_command
from click.testing import CliRunner
from sqlalchemy import update

from secretlink import create_app
from secretlink.client.cli import main
from secretlink.crypto import b64encode, generate_keypair, seal
from secretlink.settings import Settings
from secretlink.store import migrate
from secretlink.store.database import make_engine
from secretlink.store.migrate import current_revision, head_revision
from secretlink.store.retention import purge
from secretlink.store.storage import MessageRow, Storage, utcnow

# Nothing listens on port 1; the password must never appear in a message.
UNREACHABLE_POSTGRES = "postgresql+psycopg://nobody:sekrit-pw@127.0.0.1:1/none"


def assert_one_line_failure(returncode: int, stderr: str, *fragments: str) -> None:
    assert returncode == 1, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr and "sekrit-pw" not in stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def serve_once(tmp_path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """`secretlink serve` that is expected to stop before the server starts."""
    from test_serve import free_port

    port = str(free_port())
    return subprocess.run(
        [sys.executable, "-m", "secretlink.client.cli", "serve", "--port", port, *args],
        env={**os.environ, "SECRETLINK_DATA_DIR": str(tmp_path / "data"), **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def app_with_messages(tmp_path, count: int):
    from conftest import register

    app = create_app(
        Settings(
            data_dir=tmp_path,
            base_url="http://localhost",
            rate_limits_enabled=False,
            pow_difficulty=0,
        )
    )
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


def test_backup_into_a_missing_folder_fails_cleanly(tmp_path, monkeypatch):
    app_with_messages(tmp_path / "live", 1)
    monkeypatch.setenv("SECRETLINK_DATA_DIR", str(tmp_path / "live"))
    result = CliRunner().invoke(main, ["backup", str(tmp_path / "absent" / "copy.sqlite3")])
    assert_one_line_failure(result.exit_code, result.stderr, "cannot write a backup", "absent")


def test_backup_of_a_damaged_database_fails_cleanly_and_leaves_nothing(tmp_path, monkeypatch):
    (tmp_path / "live").mkdir()
    (tmp_path / "live" / "secretlink.sqlite3").write_bytes(b"not a database" * 100)
    monkeypatch.setenv("SECRETLINK_DATA_DIR", str(tmp_path / "live"))
    (tmp_path / "out").mkdir()
    result = CliRunner().invoke(main, ["backup", str(tmp_path / "out" / "copy.sqlite3")])
    assert_one_line_failure(result.exit_code, result.stderr, "cannot copy the database")
    assert list((tmp_path / "out").iterdir()) == []


def test_backup_is_private_from_its_first_byte(tmp_path, monkeypatch):
    """The copy holds the database: no moment when others may open it."""
    app_with_messages(tmp_path / "live", 1)
    monkeypatch.setenv("SECRETLINK_DATA_DIR", str(tmp_path / "live"))
    modes = []
    real_connect = sqlite3.connect

    def connect(database, *args, **kwargs):
        connection = real_connect(database, *args, **kwargs)
        if not kwargs.get("uri"):  # the copy (the source is opened read-only by URI)
            modes.append(stat.S_IMODE(os.stat(database).st_mode))
        return connection

    monkeypatch.setattr(sqlite3, "connect", connect)
    old_umask = os.umask(0o022)
    try:
        result = CliRunner().invoke(main, ["backup", str(tmp_path / "copy.sqlite3")])
    finally:
        os.umask(old_umask)
    assert result.exit_code == 0, result.stderr
    assert modes == [0o600]
    assert stat.S_IMODE(os.stat(tmp_path / "copy.sqlite3").st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir() if "partial" in p.name] == []


# ---- schema upgrades through the CLI ----


def test_db_upgrade_makes_an_empty_database_current_and_then_does_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("SECRETLINK_DATA_DIR", str(tmp_path))
    url = f"sqlite:///{tmp_path / 'secretlink.sqlite3'}"
    first = CliRunner().invoke(main, ["db", "upgrade"])
    assert first.exit_code == 0, first.stderr
    assert first.stderr.strip() == f"database at {head_revision()} (was empty)"
    assert current_revision(url) == head_revision()
    storage = Storage.from_url(url)
    try:
        storage.save_inbox("k" * 43, "kept")
        second = CliRunner().invoke(main, ["db", "upgrade"])
        assert second.exit_code == 0, second.stderr
        assert second.stderr.strip() == f"database already at {head_revision()}; nothing to do"
        assert storage.get_inbox("k" * 43).prompt == "kept"
    finally:
        storage.engine.dispose()
    assert current_revision(url) == head_revision()


def database_at_first_revision(path) -> str:
    url = f"sqlite:///{path}"
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            alembic_command.upgrade(migrate.alembic_config(connection), "0001")
            connection.commit()
    finally:
        engine.dispose()
    assert current_revision(url) == "0001" != head_revision()
    return url


def test_without_auto_upgrade_serve_refuses_a_database_behind(tmp_path):
    url = database_at_first_revision(tmp_path / "behind.sqlite3")
    result = serve_once(
        tmp_path, env={"SECRETLINK_DATABASE_URL": url, "SECRETLINK_AUTO_UPGRADE": "false"}
    )
    assert_one_line_failure(
        result.returncode, result.stderr, "schema is at 0001", "secretlink db upgrade"
    )
    assert current_revision(url) == "0001"  # left for the operator to upgrade


def test_without_auto_upgrade_the_app_refuses_a_database_behind(tmp_path):
    """`flask run` or another WSGI server starts the app without `serve`'s master."""
    url = database_at_first_revision(tmp_path / "behind.sqlite3")
    settings = Settings(data_dir=tmp_path / "data", database_url=url, auto_upgrade=False)
    with pytest.raises(migrate.MigrationError, match="schema is at 0001"):
        create_app(settings)
    assert current_revision(url) == "0001"
    migrate.upgrade(url)
    app = create_app(settings)  # at head: starts
    assert app.test_client().get("/healthz").status_code == 200
    app.extensions["secretlink.storage"].engine.dispose()


def test_purge_refuses_a_database_behind(tmp_path, monkeypatch):
    url = database_at_first_revision(tmp_path / "behind.sqlite3")
    monkeypatch.setenv("SECRETLINK_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("SECRETLINK_DATABASE_URL", url)
    result = CliRunner().invoke(main, ["purge"])
    assert_one_line_failure(result.exit_code, result.stderr, "secretlink db upgrade")


# ---- database and TLS trouble: one line, before anything starts ----


@pytest.mark.parametrize("command_line", [["purge"], ["db", "upgrade"]])
@pytest.mark.parametrize(
    ("database_url", "expected"),
    [
        ("bogus://x", "SECRETLINK_DATABASE_URL is not valid"),
        (UNREACHABLE_POSTGRES, "cannot use the database postgresql+psycopg://nobody:***@"),
    ],
)
def test_database_trouble_is_one_line(tmp_path, monkeypatch, command_line, database_url, expected):
    monkeypatch.setenv("SECRETLINK_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("SECRETLINK_DATABASE_URL", database_url)
    result = CliRunner().invoke(main, command_line)
    assert_one_line_failure(result.exit_code, result.stderr, expected)


def pem_pair(tmp_path):
    from secretlink.ops.tls import self_signed

    (tmp_path / "pair").mkdir(exist_ok=True)
    return self_signed(tmp_path / "pair", ("localhost",))


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        ([], {"SECRETLINK_DATABASE_URL": "bogus://x"}, "SECRETLINK_DATABASE_URL is not valid"),
        ([], {"SECRETLINK_DATABASE_URL": UNREACHABLE_POSTGRES}, "cannot use the database"),
        (
            [],
            {"SECRETLINK_TLS_CERT": "/absent/cert.pem", "SECRETLINK_TLS_KEY": "/absent/key.pem"},
            "SECRETLINK_TLS_CERT (--tls-cert): there is no file /absent/cert.pem",
        ),
        (
            ["--tls-cert", "/absent/cert.pem", "--tls-key", "/absent/key.pem"],
            {},
            "SECRETLINK_TLS_CERT (--tls-cert): there is no file /absent/cert.pem",
        ),
        (["--tls-cert", "CERT", "--tls-key", "GARBAGE"], {}, "cannot use the certificate"),
        (["--tls-cert", "CERT"], {}, "SECRETLINK_TLS_CERT and SECRETLINK_TLS_KEY go together"),
    ],
)
def test_serve_stops_with_one_line_before_starting(tmp_path, args, env, expected):
    cert, _ = pem_pair(tmp_path)
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a key\n")
    args = [{"CERT": str(cert), "GARBAGE": str(garbage)}.get(arg, arg) for arg in args]
    result = serve_once(tmp_path, *args, env=env)
    assert_one_line_failure(result.returncode, result.stderr, expected)
    assert "Booting worker" not in result.stderr


def test_serve_remakes_a_damaged_self_signed_certificate(tmp_path):
    """--self-signed reuses its pair; a damaged one is made anew, not a traceback.

    Stopped right after by a database that is behind, before the server starts."""
    from secretlink.ops.tls import self_signed

    (tmp_path / "data").mkdir()
    cert, key = self_signed(tmp_path / "data", ("localhost", "127.0.0.1"))
    cert.write_text("-----BEGIN CERTIFICATE-----\ndamaged\n")
    url = database_at_first_revision(tmp_path / "behind.sqlite3")
    result = serve_once(
        tmp_path,
        "--self-signed",
        env={"SECRETLINK_DATABASE_URL": url, "SECRETLINK_AUTO_UPGRADE": "false"},
    )
    assert_one_line_failure(result.returncode, result.stderr, "secretlink db upgrade")
    from secretlink.ops.tls import check_pair

    check_pair(cert, key)
