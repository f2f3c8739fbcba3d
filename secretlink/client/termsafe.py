"""Text from a sender or a server, made safe to print in a terminal.

A terminal obeys what it is sent: ESC and C1 sequences clear the screen, set the
window title, write the clipboard (OSC 52) or hide text (SGR 8); bidirectional
controls reorder what the eye reads; a newline followed by a copy of a header line
forges a second message. Everything the CLI prints that it did not write itself
goes through here:

- `field()` for one-line values (ids, times, links, prompts, error messages): every
  unsafe character, newline and tab included, is shown as a visible escape such as
  `\\x1b`, `\\n` or `\\u202e`.
- `body()` for a message's text: the same escapes except for newline and tab, and
  every row starts with `BODY_PREFIX`, which no header line starts with. On a
  terminal of known width the rows are wrapped by us, so that the terminal never
  wraps one and starts a row without the prefix.
- `dumps_json()` for `--json`: exact JSON whose unsafe characters are `\\u` escapes.

On a colour terminal the escapes are also shown in reverse video, which message
text cannot produce (its ESC is escaped), so a real escape can be told from a
sender typing a backslash.
"""

import json
import os
import re
import unicodedata
from dataclasses import dataclass
from typing import IO, Any

# Bidirectional formatting characters (Unicode's Bidi_Control property).
BIDI_CONTROLS = frozenset(
    "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
)
LINE_SEPARATORS = frozenset("\u2028\u2029")
SHORT_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}

BODY_PREFIX = "| "
# Reverse video on and off: what no sender's text can produce once its ESC is escaped.
HIGHLIGHT_ON, HIGHLIGHT_OFF = "\x1b[7m", "\x1b[27m"
# Below this many columns for text, wrapping would only make a message unreadable.
MIN_WRAP_COLUMNS = 8

UNSAFE_IN_JSON = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"
    "\u2028\u2029\ud800-\udfff]"
)


def is_unsafe(char: str) -> bool:
    """Whether a terminal could act on the character instead of just drawing it.

    C0 controls (newline and tab included), DEL, C1 controls, bidirectional controls,
    the Unicode line and paragraph separators, and lone surrogates (which a server's
    JSON can carry and which no encoder can print).
    """
    code = ord(char)
    return (
        code < 0x20
        or 0x7F <= code <= 0x9F
        or char in BIDI_CONTROLS
        or char in LINE_SEPARATORS
        or 0xD800 <= code <= 0xDFFF
    )


def escape_of(char: str) -> str:
    """The visible form of a character, as Python writes it: `\\n`, `\\x1b`, `\\u202e`,
    `\\U000e0001`."""
    if char in SHORT_ESCAPES:
        return SHORT_ESCAPES[char]
    code = ord(char)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


@dataclass(frozen=True)
class Terminal:
    """How to show text on one output stream.

    `highlight`: show escapes in reverse video. `columns`: wrap message rows to fit
    this width (None: do not wrap). `wide_ambiguous`: count East Asian "ambiguous"
    characters as two columns, as CJK terminals draw them.
    """

    highlight: bool = False
    columns: int | None = None
    wide_ambiguous: bool = False

    @classmethod
    def of(cls, stream: IO[str]) -> "Terminal":
        """What `stream` is: a terminal gets highlighting and wrapping; a pipe or file
        gets the same escapes and prefixes, without either."""
        try:
            if not stream.isatty():
                return cls()
            columns = os.get_terminal_size(stream.fileno()).columns
        except (AttributeError, ValueError, OSError):
            return cls()
        plain = os.environ.get("NO_COLOR") or os.environ.get("TERM", "") in ("", "dumb")
        return cls(not plain, columns or None, cjk_locale())


def cjk_locale() -> bool:
    locale = os.environ.get("LC_ALL") or os.environ.get("LC_CTYPE") or os.environ.get("LANG", "")
    return locale[:2].lower() in ("ja", "ko", "zh")


def _pieces(text: str, keep: str, terminal: Terminal) -> list[tuple[str, int]]:
    """The text as (what to print, columns it takes) pieces; unsafe characters not in
    `keep` become escapes, highlighted if the terminal allows."""
    pieces = []
    for char in text:
        if is_unsafe(char) and char not in keep:
            shown = escape_of(char)
            width = len(shown)
            if terminal.highlight:
                shown = HIGHLIGHT_ON + shown + HIGHLIGHT_OFF
            pieces.append((shown, width))
        else:
            pieces.append((char, columns_of(char, terminal.wide_ambiguous)))
    return pieces


def columns_of(char: str, wide_ambiguous: bool) -> int:
    """At most how many columns a terminal moves its cursor for `char`.

    An upper bound, not a guess: a row counted too wide only wraps early, one counted
    too narrow would let the terminal wrap it and start a row without the prefix.
    Combining marks count one (terminals draw them in zero or one), a tab eight,
    characters this Python's Unicode tables do not know two.
    """
    if " " <= char <= "~":
        return 1
    if char == "\t":
        return 8
    east_asian = unicodedata.east_asian_width(char)
    if east_asian in ("W", "F") or (east_asian == "A" and wide_ambiguous):
        return 2
    if unicodedata.category(char) in ("Cn", "Co"):
        return 2
    return 1


def field(value: object, terminal: Terminal = Terminal()) -> str:
    """A server- or sender-supplied value on one line, every unsafe character escaped."""
    return "".join(shown for shown, _ in _pieces(str(value), "", terminal))


def body(text: str, terminal: Terminal = Terminal()) -> list[str]:
    """A message's text as rows to print, each starting with BODY_PREFIX.

    Newlines end rows and tabs stay; everything else unsafe is escaped. On a terminal
    of known width, rows are wrapped one column short of it (a row filling the last
    column makes some terminals add a line of their own).
    """
    room = None
    if terminal.columns is not None:
        room = terminal.columns - 1 - len(BODY_PREFIX)
        if room < MIN_WRAP_COLUMNS:
            room = None
    rows = []
    for line in text.split("\n"):
        rows += _wrapped(_pieces(line, "\t", terminal), room)
    return [BODY_PREFIX + row if row else BODY_PREFIX.rstrip() for row in rows]


def _wrapped(pieces: list[tuple[str, int]], room: int | None) -> list[str]:
    if room is None:
        return ["".join(shown for shown, _ in pieces)]
    rows: list[str] = []
    row: list[str] = []
    used = 0
    for shown, width in pieces:
        if used + width > room and row:
            rows.append("".join(row))
            row, used = [], 0
        row.append(shown)
        used += width
    rows.append("".join(row))
    return rows


def dumps_json(data: Any) -> str:
    """JSON of `data`, indented, exactly as the values are (json.loads gives them back),
    with every unsafe character written as a `\\u` escape."""
    text = json.dumps(data, ensure_ascii=False, indent=2)
    # Outside strings json.dumps writes only newlines and spaces, which are not matched:
    # every match is inside a string, where a \\u escape of four hex digits means the
    # same character.
    return UNSAFE_IN_JSON.sub(lambda match: f"\\u{ord(match.group()):04x}", text)
