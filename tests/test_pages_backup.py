"""The inbox page's backup panel as served: its worker named by integrity, and the
Argon2id cost of new backups taken from the settings."""

import base64
import hashlib
import re
from dataclasses import replace

from secretlink.crypto.protected_keyfile import MIN_MEMORY_KIB, MIN_PASSES


def panel(client) -> str:
    page = client.get("/inbox").get_data(as_text=True)
    return re.search(r'<section\b[^>]*id="backup"[^>]*>', page).group(0)


def attribute(tag: str, name: str) -> str:
    return re.search(rf'{name}="([^"]+)"', tag).group(1)


def test_the_backup_worker_is_named_by_integrity(client):
    tag = panel(client)
    url = attribute(tag, "data-backup-worker")
    assert url.startswith("/static/build/backup-worker.js")
    worker = client.get(url)
    assert worker.status_code == 200
    digest = base64.b64encode(hashlib.sha384(worker.data).digest()).decode()
    assert attribute(tag, "data-backup-worker-integrity") == f"sha384-{digest}"


def test_new_backups_cost_64_mib_and_3_passes_by_default(client):
    tag = panel(client)
    assert (attribute(tag, "data-kdf-memory-kib"), attribute(tag, "data-kdf-passes")) == (
        "65536",
        "3",
    )


def test_the_cost_comes_from_the_settings(settings, make_app):
    lowered = replace(settings, key_backup_memory_kib=MIN_MEMORY_KIB, key_backup_passes=MIN_PASSES)
    tag = panel(make_app(lowered).test_client())
    assert attribute(tag, "data-kdf-memory-kib") == str(MIN_MEMORY_KIB)
    assert attribute(tag, "data-kdf-passes") == str(MIN_PASSES)
