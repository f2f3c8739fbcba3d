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
        ("SECRETLINK_BASE_URL", "ftp://host"),
        ("SECRETLINK_BASE_URL", "https://host/sub/path"),
        ("SECRETLINK_SECRET_KEY", "short"),
        ("SECRETLINK_LOG_LEVEL", "LOUD"),
        ("SECRETLINK_RATE_LIMIT_CLIENT", "lots"),
        ("SECRETLINK_REDIS_URL", "http://localhost"),
        ("SECRETLINK_AUTO_UPGRADE", "maybe"),
        ("SECRETLINK_MAX_ENVELOPE_BYTES", "100000"),
        ("SECRETLINK_TLS_CERT", "/only/the/cert.pem"),
    ],
)
def test_bad_values_stop_start_up_with_the_variable_named(name, value):
    with pytest.raises(SettingsError, match=name):
        Settings.from_env({name: value})


def test_every_setting_is_documented():
    for item in fields(Settings):
        assert item.metadata["doc"].strip().endswith("."), item.name


def test_settings_document_is_up_to_date():
    """docs/SETTINGS.md is generated; regenerate it with `make docs` after a change."""
    document = Path(__file__).resolve().parent.parent / "docs" / "SETTINGS.md"
    assert document.read_text() == settings_document()
    for item in fields(Settings):
        assert f"`{env_name(item.name)}`" in document.read_text()
