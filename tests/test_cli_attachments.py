"""`secretlink send --attach` and `secretlink inbox read --save-attachments` against a
real server on a real socket (small limits from the test settings), with the blobs in
the data directory and in an S3 bucket (moto's server on loopback)."""

import io
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import (
    BLOB_STORES,
    IN_CI,
    ROOT,
    blob_store_settings,
    serving_in_thread,
    stored_blob_names,
)
from jpeg_photos import assert_cleaned, photo_with_metadata

from secretlink.client.attachments import Progress, local_name, unique_names
from secretlink.client.cli import main
from secretlink.client.jpeg_metadata import JpegError, clean_jpeg, plan_pieces
from secretlink.crypto.attachments import CHUNK_SIZE
from secretlink.store.blob_backends import backend_for
from secretlink.store.blobs import blob_directory

MAX_FILE = 300_000


def run(*args: str, stdin: str | None = None):
    return CliRunner().invoke(main, list(args), input=stdin, catch_exceptions=False)


@pytest.fixture(params=BLOB_STORES)
def server(tmp_path, request):
    stores = blob_store_settings(request.param, request)
    with serving_in_thread(
        tmp_path / "live", attachment_max_file_bytes=MAX_FILE, **stores
    ) as served:
        yield served


@pytest.fixture
def link(server, key_file) -> str:
    result = run("inbox", "create", "--server", server.url, "--key-file", key_file)
    assert result.exit_code == 0, result.output
    return result.stdout.strip()


@pytest.fixture
def key_file(tmp_path, server) -> str:
    path = str(tmp_path / "inbox.key")
    assert run("keygen", "--key-file", path, "--server", server.url).exit_code == 0
    return path


@pytest.fixture
def accepting(link, key_file) -> str:
    result = run("inbox", "settings", "--key-file", key_file, "--attachments")
    assert result.exit_code == 0, result.output
    return link


def read(key_file: str, *options: str):
    return run("inbox", "read", "--key-file", key_file, *options)


def files(tmp_path, sizes: dict[str, int]) -> list[Path]:
    folder = tmp_path / "outgoing"
    folder.mkdir(exist_ok=True)
    made = []
    for name, size in sizes.items():
        path = folder / name
        path.write_bytes(os.urandom(size))
        made.append(path)
    return made


def blob_files(server, link: str) -> list[str]:
    """The inbox's partial uploads and blobs, wherever the server keeps them."""
    return stored_blob_names(server.app.config["SECRETLINK"], link.rsplit("/", 1)[1])


def tamper(server, link: str, blob_id: str, tmp_path: Path) -> None:
    """Flip one bit of a stored blob, wherever the server keeps it."""
    settings = server.app.config["SECRETLINK"]
    directory = blob_directory(settings.data_dir)
    backend = backend_for(settings.blob_store, directory, settings.s3_endpoint_url)
    public_key = link.rsplit("/", 1)[1]
    stored, _ = backend.open(public_key, blob_id)
    with stored:
        data = bytearray(stored.read())
    data[100] ^= 1
    changed = tmp_path / "tampered"
    changed.write_bytes(bytes(data))
    backend.store(public_key, blob_id, changed)


def test_two_files_go_and_come_back_byte_for_byte(accepting, key_file, tmp_path):
    # An empty file and one of exactly two chunks: the edge cases of SPEC 5.11.
    sent = files(tmp_path, {"empty.txt": 0, "two-chunks.bin": 2 * CHUNK_SIZE})
    result = run(
        "send", accepting, "see the files", "--attach", str(sent[0]), "--attach", str(sent[1])
    )
    assert result.exit_code == 0, result.output
    assert "sent with 2 files" in result.stderr
    saved = tmp_path / "saved"
    saved.mkdir()
    result = read(key_file, "--save-attachments", str(saved))
    assert result.exit_code == 0, result.output
    assert "see the files" in result.stdout
    assert "+ file empty.txt (0 bytes, text/plain) saved as" in result.stdout
    assert f"+ file two-chunks.bin ({2 * CHUNK_SIZE} bytes, application/octet-stream)" in (
        result.stdout
    )
    for path in sent:
        assert (saved / path.name).read_bytes() == path.read_bytes()
    assert sorted(p.name for p in saved.iterdir()) == ["empty.txt", "two-chunks.bin"]
    # Saved again: an existing file is never replaced.
    result = read(key_file, "--save-attachments", str(saved), "--json")
    assert result.exit_code == 0, result.output
    [message] = json.loads(result.stdout)
    assert [f["saved_as"] for f in message["attachments"]] == [
        str(saved / "empty-1.txt"),
        str(saved / "two-chunks-1.bin"),
    ]
    assert (saved / "two-chunks-1.bin").read_bytes() == sent[1].read_bytes()
    # No key in what is printed.
    assert set(message["attachments"][0]) == {"name", "media_type", "size", "saved_as"}


def test_without_a_folder_the_files_are_listed_not_saved(accepting, key_file, tmp_path):
    [path] = files(tmp_path, {"notes.txt": 10})
    assert run("send", accepting, "x", "--attach", str(path)).exit_code == 0
    result = read(key_file)
    assert result.exit_code == 0
    assert "+ file notes.txt (10 bytes, text/plain)" in result.stdout
    assert "--save-attachments DIR" in result.stderr


def test_a_tampered_blob_is_refused_and_leaves_nothing(accepting, key_file, tmp_path, server):
    sent = files(tmp_path, {"a.bin": 5000, "b.bin": 7000})
    args = ["send", accepting, "two", "--attach", str(sent[0]), "--attach", str(sent[1])]
    assert run(*args).exit_code == 0
    stored = blob_files(server, accepting)
    assert len(stored) == 2
    tamper(server, accepting, stored[0], tmp_path)
    saved = tmp_path / "saved"
    saved.mkdir()
    result = read(key_file, "--save-attachments", str(saved))
    assert result.exit_code == 1
    assert "damaged or tampered with" in result.stderr
    assert "NOT SAVED" in result.stdout
    assert "1 attached file could not be saved" in result.stderr
    # The intact file is saved; of the tampered one nothing, not even a partial file.
    assert len(list(saved.iterdir())) == 1
    [kept] = saved.iterdir()
    assert kept.read_bytes() in (sent[0].read_bytes(), sent[1].read_bytes())


def test_an_inbox_that_takes_no_files_is_refused_before_any_upload(
    link, key_file, tmp_path, server
):
    [path] = files(tmp_path, {"a.txt": 10})
    result = run("send", link, "x", "--attach", str(path))
    assert result.exit_code == 1
    assert "does not take attachments" in result.stderr
    assert blob_files(server, link) == []
    assert json.loads(read(key_file, "--json").stdout) == []


def test_a_file_over_the_limit_is_refused_before_any_upload(accepting, tmp_path, server):
    small, big = files(tmp_path, {"small.txt": 10, "big.bin": MAX_FILE + 50_000})
    result = run("send", accepting, "x", "--attach", str(small), "--attach", str(big))
    assert result.exit_code == 1
    assert f"at most {MAX_FILE} bytes" in result.stderr and "big.bin" in result.stderr
    assert blob_files(server, accepting) == []


def test_attach_does_not_go_with_reply(accepting, tmp_path):
    [path] = files(tmp_path, {"a.txt": 1})
    result = run("send", accepting, "x", "--reply", "--attach", str(path))
    assert result.exit_code == 2
    assert "--attach cannot go with --reply" in result.output


def test_names_are_saved_safely(accepting, key_file, tmp_path):
    # A bidirectional override would make "invoice\u202efdp.exe" look like a PDF.
    sent = files(tmp_path, {"invoice\u202efdp.exe": 3, ".profile": 4, "-rf": 5})
    args = ["send", accepting, "names"]
    for path in sent:
        args += ["--attach", str(path)]
    assert run(*args).exit_code == 0
    saved = tmp_path / "saved"
    saved.mkdir()
    result = read(key_file, "--save-attachments", str(saved))
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in saved.iterdir()) == ["_profile", "_rf", "invoice_fdp.exe"]
    # Shown escaped, never as the override itself.
    assert "\u202e" not in result.stdout and "\\u202e" in result.stdout


@pytest.mark.parametrize(
    ("name", "windows", "expected"),
    [
        ("report.pdf", False, "report.pdf"),
        ("a\u200bb", False, "a_b"),  # zero-width space
        ("...", False, "_.."),
        ("CON.txt", True, "_CON.txt"),
        ("lpt1", True, "_lpt1"),
        ('a<b>:c"d|e?f*g', True, "a_b__c_d_e_f_g"),
        ("trailing. . ", True, "trailing"),
        ("CON.txt", False, "CON.txt"),
        ("a:b", False, "a:b"),
    ],
)
def test_local_names(name, windows, expected):
    assert local_name(name, windows=windows) == expected


def test_unique_names_keep_the_extension():
    names = unique_names("a.tar.gz")
    assert [next(names) for _ in range(3)] == ["a.tar.gz", "a.tar-1.gz", "a.tar-2.gz"]
    names = unique_names("README")
    assert [next(names) for _ in range(2)] == ["README", "README-1"]


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_is_drawn_on_a_terminal_only():
    terminal = FakeTerminal()
    progress = Progress("big.bin", 4 << 20, stream=terminal)
    progress.update(1 << 20)
    progress.finish()
    assert "big.bin: 25% (1.0 of 4.0 MiB)" in terminal.getvalue()
    assert "big.bin: 100% (4.0 of 4.0 MiB)" in terminal.getvalue()
    pipe = io.StringIO()
    quiet = Progress("big.bin", 4 << 20, stream=pipe)
    quiet.update(1 << 20)
    quiet.finish()
    assert pipe.getvalue() == ""


def test_an_upload_goes_on_where_the_server_stopped(accepting, key_file, tmp_path, monkeypatch):
    """The answer to a piece is lost though the server has it, and a later piece is cut
    off: each time the client asks where the upload stands and goes on from there, so
    the file arrives whole, once."""
    from secretlink.client import attachments, http

    monkeypatch.setattr(attachments, "RETRY_PAUSE_SECONDS", 0)
    monkeypatch.setattr(attachments, "MAX_REQUEST_BYTES", 65536)  # several pieces
    real_call = http.Api.call
    trouble = []

    def flaky(self, method, path, **kwargs):
        offset = (kwargs.get("headers") or {}).get("Upload-Offset")
        if method == "PATCH" and offset == "65536" and "lost" not in trouble:
            trouble.append("lost")
            real_call(self, method, path, **kwargs)  # arrives; the answer does not
            raise http.ClientError("the connection dropped")
        if method == "PATCH" and offset == "196608" and "cut" not in trouble:
            trouble.append("cut")  # only half of the piece arrives
            kwargs["data"] = kwargs["data"][:1000]
            real_call(self, method, path, **kwargs)
            raise http.ClientError("the connection dropped")
        return real_call(self, method, path, **kwargs)

    monkeypatch.setattr(http.Api, "call", flaky)
    [path] = files(tmp_path, {"big.bin": MAX_FILE})
    result = run("send", accepting, "x", "--attach", str(path))
    assert result.exit_code == 0, result.output
    assert trouble == ["lost", "cut"]
    saved = tmp_path / "saved"
    saved.mkdir()
    assert read(key_file, "--save-attachments", str(saved)).exit_code == 0
    assert (saved / "big.bin").read_bytes() == path.read_bytes()


def test_a_file_that_changes_while_it_is_sent_is_not_sent(
    accepting, key_file, tmp_path, monkeypatch
):
    from secretlink.client import attachments

    [path] = files(tmp_path, {"growing.log": 5000})
    real_prepare = attachments.prepare

    def prepare_then_grow(paths, *options):
        prepared = real_prepare(paths, *options)
        with path.open("ab") as handle:
            handle.write(b"one more line")
        return prepared

    monkeypatch.setattr(attachments, "prepare", prepare_then_grow)
    result = run("send", accepting, "x", "--attach", str(path))
    assert result.exit_code == 1
    assert "changed while it was being sent" in result.stderr
    assert json.loads(read(key_file, "--json").stdout) == []


def test_a_text_too_long_beside_the_file_list_is_refused_before_uploading(
    accepting, tmp_path, server
):
    [path] = files(tmp_path, {"a.txt": 1})
    result = run("send", accepting, "x" * 65530, "--attach", str(path))
    assert result.exit_code == 1
    assert "do not fit in one message" in result.stderr
    assert blob_files(server, accepting) == []


@pytest.mark.parametrize("blob_store", BLOB_STORES)
def test_a_file_of_several_mib_through_secretlink_serve(tmp_path, request, blob_store):
    """The real stack (granian, the ASGI body policy, pieces of a whole MiB, a download
    longer than one MiB streamed in pieces) with the defaults' limits; with S3, also the
    bucket check at start and the copy of the last piece's blob to the bucket."""
    from test_serve import serving

    size = 3 * 1024 * 1024 + 12345
    env = {"SECRETLINK_POW_DIFFICULTY": "2"}
    for name, value in blob_store_settings(blob_store, request).items():
        env[f"SECRETLINK_{name.upper()}"] = value
    with serving(tmp_path, env=env) as served:
        path = str(tmp_path / "inbox.key")
        assert run("keygen", "--key-file", path, "--server", served.url).exit_code == 0
        link = run("inbox", "create", "--key-file", path).stdout.strip()
        assert run("inbox", "settings", "--key-file", path, "--attachments").exit_code == 0
        [big] = files(tmp_path, {"video.mp4": size})
        result = run("send", link, "", "--attach", str(big))
        assert result.exit_code == 0, result.output
        saved = tmp_path / "saved"
        saved.mkdir()
        result = read(path, "--save-attachments", str(saved))
        assert result.exit_code == 0, result.output
        assert (saved / "video.mp4").read_bytes() == big.read_bytes()
        assert f"+ file video.mp4 ({size} bytes, video/mp4)" in result.stdout
    if blob_store == "s3":  # the blob went to the bucket, not to the data directory
        stores = blob_store_settings(blob_store, request)
        bucket = backend_for(stores["blob_store"], tmp_path, stores["s3_endpoint_url"])
        assert len(bucket.names(link.rsplit("/", 1)[1])) == 1


# ---- --strip-metadata: JPEG photos without their location and camera data ----


def test_strip_metadata_cleans_jpeg_photos_only(accepting, key_file, tmp_path):
    photo = photo_with_metadata()
    folder = tmp_path / "outgoing"
    folder.mkdir()
    (folder / "photo.jpg").write_bytes(photo)
    (folder / "notes.txt").write_bytes(b"\xff\xd8 not a photo")
    result = run(
        "send", accepting, "x", "--strip-metadata",
        "--attach", str(folder / "photo.jpg"), "--attach", str(folder / "notes.txt"),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    saved = tmp_path / "saved"
    saved.mkdir()
    assert read(key_file, "--save-attachments", str(saved)).exit_code == 0
    assert_cleaned((saved / "photo.jpg").read_bytes(), photo)
    assert (saved / "notes.txt").read_bytes() == b"\xff\xd8 not a photo"


def test_without_strip_metadata_a_photo_goes_byte_for_byte(accepting, key_file, tmp_path):
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(photo_with_metadata())
    assert run("send", accepting, "x", "--attach", str(photo)).exit_code == 0
    saved = tmp_path / "saved"
    saved.mkdir()
    assert read(key_file, "--save-attachments", str(saved)).exit_code == 0
    assert (saved / "photo.jpg").read_bytes() == photo.read_bytes()


def test_strip_metadata_refuses_a_damaged_jpeg_before_any_upload(accepting, tmp_path, server):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(photo_with_metadata()[:-300])
    result = run("send", accepting, "x", "--strip-metadata", "--attach", str(broken))
    assert result.exit_code == 1
    assert (
        "broken.jpg looks like a JPEG photo but is damaged (it ends inside its image data)"
        in result.stderr
    )
    assert "leave out --strip-metadata to send it as it is. Nothing was sent" in result.stderr
    assert blob_files(server, accepting) == []


def test_strip_metadata_goes_with_attach(accepting):
    result = run("send", accepting, "x", "--strip-metadata")
    assert result.exit_code == 2
    assert "--strip-metadata goes with --attach" in result.output


def js_clean(data: bytes, step: int | None = None) -> bytes | None:
    """What the sender page makes of `data`; None where it refuses the file. With
    `step`, the cleaned bytes are read `step` at a time, as in the page's parts."""
    node = shutil.which("node")
    if node is None:
        if IN_CI:
            pytest.fail("node is required to compare the page's JPEG cleaning with the CLI's")
        pytest.skip("node not installed")
    result = subprocess.run(
        [node, str(ROOT / "tests" / "js" / "jpeg_clean.mjs"), *([str(step)] if step else [])],
        input=data,
        capture_output=True,
        check=False,
        cwd=ROOT,
        env={**os.environ, "NODE_OPTIONS": ""},
    )
    if result.returncode == 2:
        assert json.loads(result.stderr) == {"error": "JpegError"}
        return None
    assert result.returncode == 0, result.stderr
    return result.stdout


def py_clean(data: bytes) -> bytes | None:
    handle = io.BytesIO(data)
    try:
        plan = clean_jpeg(handle, len(data))
    except JpegError:
        return None
    cleaned = b"".join(plan_pieces(handle, plan))
    assert len(cleaned) == plan.size
    return cleaned


@pytest.mark.parametrize(
    "make",
    [
        photo_with_metadata,
        lambda: photo_with_metadata(progressive=True),
        # A JFIF thumbnail (rewritten without it), an MPF image after EOI, fill bytes.
        lambda: (
            b"\xff\xd8\xff\xe0\x00\x13JFIF\x00\x01\x02\x01\x00H\x00H\x01\x01abc"
            + b"\xff\xff"
            + photo_with_metadata()[2:]
            + photo_with_metadata()
        ),
        lambda: photo_with_metadata()[:-300],  # refused by both
        lambda: photo_with_metadata()[:200],
    ],
    ids=["baseline", "progressive", "thumbnail-and-trailer", "cut-in-scan", "cut-in-header"],
)
def test_the_cli_and_the_page_clean_a_jpeg_to_the_same_bytes(make):
    data = make()
    cleaned = py_clean(data)
    assert js_clean(data) == cleaned
    # In parts, whose edges fall inside kept ranges and rewritten segments alike.
    assert js_clean(data, step=7) == js_clean(data, step=1000) == cleaned
    if cleaned is not None:
        assert_cleaned(cleaned, data)
