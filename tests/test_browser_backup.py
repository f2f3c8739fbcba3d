"""Passphrase-protected key backups in real Chromium: made in one browser, restored in
another (separate storage, like two devices), and exchanged with the CLI.

The live server gives new backups the smallest Argon2id cost readers accept (a test
setting, conftest.py); production's default is 64 MiB and 3 passes.
"""

import json
import os
from pathlib import Path

import pytest
import test_browser
from click.testing import CliRunner
from playwright.sync_api import expect
from test_browser import PageErrors, create_inbox_in_browser, new_page

from secretlink.client.cli import main
from secretlink.client.http import parse_link, send
from secretlink.crypto.protected_keyfile import MIN_MEMORY_KIB, MIN_PASSES, load_protected

pytestmark = pytest.mark.browser

PASSPHRASE = "seven purple kites at noon"


# The same Chromium fixtures as the main browser tests.
playwright_driver = test_browser.playwright_driver
browser = test_browser.browser
jitless_browser = test_browser.jitless_browser
page_errors = test_browser.page_errors


@pytest.fixture(autouse=True)
def small_argon2_cost(monkeypatch):
    """The CLI's new files get the smallest cost readers accept too."""
    monkeypatch.setenv("SECRETLINK_KEY_BACKUP_MEMORY_KIB", str(MIN_MEMORY_KIB))
    monkeypatch.setenv("SECRETLINK_KEY_BACKUP_PASSES", str(MIN_PASSES))


def cli(*args: str, passphrase: str | None = None):
    """The CLI, with `passphrase` handed over on a pipe (--passphrase-fd)."""
    read = None
    if passphrase is not None:
        read, write = os.pipe()
        os.write(write, passphrase.encode())
        os.close(write)
        args = (*args, "--passphrase-fd", str(read))
    try:
        return CliRunner().invoke(main, list(args), catch_exceptions=False)
    finally:
        if read is not None:
            os.close(read)


def open_panel(page) -> None:
    page.get_by_text("Back up or restore keys").click()


def make_backup(page, path: Path, everything: bool) -> None:
    open_panel(page)
    page.locator("#backup-estimate").filter(has_text="takes").wait_for()  # before any work
    scope = "Every inbox kept in this browser" if everything else "This inbox"
    # exact: the attachments setting's label also speaks of "this inbox's space"
    page.get_by_role("radio", name=scope, exact=True).check()
    page.get_by_label("Passphrase (at least 10 characters)").fill(PASSPHRASE)
    page.get_by_label("The same passphrase again").fill(PASSPHRASE)
    with page.expect_download() as download:
        page.get_by_role("button", name="Download backup").click()
    download.value.save_as(path)
    page.locator("#backup-status").filter(has_text="downloaded").wait_for()


def restore(page, passphrase: str) -> None:
    page.get_by_label("Passphrase of the backup").fill(passphrase)
    page.get_by_role("button", name="Restore").click()


def expect_messages(page, texts: list[str]) -> None:
    """The inbox shows exactly these texts, newest first (waits for the page to settle:
    opening an inbox redraws the list)."""
    expect(page.locator("ol.messages pre.text")).to_have_text(texts, timeout=20_000)


def test_backup_in_one_browser_restore_in_another(browser, live_server, page_errors, tmp_path):
    first = new_page(browser, page_errors)
    links = [
        create_inbox_in_browser(first, live_server.url, prompt="Tell me about the trip"),
        create_inbox_in_browser(first, live_server.url, prompt="Work feedback"),
    ]
    send(parse_link(links[0]), "the trip was too long")
    send(parse_link(links[0]), "a second thought")
    send(parse_link(links[1]), "more coffee please")

    first.goto(f"{live_server.url}/inbox#{links[0].rsplit('/', 1)[1]}")
    expect_messages(first, ["a second thought", "the trip was too long"])
    # The reading tools' state travels too: a read mark, a muted phrase.
    first.locator("ol.messages li", has_text="the trip").get_by_role(
        "button", name="Mark read"
    ).click()
    first.locator("#unread-count").filter(has_text="1 unread message.").wait_for()
    first.get_by_text("Muted words and phrases").click()
    first.get_by_label("Word or phrase to mute").fill("coffee")
    first.get_by_role("button", name="Mute", exact=True).click()
    first.locator("#muted-list .phrase", has_text="coffee").wait_for()
    backup = tmp_path / "backup.json"
    make_backup(first, backup, everything=True)
    document = json.loads(backup.read_text())
    assert document["format"] == "secretlink-protected-key"
    assert (document["memory_kib"], document["passes"]) == (MIN_MEMORY_KIB, MIN_PASSES)
    for link in links:  # nothing of the keys shows outside the ciphertext
        assert link.rsplit("/", 1)[1] not in backup.read_text()

    second = new_page(browser, page_errors)
    second.goto(live_server.url + "/inbox")
    second.locator("#no-inboxes").wait_for()  # a fresh browser: no keys yet
    open_panel(second)
    second.get_by_label("Backup file").set_input_files(str(backup))
    second.locator("#restore-estimate").filter(has_text="Opening it takes").wait_for()
    restore(second, "seven purple kites at midnight")
    second.locator("#backup-status").filter(has_text="Wrong passphrase").wait_for()
    assert second.locator("#inbox-list li").count() == 0

    restore(second, PASSPHRASE)
    second.locator("#backup-status").filter(has_text="2 inboxes restored").wait_for()
    # The state came along: each inbox is listed under its prompt, and reads its messages.
    second.locator("#inbox-list li", has_text="Tell me about the trip").get_by_role(
        "button"
    ).click()
    second.locator("ol.messages pre.text", has_text="a second thought").wait_for()
    expect_messages(second, ["a second thought", "the trip was too long"])
    second.locator("#unread-count").filter(has_text="1 unread message.").wait_for()
    read = second.locator("ol.messages li", has_text="the trip")
    expect(read.get_by_role("button", name="Mark unread")).to_be_visible()
    second.locator("#inbox-list li", has_text="Work feedback").get_by_role("button").click()
    # "coffee" is muted in the restored browser too: the message is folded.
    folded = second.locator("ol.messages li", has_text="Folded: contains the muted “coffee”")
    folded.wait_for()
    folded.get_by_role("button", name="Show anyway").click()
    expect_messages(second, ["more coffee please"])


def test_a_browser_backup_works_with_the_cli(browser, live_server, page_errors, tmp_path):
    page = new_page(browser, page_errors)
    link = create_inbox_in_browser(page, live_server.url)
    send(parse_link(link), "read me on the command line")
    page.goto(live_server.url + "/inbox")
    backup = tmp_path / "one.json"
    make_backup(page, backup, everything=False)

    opened = load_protected(backup.read_bytes(), PASSPHRASE)
    [inbox] = opened.inboxes
    assert link.endswith("/to/" + inbox.key_file.keypair.public_key_text)
    assert inbox.key_file.server == live_server.url

    result = cli("inbox", "read", "--key-file", str(backup), "--json", passphrase=PASSPHRASE)
    assert result.exit_code == 0, result.output
    assert [message["text"] for message in json.loads(result.stdout)] == [
        "read me on the command line"
    ]
    wrong = cli("inbox", "read", "--key-file", str(backup), passphrase="not the passphrase")
    assert wrong.exit_code == 1 and "wrong passphrase" in wrong.stderr


def test_a_cli_protected_key_file_opens_in_the_browser(browser, live_server, page_errors, tmp_path):
    path = tmp_path / "cli.key"
    made = cli("keygen", "--passphrase", "--key-file", str(path), passphrase=PASSPHRASE)
    assert made.exit_code == 0, made.output
    created = cli(
        "inbox", "create", "--server", live_server.url, "--key-file", str(path),
        passphrase=PASSPHRASE,
    )  # fmt: skip
    assert created.exit_code == 0, created.output
    send(parse_link(created.stdout.strip()), "made on the command line")

    page = new_page(browser, page_errors)
    page.goto(live_server.url + "/inbox")
    # The key-file field takes it too, and hands it to the backup panel.
    page.get_by_label("Open an inbox from a key file").set_input_files(str(path))
    page.locator("#backup-status").filter(has_text="passphrase-protected backup").wait_for()
    restore(page, "made on the command line?")
    page.locator("#backup-status").filter(has_text="Wrong passphrase").wait_for()
    restore(page, PASSPHRASE)
    page.locator("#backup-status").filter(has_text="1 inbox restored").wait_for()
    expect_messages(page, ["made on the command line"])


def test_a_malformed_backup_is_refused_before_any_passphrase(
    browser, live_server, page_errors, tmp_path
):
    path = tmp_path / "weak.json"
    vectors = json.loads(
        (Path(__file__).parent.parent / "crypto/vectors/protected_key.json").read_text()
    )
    case = next(c for c in vectors["cases"] if c["desc"].startswith("memory below the minimum"))
    path.write_text(case["file"])
    page = new_page(browser, page_errors)
    page.goto(live_server.url + "/inbox")
    open_panel(page)
    page.get_by_label("Backup file").set_input_files(str(path))
    page.locator("#backup-status").filter(has_text="not a backup this page can open").wait_for()
    assert "memory_kib" in page.locator("#backup-status").text_content()


def test_a_tampered_backup_worker_is_not_run(browser, live_server, tmp_path):
    """The worker gets the passphrase and the keys: it runs only if its bytes match the
    integrity hash in the page."""
    page = new_page(browser, PageErrors())  # the refused fetch is logged on purpose
    create_inbox_in_browser(page, live_server.url)
    page.route(
        "**/static/build/backup-worker.js*",
        lambda route: route.fulfill(
            status=200,
            content_type="text/javascript",
            body="self.onmessage = ({ data }) => fetch('/steal?' + data.passphrase);",
        ),
    )
    page.goto(live_server.url + "/inbox")
    open_panel(page)
    page.locator("#backup-estimate").filter(has_text="integrity check").wait_for()
    page.get_by_label("Passphrase (at least 10 characters)").fill(PASSPHRASE)
    page.get_by_label("The same passphrase again").fill(PASSPHRASE)
    page.get_by_role("button", name="Download backup").click()
    page.locator("#backup-status").filter(has_text="No backup was made").wait_for()
    assert "integrity check" in page.locator("#backup-status").text_content()


def test_restoring_without_a_jit(jitless_browser, live_server, page_errors, tmp_path):
    """Tor Browser's Safer level (no JIT, no WebAssembly): the pure-JS Argon2id runs, and
    the page says how long before it starts."""
    path = tmp_path / "cli.key"
    assert (
        cli("keygen", "--passphrase", "--key-file", str(path), passphrase=PASSPHRASE).exit_code == 0
    )
    created = cli(
        "inbox", "create", "--server", live_server.url, "--key-file", str(path),
        passphrase=PASSPHRASE,
    )  # fmt: skip
    send(parse_link(created.stdout.strip()), "read without a JIT")
    page = new_page(jitless_browser, page_errors)
    page.set_default_timeout(120_000)
    page.goto(live_server.url + "/inbox")
    open_panel(page)
    page.get_by_label("Backup file").set_input_files(str(path))
    estimate = page.locator("#restore-estimate").filter(has_text="Opening it takes")
    estimate.wait_for()
    restore(page, PASSPHRASE)
    page.locator("#backup-status").filter(has_text="1 inbox restored").wait_for()
    expect_messages(page, ["read without a JIT"])


def test_conversations_and_reply_keys_travel_in_a_backup(
    browser, live_server, page_errors, tmp_path
):
    from test_browser_conversation import reply_in_inbox, send_with_reply, thread_texts

    first = new_page(browser, page_errors)
    link = create_inbox_in_browser(first, live_server.url, prompt="Questions?")
    # This browser is both sides: it asked for a reply (keeping the reply key here)...
    send_with_reply(first, link, "Is the audit real?", keep_copy=True)
    # ...and answered in the inbox, which keeps the answer on this device only.
    first.goto(f"{live_server.url}/inbox#{link.rsplit('/', 1)[1]}")
    first.locator("article.conversation li.peer pre.text").first.wait_for()
    reply_in_inbox(first, "Yes, next week.")
    # The sender's message is marked read: its read mark travels with the inbox too.
    first.locator("article.conversation li.peer").get_by_role("button", name="Mark read").click()
    expect(first.locator("#unread-count")).to_have_text("All messages read.")
    backup = tmp_path / "backup.json"
    make_backup(first, backup, everything=True)

    second = new_page(browser, page_errors)
    second.goto(live_server.url + "/inbox")
    second.locator("#no-inboxes").wait_for()
    open_panel(second)
    second.get_by_label("Backup file").set_input_files(str(backup))
    restore(second, PASSPHRASE)
    second.locator("#backup-status").filter(has_text="restored").wait_for()
    second.goto(f"{live_server.url}/inbox#{link.rsplit('/', 1)[1]}")
    conversation = second.locator("article.conversation")
    conversation.locator("li.own pre.text").wait_for()  # the kept answer came along
    assert thread_texts(second, "article.conversation") == ["Is the audit real?", "Yes, next week."]
    expect(second.locator("#unread-count")).to_have_text("All messages read.")
    peer = conversation.locator("li.peer")
    expect(peer.get_by_role("button", name="Mark unread")).to_be_visible()
    expect(peer.locator(".badge")).to_be_hidden()
    # The reply key came along too: the reply page opens without the link.
    second.goto(live_server.url + "/reply")
    second.get_by_role("status").filter(has_text="1 answer").wait_for()
    assert thread_texts(second) == ["Is the audit real?", "Yes, next week."]
