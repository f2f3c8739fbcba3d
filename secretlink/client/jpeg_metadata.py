"""Removing location and camera data from JPEG photos before they are encrypted
(`secretlink send --attach FILE --strip-metadata`).

The same rules as the sender page's webui/src/jpeg-metadata.js, which says why each
segment goes or stays (and why no package does this): a marker walker that never
decodes pixels. `clean_jpeg` walks the file once and returns a plan (the byte ranges
to keep and the few bytes written anew, and the size they add up to, which the
attachment entry needs before anything is sealed); `plan_pieces` reads the cleaned
file from the plan. Both hold at most one 1 MiB window and one 64 KiB segment.
tests/test_cli_attachments.py checks that both give the same bytes.
"""

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

WINDOW = 1 << 20
SOI, EOI, SOS, COM = 0xD8, 0xD9, 0xDA, 0xFE
APP0, APP1, APP2, APP14 = 0xE0, 0xE1, 0xE2, 0xEE
ORIENTATION_TAG = 0x0112
EXIF, JFIF, ICC, ADOBE = b"Exif\0\0", b"JFIF\0", b"ICC_PROFILE\0", b"Adobe"


class JpegError(Exception):
    """Not a well-formed JPEG stream: its metadata cannot be removed with certainty."""


@dataclass
class Plan:
    parts: list[tuple[int, int] | bytes]  # (start, end) of the file, or new bytes
    size: int


def is_jpeg(handle: BinaryIO) -> bool:
    """Whether the file begins as a JPEG does: SOI and the start of a marker."""
    handle.seek(0)
    return handle.read(3) == b"\xff\xd8\xff"


class _Window:
    def __init__(self, handle: BinaryIO, size: int) -> None:
        self.handle, self.size = handle, size
        self.start, self.data = 0, b""

    def slice(self, offset: int, length: int) -> bytes:
        if offset + length > self.size:
            raise JpegError("a segment runs past the end of the file")
        if not (self.start <= offset and offset + length <= self.start + len(self.data)):
            self.handle.seek(offset)
            self.start, self.data = offset, self.handle.read(max(length, WINDOW))
            if len(self.data) < length:
                raise JpegError("the file changed while it was being read")
        return self.data[offset - self.start : offset - self.start + length]

    def byte(self, offset: int) -> int:
        if offset >= self.size:
            raise JpegError("it ends in the middle of a segment")
        return self.slice(offset, 1)[0]

    def next_ff(self, offset: int) -> int:
        while offset < self.size:
            self.slice(offset, 1)
            found = self.data.find(b"\xff", offset - self.start)
            if found >= 0:
                return self.start + found
            offset = self.start + len(self.data)
        return -1


def exif_orientation(payload: bytes) -> int:
    """Exif's Orientation (1 to 8) from an APP1 payload, or 0."""
    if not payload.startswith(EXIF):
        return 0
    tiff = payload[len(EXIF) :]
    order = {b"II": "<", b"MM": ">"}.get(tiff[:2])
    if order is None or len(tiff) < 8 or struct.unpack(order + "H", tiff[2:4])[0] != 42:
        return 0
    ifd = struct.unpack(order + "I", tiff[4:8])[0]
    if ifd + 2 > len(tiff):
        return 0
    for i in range(struct.unpack(order + "H", tiff[ifd : ifd + 2])[0]):
        entry = ifd + 2 + 12 * i
        if entry + 12 > len(tiff):
            return 0
        tag, kind, count, value = struct.unpack(order + "HHIH", tiff[entry : entry + 10])
        if tag == ORIENTATION_TAG:
            return value if kind == 3 and count == 1 and 1 <= value <= 8 else 0
    return 0


def orientation_segment(orientation: int) -> bytes:
    """An APP1 segment whose Exif holds the Orientation only (big-endian, one IFD)."""
    tiff = b"MM" + struct.pack(">HIHHHIHHI", 42, 8, 1, ORIENTATION_TAG, 3, 1, orientation, 0, 0)
    return b"\xff\xe1" + struct.pack(">H", 2 + len(EXIF) + len(tiff)) + EXIF + tiff


def _judge(window: _Window, offset: int, marker: int, length: int) -> str | bytes:
    """ "keep", "drop", or the bytes that replace the segment."""
    if marker == COM:
        return "drop"
    if not APP0 <= marker <= 0xEF:
        return "keep"
    head = window.slice(offset + 4, min(length - 2, 16))
    if marker == APP0 and head.startswith(JFIF):
        if length < 16:
            raise JpegError("its JFIF segment is too short")
        if length == 16:
            return "keep"
        jfif = window.slice(offset, 16)  # the header without its thumbnail
        return jfif[:2] + b"\x00\x10" + jfif[4:] + b"\x00\x00"
    if marker == APP1 and head.startswith(EXIF):
        orientation = exif_orientation(window.slice(offset + 4, length - 2))
        return orientation_segment(orientation) if orientation > 1 else "drop"
    if (marker == APP2 and head.startswith(ICC)) or (marker == APP14 and head.startswith(ADOBE)):
        return "keep"
    return "drop"


def clean_jpeg(handle: BinaryIO, size: int) -> Plan:
    """The plan for a JPEG without its metadata; JpegError for a malformed stream."""
    window = _Window(handle, size)
    parts: list[tuple[int, int] | bytes] = []

    def keep(start: int, end: int) -> None:
        if parts and isinstance(parts[-1], tuple) and parts[-1][1] == start:
            parts[-1] = (parts[-1][0], end)
        else:
            parts.append((start, end))

    if size < 4 or window.slice(0, 2) != b"\xff\xd8":
        raise JpegError("it does not start as a JPEG does")
    keep(0, 2)
    offset, orientation_written = 2, False
    while True:
        if offset >= size:
            raise JpegError("it ends before its end-of-image marker")
        if window.byte(offset) != 0xFF:
            raise JpegError(f"no marker where one belongs (byte {offset})")
        while window.byte(offset + 1) == 0xFF:  # fill bytes
            offset += 1
        marker = window.byte(offset + 1)
        if marker == EOI:
            keep(offset, offset + 2)
            break  # whatever follows is not part of this image
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:
            keep(offset, offset + 2)
            offset += 2
            continue
        if marker in (0x00, SOI):
            raise JpegError(f"an unexpected marker at byte {offset}")
        (length,) = struct.unpack(">H", window.slice(offset + 2, 2))
        end = offset + 2 + length
        if length < 2 or end > size:
            raise JpegError(f"a segment runs past the end of the file (byte {offset})")
        verdict = _judge(window, offset, marker, length)
        if isinstance(verdict, bytes) and marker == APP1:
            verdict, orientation_written = ("drop" if orientation_written else verdict), True
        if verdict == "keep":
            keep(offset, end)
        elif isinstance(verdict, bytes):
            parts.append(verdict)
        offset = end
        if marker != SOS:
            continue
        scan_start = offset
        while True:  # scan data: FF 00 and restart markers belong to it
            ff = window.next_ff(offset)
            if ff < 0 or ff + 1 >= size:
                raise JpegError("it ends inside its image data")
            following = window.byte(ff + 1)
            if following == 0x00 or 0xD0 <= following <= 0xD7:
                offset = ff + 2
            elif following == 0xFF:
                offset = ff + 1
            else:
                offset = ff
                break
        if offset > scan_start:
            keep(scan_start, offset)
    cleaned = sum(len(p) if isinstance(p, bytes) else p[1] - p[0] for p in parts)
    return Plan(parts, cleaned)


def plan_pieces(handle: BinaryIO, plan: Plan) -> Iterator[bytes]:
    """The cleaned file, in pieces of at most 1 MiB, as the plan says."""
    for part in plan.parts:
        if isinstance(part, bytes):
            yield part
            continue
        start, end = part
        handle.seek(start)
        for offset in range(start, end, WINDOW):
            length = min(WINDOW, end - offset)
            piece = handle.read(length)
            if len(piece) != length:
                raise JpegError("the file changed while it was being sent")
            yield piece
