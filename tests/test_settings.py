"""Settings: read from the environment, validated, every one documented."""

import os
import stat
from dataclasses import fields
from pathlib import Path

import pytest

from secretlink.settings import Settings, SettingsError, env_name, settings_document


def test_defaults_put_everything_in_the_data_folder(tmp_path):
    settings = Settings.from_env({}).with_data_dir(tmp_path / "data")
    assert settings.database_url == f"sqlite:///{tmp_path / 'data' / 'secretlink.sqlite3'}"
    key_file = tmp_path / "data" / "secret_key"
    assert key_file.read_text().strip() == settings.secret_key
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600


def test_generated_secret_key_is_kept_across_starts(tmp_path):
    first = Settings().with_data_dir(tmp_path)
    second = Settings().with_data_dir(tmp_path)
    assert first.secret_key == second.secret_key and len(first.secret_key) >= 32


def test_environment_values_are_parsed(tmp_path):
    settings = Settings.from_env(
        {
            "SECRETLINK_DATA_DIR": str(tmp_path),
            "SECRETLINK_TOKEN_TTL": "120",
            "SECRETLINK_BASE_URL": "HTTPS://Secret.Example:443/",
            "SECRETLINK_LOG_LEVEL": "debug",
        }
    )
    assert settings.token_ttl == 120
    assert settings.base_url == "https://secret.example"
    assert settings.log_level == "DEBUG"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SECRETLINK_TOKEN_TTL", "soon"),
        ("SECRETLINK_TOKEN_TTL", "-5"),
        ("SECRETLINK_CHALLENGE_TTL", "3600"),
        ("SECRETLINK_POW_FRESH_SECONDS", "121"),  # may shorten the 120 s, never lengthen it
        ("SECRETLINK_MAX_INBOXES", "-1"),
        ("SECRETLINK_BASE_URL", "ftp://host"),
        ("SECRETLINK_BASE_URL", "https://host/sub/path"),
        ("SECRETLINK_SECRET_KEY", "short"),
        ("SECRETLINK_LOG_LEVEL", "LOUD"),
        ("SECRETLINK_RATE_LIMIT_CLIENT", "lots"),
        ("SECRETLINK_REDIS_URL", "http://localhost"),
        ("SECRETLINK_AUTO_UPGRADE", "maybe"),
        ("SECRETLINK_MAX_ENVELOPE_BYTES", "100000"),
        ("SECRETLINK_ATTACHMENT_MAX_FILE_BYTES", str((1 << 30) + 1)),  # 1 GiB at most
        ("SECRETLINK_ATTACHMENT_MAX_FILE_BYTES", "0"),
        # Not even one file of the largest size would fit in a message.
        ("SECRETLINK_ATTACHMENT_MAX_MESSAGE_BYTES", "1000"),
        ("SECRETLINK_ATTACHMENT_UPLOAD_TTL", "59"),
        ("SECRETLINK_INBOX_MAX_ATTACHMENT_BYTES", "-1"),
        ("SECRETLINK_TLS_CERT", "/only/the/cert.pem"),
        ("SECRETLINK_DATABASE_URL", "bogus://x"),
        ("SECRETLINK_DATABASE_URL", "not a url"),
        ("SECRETLINK_DATABASE_URL", "mysql://user@host/db"),
        ("SECRETLINK_DATABASE_URL", "postgresql+nosuchdriver://user@host/db"),
        ("SECRETLINK_DATABASE_URL", "postgresql+psycopg2://user@host/db"),  # not installed
        ("SECRETLINK_DATABASE_URL", "postgresql+psycopg://user@host:abc/db"),
        ("SECRETLINK_DATABASE_URL", "postgresql+psycopg://user@host:99999/db"),
        ("SECRETLINK_BLOB_STORE", "disk"),
        ("SECRETLINK_BLOB_STORE", "https://bucket.s3.example/blobs"),
        ("SECRETLINK_BLOB_STORE", "s3://Upper_Case"),
        ("SECRETLINK_BLOB_STORE", "s3://ab"),
        ("SECRETLINK_BLOB_STORE", "s3://bucket/a//b"),
        ("SECRETLINK_BLOB_STORE", "s3://bucket/../other"),
        ("SECRETLINK_BLOB_STORE", "s3://bucket/blobs?versionId=1"),
        ("SECRETLINK_S3_ENDPOINT_URL", "s3.example:9000"),
        ("SECRETLINK_S3_ENDPOINT_URL", "ftp://s3.example"),
        # An endpoint only goes with an s3:// store.
        ("SECRETLINK_S3_ENDPOINT_URL", "http://127.0.0.1:9000"),
    ],
)
def test_bad_values_stop_start_up_with_the_variable_named(name, value):
    with pytest.raises(SettingsError, match=name):
        Settings.from_env({name: value})


@pytest.mark.parametrize(
    "url",
    [
        "sqlite:////var/lib/secretlink/secretlink.sqlite3",
        "sqlite://",
        "postgresql://user@host/db",
        "postgresql+psycopg://user:pw@host:5432/db?sslmode=require",
    ],
)
def test_database_urls_that_can_work_are_accepted(url):
    # Checked without connecting: whether the server answers is found at start.
    assert Settings.from_env({"SECRETLINK_DATABASE_URL": url}).database_url == url


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SECRETLINK_DATABASE_URL", "mysql://user:sekrit-pw@host/db"),
        ("SECRETLINK_DATABASE_URL", "nonsense sekrit-pw"),
        ("SECRETLINK_REDIS_URL", "http://:sekrit-pw@host"),
        ("SECRETLINK_S3_ENDPOINT_URL", "https://AKIAKEY:sekrit-pw@s3.example"),
    ],
)
def test_errors_do_not_repeat_passwords(name, value):
    with pytest.raises(SettingsError, match=name) as raised:
        Settings.from_env({name: value})
    assert "sekrit-pw" not in str(raised.value)


@pytest.mark.parametrize(
    ("value", "stored"),
    [
        ("directory", "directory"),
        ("s3://secretlink-blobs", "s3://secretlink-blobs"),
        ("s3://secretlink-blobs/", "s3://secretlink-blobs"),
        ("s3://blobs.example.org/prod/secretlink/", "s3://blobs.example.org/prod/secretlink"),
    ],
)
def test_blob_stores_that_can_work_are_accepted(value, stored):
    # Checked without connecting: `secretlink serve` tries the bucket at start.
    environment = {"SECRETLINK_BLOB_STORE": value}
    if stored != "directory":
        environment["SECRETLINK_S3_ENDPOINT_URL"] = "http://127.0.0.1:9000"
    settings = Settings.from_env(environment)
    assert settings.blob_store == stored


def test_tls_files_must_exist(tmp_path):
    cert = tmp_path / "cert.pem"
    cert.write_text("present")
    for env, missing in [
        ({"SECRETLINK_TLS_CERT": str(tmp_path / "no-cert.pem")}, "SECRETLINK_TLS_CERT"),
        ({"SECRETLINK_TLS_CERT": str(cert)}, "SECRETLINK_TLS_KEY"),
    ]:
        env.setdefault("SECRETLINK_TLS_KEY", str(tmp_path / "no-key.pem"))
        with pytest.raises(SettingsError, match=f"{missing} .*there is no file"):
            Settings.from_env(env)


def test_an_unusable_data_folder_is_named(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(SettingsError, match="SECRETLINK_DATA_DIR"):
        Settings(data_dir=tmp_path / "file" / "data").with_data_dir(tmp_path)


# ---- TLS: an operator's own pair is tried before serving; ours is remade if damaged ----


def test_a_bad_certificate_pair_is_refused_clearly(tmp_path):
    from secretlink.ops.tls import TLSError, check_pair, self_signed

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    cert, key = self_signed(tmp_path / "a", ("localhost",))
    check_pair(cert, key)
    _, other_key = self_signed(tmp_path / "b", ("localhost",))
    with pytest.raises(TLSError, match="does not belong"):
        check_pair(cert, other_key)
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    with pytest.raises(TLSError, match="PEM certificate"):
        check_pair(garbage, key)
    with pytest.raises(TLSError, match="cannot read"):
        check_pair(tmp_path / "absent.pem", key)


@pytest.mark.parametrize(
    "damage",
    [
        lambda cert, key: cert.write_text("-----BEGIN CERTIFICATE-----\ntruncated"),
        lambda cert, key: cert.write_bytes(cert.read_bytes()[:200]),
        lambda cert, key: key.write_text("garbage"),
        lambda cert, key: cert.write_bytes(b""),
    ],
)
def test_a_damaged_self_signed_certificate_is_made_anew(tmp_path, damage):
    from secretlink.ops.tls import check_pair, self_signed

    cert, key = self_signed(tmp_path, ("localhost", "127.0.0.1"))
    damage(cert, key)
    assert self_signed(tmp_path, ("localhost", "127.0.0.1")) == (cert, key)
    check_pair(cert, key)


def test_a_self_signed_key_of_another_certificate_is_made_anew(tmp_path):
    from secretlink.ops.tls import check_pair, self_signed

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    cert, key = self_signed(tmp_path / "a", ("localhost",))
    _, other_key = self_signed(tmp_path / "b", ("localhost",))
    key.write_bytes(other_key.read_bytes())
    self_signed(tmp_path / "a", ("localhost",))
    check_pair(cert, key)


def test_an_intact_self_signed_certificate_is_kept(tmp_path):
    from secretlink.ops.tls import self_signed

    cert, _ = self_signed(tmp_path, ("localhost",))
    first = cert.read_bytes()
    self_signed(tmp_path, ("localhost",))
    assert cert.read_bytes() == first


def test_every_setting_is_documented():
    for item in fields(Settings):
        assert item.metadata["doc"].strip().endswith("."), item.name


def test_settings_document_is_up_to_date():
    """docs/SETTINGS.md is generated; regenerate it with `make docs` after a change."""
    document = Path(__file__).resolve().parent.parent / "docs" / "SETTINGS.md"
    assert document.read_text() == settings_document()
    for item in fields(Settings):
        assert f"`{env_name(item.name)}`" in document.read_text()
