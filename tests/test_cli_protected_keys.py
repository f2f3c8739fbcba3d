"""Passphrase-protected key files in the CLI: keygen --passphrase, key protect and
unprotect, and every --key-file command reading them."""

import json
import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from operator import attrgetter
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from secretlink.client import protected_keys
from secretlink.client.cli import main
from secretlink.crypto.keyfile import load_key_file
from secretlink.crypto.protected_keyfile import MIN_MEMORY_KIB, MIN_PASSES, load_protected

ROOT = Path(__file__).resolve().parent.parent
PASSPHRASE = "orange tractor whispers loudly"
VECTORS = json.loads((ROOT / "crypto" / "vectors" / "protected_key.json").read_text("utf-8"))


@pytest.fixture(autouse=True)
def small_argon2_cost(monkeypatch):
    """New files get the smallest cost readers accept: the tests' setting, not a default."""
    monkeypatch.setenv("SECRETLINK_KEY_BACKUP_MEMORY_KIB", str(MIN_MEMORY_KIB))
    monkeypatch.setenv("SECRETLINK_KEY_BACKUP_PASSES", str(MIN_PASSES))


@pytest.fixture
def no_prompt(monkeypatch):
    def refuse(prompt: str = "") -> str:
        raise AssertionError(f"asked for a passphrase: {prompt}")

    monkeypatch.setattr(protected_keys, "getpass", refuse)


@pytest.fixture
def typed(monkeypatch) -> Iterator[list[str]]:
    """What the user types at each passphrase prompt, in order."""
    answers: list[str] = []

    def fake_getpass(prompt: str = "") -> str:
        assert answers, f"asked once more than expected: {prompt}"
        return answers.pop(0)

    monkeypatch.setattr(protected_keys, "getpass", fake_getpass)
    yield answers
    assert not answers, "not every typed passphrase was asked for"


class PassphraseFds:
    """Pipes holding a passphrase, as a script would hand one over; closed afterwards."""

    def __init__(self):
        self.fds: list[int] = []

    def __call__(self, text: str) -> str:
        read, write = os.pipe()
        os.write(write, text.encode("utf-8"))
        os.close(write)
        self.fds.append(read)
        return str(read)


@pytest.fixture
def fd() -> Iterator[PassphraseFds]:
    fds = PassphraseFds()
    yield fds
    for number in fds.fds:
        os.close(number)


def run(*args: str, stdin: str | None = None):
    return CliRunner().invoke(main, list(args), input=stdin, catch_exceptions=False)


def assert_fails_cleanly(result, *fragments: str):
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[-1], lines[-1]


@pytest.fixture
def protected_key(tmp_path, fd) -> Path:
    path = tmp_path / "inbox.key"
    result = run(
        "keygen", "--passphrase", "--passphrase-fd", fd(PASSPHRASE + "\n"), "--key-file", str(path)
    )
    assert result.exit_code == 0, result.output
    return path


def test_keygen_with_a_passphrase_writes_a_protected_private_file(protected_key):
    assert stat.S_IMODE(os.stat(protected_key).st_mode) == 0o600
    document = json.loads(protected_key.read_text())
    assert document["format"] == "secretlink-protected-key"
    assert (document["memory_kib"], document["passes"]) == (MIN_MEMORY_KIB, MIN_PASSES)
    key_file = load_protected(protected_key.read_bytes(), PASSPHRASE)
    # Nothing of the key shows outside the ciphertext, not even its public half.
    assert key_file.keypair.public_key_text not in protected_key.read_text()


def test_keygen_asks_twice_and_writes_nothing_when_they_differ(tmp_path, typed):
    path = tmp_path / "k.json"
    typed += [PASSPHRASE, PASSPHRASE + "x"]
    assert_fails_cleanly(run("keygen", "--passphrase", "--key-file", str(path)), "differ")
    assert not path.exists()
    typed += [PASSPHRASE, PASSPHRASE]
    result = run("keygen", "--passphrase", "--key-file", str(path))
    assert result.exit_code == 0, result.output
    opened = load_protected(path.read_bytes(), PASSPHRASE)
    assert opened.keypair.public_key_text == result.stdout.strip()


def test_keygen_refuses_a_short_passphrase(tmp_path, fd):
    path = tmp_path / "k.json"
    result = run("keygen", "--passphrase", "--passphrase-fd", fd("short"), "--key-file", str(path))
    assert_fails_cleanly(result, "too short", "nothing was written")
    assert not path.exists()


def test_keygen_refuses_to_overwrite_before_asking(protected_key, no_prompt):
    before = protected_key.read_bytes()
    result = run("keygen", "--passphrase", "--key-file", str(protected_key))
    assert_fails_cleanly(result, "refusing to overwrite")
    assert protected_key.read_bytes() == before


def test_every_key_file_command_reads_a_protected_file(live_server, protected_key, fd):
    key = ["--key-file", str(protected_key)]
    server = ["--server", live_server.url]
    created = run("inbox", "create", *server, *key, "--passphrase-fd", fd(PASSPHRASE))
    assert created.exit_code == 0, created.output
    link = created.stdout.strip()
    assert run("send", link, "kept under a passphrase").exit_code == 0
    read = run("inbox", "read", *server, *key, "--json", "--passphrase-fd", fd(PASSPHRASE))
    assert read.exit_code == 0, read.output
    [message] = json.loads(read.stdout)
    assert message["text"] == "kept under a passphrase"
    deleted = run(
        "inbox", "delete", *server, *key, "--passphrase-fd", fd(PASSPHRASE), message["id"]
    )
    assert deleted.exit_code == 0, deleted.output
    read = run("inbox", "read", *server, *key, "--json", "--passphrase-fd", fd(PASSPHRASE))
    assert json.loads(read.stdout) == []


@dataclass
class World:
    """A registered inbox with a protected key file, and a conversation opened to it
    whose reply key file is protected too (same passphrase)."""

    server: str
    inbox_key: Path
    link: str
    reply_key: Path
    opener_id: str
    tmp_path: Path


@pytest.fixture
def world(live_server, protected_key, fd, tmp_path) -> World:
    key = ["--server", live_server.url, "--key-file", str(protected_key)]
    created = run("inbox", "create", *key, "--passphrase-fd", fd(PASSPHRASE))
    assert created.exit_code == 0, created.output
    link = created.stdout.strip()
    reply_key = tmp_path / "reply.key"
    opened = run("send", link, "--reply", "--key-out", str(reply_key), stdin="Can we talk?")
    assert opened.exit_code == 0, opened.output
    protected = run("key", "protect", str(reply_key), "--passphrase-fd", fd(PASSPHRASE))
    assert protected.exit_code == 0, protected.output
    read = run("inbox", "read", *key, "--json", "--passphrase-fd", fd(PASSPHRASE))
    assert read.exit_code == 0, read.output
    [opener] = json.loads(read.stdout)
    return World(live_server.url, protected_key, link, reply_key, opener["id"], tmp_path)


@dataclass
class Case:
    """One command that loads a key file: its arguments (without --passphrase-fd), the
    key file it loads, what it reads on standard input, and what a user sees it do."""

    args: Callable[[World], list[str]]
    key: Callable[[World], Path]
    succeeded: Callable[[World, object], bool]
    stdin: str | None = None


def with_inbox_key(w: World) -> list[str]:
    return ["--server", w.server, "--key-file", str(w.inbox_key)]


INBOX_KEY = attrgetter("inbox_key")
REPLY_KEY = attrgetter("reply_key")
KEY_FILE_COMMANDS = {
    "inbox create": Case(
        lambda w: ["inbox", "create", *with_inbox_key(w)],
        INBOX_KEY,
        lambda w, r: r.stdout.strip() == w.link,
    ),
    "inbox read": Case(
        lambda w: ["inbox", "read", *with_inbox_key(w), "--json"],
        INBOX_KEY,
        lambda w, r: [m["text"] for m in json.loads(r.stdout)] == ["Can we talk?"],
    ),
    "inbox delete": Case(
        lambda w: ["inbox", "delete", *with_inbox_key(w), w.opener_id],
        INBOX_KEY,
        lambda w, r: r.stderr.strip() == "deleted",
    ),
    "inbox settings": Case(
        lambda w: ["inbox", "settings", *with_inbox_key(w), "--pause"],
        INBOX_KEY,
        lambda w, r: "status: paused" in r.stdout.splitlines(),
    ),
    "inbox delete-all": Case(
        lambda w: ["inbox", "delete-all", *with_inbox_key(w), "--yes"],
        INBOX_KEY,
        lambda w, r: "deleted 1 messages" in r.stderr,
    ),
    "inbox rotate": Case(
        lambda w: ["inbox", "rotate", *with_inbox_key(w), "--new-key-file", str(w.tmp_path / "n")],
        INBOX_KEY,
        lambda w, r: r.stdout.startswith(f"{w.server}/to/") and r.stdout.strip() != w.link,
    ),
    "reply (recipient)": Case(
        lambda w: ["reply", *with_inbox_key(w), w.opener_id],
        INBOX_KEY,
        lambda w, r: "sent as your message #1" in r.stderr,
        stdin="Yes, we can.",
    ),
    "reply (sender)": Case(
        lambda w: ["reply", "--key-file", str(w.reply_key)],
        REPLY_KEY,
        lambda w, r: "sent as your message #2" in r.stderr,
        stdin="Thank you.",
    ),
    "replies": Case(
        lambda w: ["replies", str(w.reply_key), "--json"],
        REPLY_KEY,
        lambda w, r: json.loads(r.stdout)["you_sent"] == 1,
    ),
    "fingerprint": Case(
        lambda w: ["fingerprint", str(w.inbox_key)],
        INBOX_KEY,
        lambda w, r: r.stdout == run("fingerprint", w.link).stdout,
    ),
    "block": Case(
        lambda w: ["block", *with_inbox_key(w), w.opener_id],
        INBOX_KEY,
        lambda w, r: "deleted 1 of its messages" in r.stderr,
    ),
}


def test_every_command_that_loads_a_key_file_is_in_the_list():
    """A new command that reads --key-file is tested below; each takes --passphrase-fd."""
    commands = dict(walk(main))
    listed = {name.split(" (")[0] for name in KEY_FILE_COMMANDS}
    for name, command in commands.items():
        if "--key-file" in options_of(command) and name != "keygen":  # keygen writes one
            assert name in listed, name
    for name in listed:
        assert "--passphrase-fd" in options_of(commands[name]), name


def options_of(command: click.Command) -> set[str]:
    return {option for param in command.params for option in param.opts}


def walk(group: click.Group, prefix: str = "") -> Iterator[tuple[str, click.Command]]:
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield from walk(command, f"{prefix}{name} ")
        else:
            yield f"{prefix}{name}", command


@pytest.mark.parametrize("name", KEY_FILE_COMMANDS)
def test_each_key_file_command_takes_the_passphrase_from_a_descriptor(world, fd, name, no_prompt):
    case = KEY_FILE_COMMANDS[name]
    key_path = str(case.key(world))
    wrong = run(*case.args(world), "--passphrase-fd", fd("orange tractor whispers quietly"),
                stdin=case.stdin)  # fmt: skip
    assert_fails_cleanly(wrong, "wrong passphrase", key_path)
    assert len(wrong.stderr.strip().splitlines()) == 1
    assert not (world.tmp_path / "n").exists()  # `inbox rotate` made no key in vain
    # The right one works, and finds everything as it was: the wrong one changed nothing.
    right = run(*case.args(world), "--passphrase-fd", fd(PASSPHRASE), stdin=case.stdin)
    assert right.exit_code == 0, right.output
    assert case.succeeded(world, right), right.output


def test_the_prompt_is_used_without_a_descriptor(live_server, protected_key, typed):
    typed.append(PASSPHRASE)
    result = run("inbox", "create", "--server", live_server.url, "--key-file", str(protected_key))
    assert result.exit_code == 0, result.output


def test_a_wrong_passphrase_is_one_clear_error(live_server, protected_key, fd):
    result = run(
        "inbox", "read", "--server", live_server.url, "--key-file", str(protected_key),
        "--passphrase-fd", fd("orange tractor whispers quietly"),
    )  # fmt: skip
    assert_fails_cleanly(result, "wrong passphrase", str(protected_key))
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_malformed_file_is_refused_before_any_prompt(tmp_path, no_prompt):
    case = next(c for c in VECTORS["cases"] if c["desc"].startswith("memory below the minimum"))
    path = tmp_path / "weak.key"
    path.write_text(case["file"])
    result = run("inbox", "read", "--server", "http://127.0.0.1:9", "--key-file", str(path))
    assert_fails_cleanly(result, "memory_kib must be a whole number from 19456")


def test_protect_and_unprotect_in_place(tmp_path, fd, typed):
    path = tmp_path / "plain.key"
    assert run("keygen", "--key-file", str(path)).exit_code == 0
    plain = load_key_file(path.read_bytes())
    typed += [PASSPHRASE, PASSPHRASE]
    result = run("key", "protect", str(path))
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert load_protected(path.read_bytes(), PASSPHRASE) == plain
    assert_fails_cleanly(run("key", "protect", str(path)), "protected already")

    result = run("key", "unprotect", str(path), "--passphrase-fd", fd(PASSPHRASE))
    assert result.exit_code == 0, result.output
    assert "unprotected" in result.stderr
    assert load_key_file(path.read_bytes()) == plain
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert_fails_cleanly(run("key", "unprotect", str(path)), "not passphrase-protected")


def test_protect_to_another_file_keeps_the_original(tmp_path, fd):
    path, out = tmp_path / "plain.key", tmp_path / "protected.key"
    assert run("keygen", "--key-file", str(path)).exit_code == 0
    before = path.read_bytes()
    result = run("key", "protect", str(path), "--out", str(out), "--passphrase-fd", fd(PASSPHRASE))
    assert result.exit_code == 0, result.output
    assert path.read_bytes() == before
    assert load_protected(out.read_bytes(), PASSPHRASE) == load_key_file(before)
    again = run("key", "protect", str(path), "--out", str(out), "--passphrase-fd", fd(PASSPHRASE))
    assert_fails_cleanly(again, "refusing to overwrite")


def test_unprotect_with_a_wrong_passphrase_changes_nothing(protected_key, fd):
    before = protected_key.read_bytes()
    result = run(
        "key", "unprotect", str(protected_key), "--passphrase-fd", fd("not the passphrase")
    )
    assert_fails_cleanly(result, "wrong passphrase")
    assert protected_key.read_bytes() == before


def test_a_backup_of_several_inboxes(tmp_path, fd, live_server):
    """A browser's backup of every inbox: commands need one inbox taken out of it."""
    case = next(c for c in VECTORS["cases"] if c["desc"].startswith("a bundle of two inboxes"))
    backup = tmp_path / "backup.json"
    backup.write_text(case["file"])
    result = run(
        "inbox", "read", "--server", live_server.url, "--key-file", str(backup),
        "--passphrase-fd", fd(case["passphrase"]),
    )  # fmt: skip
    assert_fails_cleanly(result, "backup of 2 inboxes", case["inboxes"][0]["public_key"][:12])
    assert_fails_cleanly(
        run("key", "unprotect", str(backup), "--passphrase-fd", fd(case["passphrase"])),
        "--out NEW-FILE",
    )
    out = tmp_path / "second.key"
    wanted = case["inboxes"][1]["public_key"]
    result = run(
        "key", "unprotect", str(backup), "--inbox", wanted[:10], "--out", str(out),
        "--passphrase-fd", fd(case["passphrase"]),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    taken = load_key_file(out.read_bytes())
    assert taken.keypair.public_key_text == wanted
    assert taken.server == case["inboxes"][1]["server"]


def test_a_backup_of_one_inbox_works_as_its_key_file(tmp_path, fd, live_server):
    case = next(c for c in VECTORS["cases"] if c["desc"] == "a bundle of one inbox without state")
    backup = tmp_path / "backup.json"
    backup.write_text(case["file"])
    result = run(
        "inbox", "create", "--server", live_server.url, "--key-file", str(backup),
        "--passphrase-fd", fd(case["passphrase"]),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.stdout.strip().endswith("/to/" + case["inboxes"][0]["public_key"])


def test_conversation_commands_read_protected_files_too(tmp_path, protected_key, typed):
    """`fingerprint` (like reply and block) loads key files through the same loader."""
    plain = tmp_path / "plain.key"
    typed.append(PASSPHRASE)
    assert run("key", "unprotect", str(protected_key), "--out", str(plain)).exit_code == 0
    typed.append(PASSPHRASE)
    protected = run("fingerprint", str(protected_key))
    assert protected.exit_code == 0, protected.output
    assert protected.stdout == run("fingerprint", str(plain)).stdout


STRONGER = (MIN_MEMORY_KIB + 1024, MIN_PASSES + 1)
WEAKEST = (MIN_MEMORY_KIB, MIN_PASSES)


def set_writer_cost(monkeypatch, cost: tuple[int, int]) -> None:
    monkeypatch.setenv("SECRETLINK_KEY_BACKUP_MEMORY_KIB", str(cost[0]))
    monkeypatch.setenv("SECRETLINK_KEY_BACKUP_PASSES", str(cost[1]))


@pytest.mark.parametrize(
    ("old_cost", "configured_cost"),
    [(STRONGER, WEAKEST), (WEAKEST, STRONGER)],
    ids=["the old file's cost is kept", "the configured cost is the floor"],
)
def test_rotate_protects_the_new_key_as_the_old_one_was(
    live_server, tmp_path, fd, monkeypatch, no_prompt, old_cost, configured_cost
):
    old = tmp_path / "old.key"
    set_writer_cost(monkeypatch, old_cost)
    made = run("keygen", "--passphrase", "--passphrase-fd", fd(PASSPHRASE), "--key-file", str(old))
    assert made.exit_code == 0, made.output
    key = ["--server", live_server.url, "--key-file", str(old)]
    assert run("inbox", "create", *key, "--passphrase-fd", fd(PASSPHRASE)).exit_code == 0

    set_writer_cost(monkeypatch, configured_cost)
    new = tmp_path / "new.key"
    rotate = ["inbox", "rotate", *key, "--new-key-file", str(new)]
    result = run(*rotate, "--passphrase-fd", fd(PASSPHRASE))
    assert result.exit_code == 0, result.output
    assert f"the new key file is {new}, protected by a passphrase" in result.stderr
    assert stat.S_IMODE(os.stat(new).st_mode) == 0o600
    document = json.loads(new.read_text())
    assert document["format"] == "secretlink-protected-key"
    assert (document["memory_kib"], document["passes"]) == STRONGER
    new_key = load_protected(new.read_bytes(), PASSPHRASE)
    new_link = result.stdout.strip()
    assert new_link == f"{live_server.url}/to/{new_key.keypair.public_key_text}"
    assert new_key.keypair.public_key_text not in new.read_text()

    # The new inbox is read with the new file and the same passphrase.
    assert run("send", new_link, "to the new link").exit_code == 0
    read = run("inbox", "read", "--key-file", str(new), "--json", "--passphrase-fd", fd(PASSPHRASE))
    assert [message["text"] for message in json.loads(read.stdout)] == ["to the new link"]

    # Run again, as after an interruption: one passphrase opens both files.
    again = run(*rotate, "--passphrase-fd", fd(PASSPHRASE))
    assert again.exit_code == 0, again.output
    assert again.stdout.strip() == new_link


def test_rotate_asks_for_a_new_key_file_s_own_passphrase(
    live_server, protected_key, tmp_path, typed
):
    """A new key file protected otherwise (not by an earlier rotation) is asked for."""
    other = "a different passphrase entirely"
    new = tmp_path / "new.key"
    typed += [other, other]
    assert run("keygen", "--passphrase", "--key-file", str(new)).exit_code == 0
    key = ["--server", live_server.url, "--key-file", str(protected_key)]
    typed.append(PASSPHRASE)
    assert run("inbox", "create", *key).exit_code == 0
    typed += [PASSPHRASE, other]
    result = run("inbox", "rotate", *key, "--new-key-file", str(new))
    assert result.exit_code == 0, result.output
    new_key = load_protected(new.read_bytes(), other)  # kept as it was
    assert result.stdout.strip() == f"{live_server.url}/to/{new_key.keypair.public_key_text}"
