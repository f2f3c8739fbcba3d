"""`secretlink inbox create --qr`: the link and, below it, a QR code that scans to it."""

import zxingcpp
from PIL import Image
from test_cli import key_file, run  # noqa: F401 (a fixture)

from secretlink.client.qr import read_lines, terminal_lines

SCALE = 8  # pixels per module, so the decoder sees a photo-sized symbol


def decode(rows: list[list[bool]]) -> str:
    """Draw the modules black on white and read the QR code back."""
    image = Image.new("L", (len(rows[0]), len(rows)))
    image.putdata([0 if dark else 255 for row in rows for dark in row])
    image = image.resize((image.width * SCALE, image.height * SCALE), Image.Resampling.NEAREST)
    [result] = zxingcpp.read_barcodes(image, formats=zxingcpp.BarcodeFormat.QRCode)
    return result.text


def test_create_prints_a_qr_code_of_its_link(live_server, key_file):  # noqa: F811
    result = run("inbox", "create", "--server", live_server.url, "--key-file", key_file, "--qr")
    assert result.exit_code == 0, result.output
    link, *drawing = result.stdout.rstrip("\n").split("\n")
    assert link.startswith(live_server.url + "/to/")
    # Into a pipe: plain half blocks, no escape sequences, and the code says the link.
    assert "\x1b" not in result.stdout
    assert set("".join(drawing)) <= set("█▀▄ ")
    assert decode(read_lines(drawing, colour=False)) == link


def test_without_qr_only_the_link_is_printed(live_server, key_file):  # noqa: F811
    result = run("inbox", "create", "--server", live_server.url, "--key-file", key_file)
    assert result.exit_code == 0, result.output
    assert result.stdout.count("\n") == 1


def test_on_a_terminal_the_code_is_black_on_white():
    link = "https://secretlink.example/to/" + "A" * 43
    lines = terminal_lines(link, colour=True)
    assert all(line.startswith("\x1b[30;107m") and line.endswith("\x1b[0m") for line in lines)
    assert decode(read_lines(lines, colour=True)) == link
    # Both forms draw the same symbol, with its quiet zone of 4 modules all round.
    rows = read_lines(lines, colour=True)
    assert rows[: len(rows) - 1] == read_lines(terminal_lines(link, colour=False), False)[:-1]
    assert not any(rows[0]) and not any(row[0] or row[3] for row in rows)
