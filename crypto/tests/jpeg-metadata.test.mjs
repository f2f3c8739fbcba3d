// The sender page's JPEG metadata remover (webui/src/jpeg-metadata.js), on JPEG streams
// built here segment by segment; tests/test_browser_attachments.py sends real photos.
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  JpegError, cleanJpeg, exifOrientation, isJpeg, orientationSegment, planPieces,
} from "../../webui/src/jpeg-metadata.js";

const ascii = (text) => Uint8Array.from(text, (c) => c.charCodeAt(0));
const join = (...parts) => new Uint8Array(Buffer.concat(parts.map((p) => Buffer.from(p))));
const reader = (bytes) => async (offset, length) => bytes.slice(offset, offset + length);

// A marker segment: FF, marker, big-endian length (counting itself), payload.
function segment(marker, payload) {
  const length = payload.length + 2;
  return join([0xff, marker, length >> 8, length & 0xff], payload);
}

// TIFF with IFD0 holding Orientation and a GPS IFD pointer, as cameras write it.
function exifPayload(orientation, little = false) {
  const tiff = new DataView(new ArrayBuffer(8 + 2 + 24 + 4 + 2 + 12 + 4));
  tiff.setUint16(0, little ? 0x4949 : 0x4d4d);
  tiff.setUint16(2, 42, little);
  tiff.setUint32(4, 8, little);
  tiff.setUint16(8, 2, little);
  tiff.setUint16(10, 0x0112, little); // Orientation, SHORT, 1
  tiff.setUint16(12, 3, little);
  tiff.setUint32(14, 1, little);
  tiff.setUint16(18, orientation, little);
  tiff.setUint16(22, 0x8825, little); // GPSInfo IFD at 38
  tiff.setUint16(24, 4, little);
  tiff.setUint32(26, 1, little);
  tiff.setUint32(30, 38, little);
  tiff.setUint16(38, 1, little);
  tiff.setUint16(40, 0x0002, little); // GPSLatitude (the value's bytes are not needed here)
  return join(ascii("Exif\0\0"), new Uint8Array(tiff.buffer));
}

const SOI = [0xff, 0xd8];
const EOI = [0xff, 0xd9];
const JFIF = segment(0xe0, join(ascii("JFIF\0"), [1, 1, 0, 0, 72, 0, 72, 0, 0]));
const ICC = segment(0xe2, join(ascii("ICC_PROFILE\0"), [1, 1], ascii("profile bytes")));
const ADOBE = segment(0xee, join(ascii("Adobe"), [0, 100, 0, 0, 0, 0, 1]));
const DQT = segment(0xdb, new Uint8Array(65).fill(1));
const SOF0 = segment(0xc0, [8, 0, 16, 0, 16, 1, 1, 0x11, 0]);
const DHT = segment(0xc4, join([0], new Uint8Array(16).fill(0), []));
const SOS = segment(0xda, [1, 1, 0, 0, 63, 0]);
// Scan data with a stuffed 0xFF, a restart marker and fill bytes before the next marker.
const SCAN = Uint8Array.from([0x12, 0xff, 0x00, 0x34, 0xff, 0xd0, 0x56, 0xff, 0xff]);

const METADATA = [
  segment(0xe1, exifPayload(1)),
  segment(0xe1, join(ascii("http://ns.adobe.com/xap/1.0/\0"), ascii("<x:xmpmeta>Alice</x:xmpmeta>"))),
  segment(0xe2, join(ascii("MPF\0"), [0x4d, 0x4d, 0, 42])),
  segment(0xed, join(ascii("Photoshop 3.0\0"), ascii("8BIM IPTC city"))),
  segment(0xeb, ascii("JP\0\0jumb C2PA")),
  segment(0xfe, ascii("taken by Alice at home")),
  segment(0xe0, join(ascii("JFXX\0"), [0x10], ascii("thumbnail"))),
];

async function clean(bytes) {
  const plan = await cleanJpeg(reader(bytes), bytes.length);
  const pieces = [];
  for await (const piece of planPieces(reader(bytes), plan)) pieces.push(piece);
  const out = join(...pieces);
  assert.equal(out.length, plan.size, "the size the entry gets is the size encrypted");
  assert.equal(plan.removed, bytes.length - plan.size);
  return out;
}

test("jpeg: metadata segments, fill bytes and trailing images go; what decoders need stays", async () => {
  const photo = join(SOI, JFIF, METADATA[0], ICC, METADATA[1], METADATA[2], METADATA[3], ADOBE,
    METADATA[4], DQT, METADATA[5], SOF0, METADATA[6], DHT, SOS, SCAN, EOI, join(SOI, METADATA[0], EOI));
  const cleaned = await clean(photo);
  // The scan's trailing fill byte belongs to the scan; the one between segments goes.
  assert.deepEqual(cleaned, join(SOI, JFIF, ICC, ADOBE, DQT, SOF0, DHT, SOS, SCAN, EOI));
  assert.equal(Buffer.from(cleaned).indexOf("Alice"), -1);
  assert.equal(Buffer.from(cleaned).indexOf("Exif"), -1);
});

test("jpeg: fill bytes between segments go, the segments stay", async () => {
  const photo = join(SOI, [0xff, 0xff], DQT, [0xff], SOF0, SOS, SCAN, EOI);
  assert.deepEqual(await clean(photo), join(SOI, DQT, SOF0, SOS, SCAN, EOI));
});

test("jpeg: a progressive file keeps every scan and the tables between them", async () => {
  const photo = join(SOI, DQT, SOF0, DHT, SOS, SCAN, DHT, METADATA[5], SOS, SCAN, SOS, SCAN, EOI);
  assert.deepEqual(await clean(photo), join(SOI, DQT, SOF0, DHT, SOS, SCAN, DHT, SOS, SCAN, SOS, SCAN, EOI));
});

test("jpeg: a turned photo keeps only its Orientation, in a 36-byte Exif segment", async () => {
  for (const little of [false, true]) {
    const photo = join(SOI, segment(0xe1, exifPayload(6, little)), DQT, SOF0, SOS, SCAN, EOI);
    const cleaned = await clean(photo);
    assert.deepEqual(cleaned, join(SOI, orientationSegment(6), DQT, SOF0, SOS, SCAN, EOI));
    assert.equal(exifOrientation(cleaned.subarray(6, 2 + 36)), 6);
  }
  // A second Exif segment never adds a second Orientation.
  const twice = join(SOI, segment(0xe1, exifPayload(8)), segment(0xe1, exifPayload(3)), SOS, SCAN, EOI);
  assert.deepEqual(await clean(twice), join(SOI, orientationSegment(8), SOS, SCAN, EOI));
});

test("jpeg: a JFIF thumbnail goes, the JFIF header stays", async () => {
  const thumb = segment(0xe0, join(ascii("JFIF\0"), [1, 2, 1, 0, 96, 0, 96, 2, 1], new Uint8Array(6).fill(0xaa)));
  const cleaned = await clean(join(SOI, thumb, SOS, SCAN, EOI));
  assert.deepEqual(cleaned, join(SOI, segment(0xe0, join(ascii("JFIF\0"), [1, 2, 1, 0, 96, 0, 96, 0, 0])), SOS, SCAN, EOI));
});

test("jpeg: scan data across the 1 MiB read window is walked and kept byte for byte", async () => {
  const size = 2.5 * 1024 * 1024;
  const scan = new Uint8Array(size);
  for (let i = 0; i < size; i++) scan[i] = (i * 7919) % 251; // never 0xFF
  // Stuffed bytes and a restart marker straddling each window edge.
  const base = 2 + METADATA[5].length + SOS.length;
  for (const edge of [1024 * 1024, 2 * 1024 * 1024]) {
    scan.set([0xff, 0x00], edge - base - 1);
    scan.set([0xff, 0xd3], edge - base + 7);
  }
  const photo = join(SOI, METADATA[5], SOS, scan, EOI, ascii("motion photo video"));
  assert.deepEqual(await clean(photo), join(SOI, SOS, scan, EOI));
});

test("jpeg: only bytes starting FF D8 FF count as a JPEG", async () => {
  assert.equal(await isJpeg(reader(join(SOI, DQT))), true);
  assert.equal(await isJpeg(reader(ascii("\x89PNG\r\n\x1a\n"))), false);
  assert.equal(await isJpeg(reader(Uint8Array.from([0xff, 0xd8, 0x00, 0x01]))), false);
  assert.equal(await isJpeg(reader(Uint8Array.from([0xff, 0xd8]))), false);
});

const malformed = {
  "no end-of-image marker (cut short in the scan)": join(SOI, DQT, SOS, SCAN.subarray(0, 4)),
  "cut short between segments": join(SOI, DQT),
  "a segment longer than the file": join(SOI, [0xff, 0xe1, 0x40, 0x00], ascii("Exif\0\0")),
  "a length under 2": join(SOI, [0xff, 0xfe, 0x00, 0x01], SOS, SCAN, EOI),
  "a byte where a marker belongs": join(SOI, DQT, [0x00], SOS, SCAN, EOI),
  "a second start-of-image": join(SOI, SOI, SOS, SCAN, EOI),
  "a JFIF segment too short": join(SOI, segment(0xe0, ascii("JFIF\0")), SOS, SCAN, EOI),
};
for (const [desc, bytes] of Object.entries(malformed)) {
  test(`jpeg: refused, ${desc}`, async () => {
    await assert.rejects(cleanJpeg(reader(bytes), bytes.length), JpegError);
  });
}

test("jpeg: a file that shrinks after it was planned is refused while read", async () => {
  const photo = join(SOI, METADATA[5], DQT, SOS, SCAN, EOI);
  const plan = await cleanJpeg(reader(photo), photo.length);
  const shorter = reader(photo.subarray(0, photo.length - 3));
  await assert.rejects(async () => {
    for await (const piece of planPieces(shorter, plan)) assert.ok(piece.length);
  }, JpegError);
});

test("jpeg: Exif without a usable Orientation gives none", () => {
  assert.equal(exifOrientation(ascii("Exif\0\0MM")), 0);
  assert.equal(exifOrientation(ascii("http://ns.adobe.com/xap/1.0/\0")), 0);
  assert.equal(exifOrientation(exifPayload(9)), 0);
  const pointsOutside = exifPayload(6);
  pointsOutside[6 + 7] = 200; // IFD0 past the end
  assert.equal(exifOrientation(pointsOutside), 0);
});
