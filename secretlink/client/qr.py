"""A QR code of an inbox link, drawn in the terminal with Unicode half blocks.

segno makes the symbol; each text line shows two rows of modules. On a terminal the
code is drawn black on white with ANSI colours, so it scans whatever the terminal's
own colours are; into a pipe or a file no escape sequences are written and the light
modules are the drawn ones, which suits the usual light-on-dark terminal.
"""

from collections.abc import Iterable, Iterator

import segno

QUIET_ZONE = 4  # modules of light margin that scanners need (ISO/IEC 18004)
# Half blocks by (top is dark, bottom is dark), the dark modules drawn.
DARK_DRAWN = {(True, True): "█", (True, False): "▀", (False, True): "▄", (False, False): " "}
# The same with the light modules drawn (for text without colours).
LIGHT_DRAWN = {(top, bottom): DARK_DRAWN[(not top, not bottom)] for top, bottom in DARK_DRAWN}
BLACK_ON_WHITE = "\x1b[30;107m"
RESET = "\x1b[0m"


def modules(text: str) -> list[list[bool]]:
    """The symbol for `text` with its quiet zone, one list of booleans per row (True
    is dark). Error correction M, as the web page draws it."""
    code = segno.make_qr(text, error="m", boost_error=False)
    return [[bool(bit) for bit in row] for row in code.matrix_iter(border=QUIET_ZONE)]


def _pairs(rows: list[list[bool]]) -> Iterator[tuple[list[bool], list[bool]]]:
    for y in range(0, len(rows), 2):
        bottom = rows[y + 1] if y + 1 < len(rows) else [False] * len(rows[y])
        yield rows[y], bottom


def terminal_lines(text: str, colour: bool) -> list[str]:
    """The QR code of `text` as lines of text (see the module docstring)."""
    blocks = DARK_DRAWN if colour else LIGHT_DRAWN
    lines = []
    for top, bottom in _pairs(modules(text)):
        line = "".join(blocks[pair] for pair in zip(top, bottom, strict=True))
        lines.append(f"{BLACK_ON_WHITE}{line}{RESET}" if colour else line)
    return lines


def read_lines(lines: Iterable[str], colour: bool) -> list[list[bool]]:
    """The modules drawn by `terminal_lines` (tests use it to decode what was printed)."""
    blocks = {char: pair for pair, char in (DARK_DRAWN if colour else LIGHT_DRAWN).items()}
    rows: list[list[bool]] = []
    for line in lines:
        if colour:
            line = line.removeprefix(BLACK_ON_WHITE).removesuffix(RESET)
        pairs = [blocks[char] for char in line]
        rows.append([top for top, _ in pairs])
        rows.append([bottom for _, bottom in pairs])
    return rows
