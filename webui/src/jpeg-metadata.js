// Removing location and camera data from JPEG photos before they are encrypted
// (the sender page's "Remove location and camera data" box; README, "Inbox settings").
//
// Written here rather than taken from npm: the packages that strip EXIF either hold
// the whole file in memory as a Node Buffer (exifremove, piexifjs), remove APP1 only
// and leave IPTC, comments and the images appended after the photo (exif-be-gone,
// exifremove, piexifjs), or need WebAssembly (the exiftool builds), which the sender
// page must do without. This is a marker walker, not an image codec: it never decodes
// pixels, so the picture stays bit for bit what it was.
//
// It works in two steps, each in bounded memory (one window of at most 1 MiB, and one
// segment of at most 64 KiB):
//   cleanJpeg(read, size) walks the file and returns a plan: the byte ranges of the
//     file to keep, and the few bytes written anew, with the size they add up to. The
//     size is known before anything is sealed, as the attachment entry needs it.
//   planPieces(read, plan) yields the cleaned file piece by piece, from the plan.
// `read(offset, length)` returns (a promise of) the file's bytes there, shorter only at
// its end; for a File, fileReader(file).
//
// What goes and what stays (ITU-T T.81 B.1; the JFIF, Exif, ICC and Adobe notes):
//   kept:    every marker the decoder needs (SOFn, DHT, DQT, DRI, SOS and the scan data,
//            DAC, DNL, EXP, RSTn), APP0 "JFIF" (pixel density; its thumbnail, if any,
//            is dropped), APP2 "ICC_PROFILE" (colours), APP14 "Adobe" (tells decoders
//            whether the colours are YCbCr or RGB, CMYK or YCCK).
//   dropped: APP1 (Exif with GPS, camera, serial numbers, dates, thumbnail; XMP),
//            APP13 (Photoshop and IPTC: captions, author, places), COM comments, every
//            other APPn (APP0 JFXX thumbnails, APP2 MPF and FlashPix, maker data,
//            APP11 JUMBF/C2PA credentials, ...), fill bytes between segments, and
//            anything after the end-of-image marker (the extra images that MPF, motion
//            photos and gain maps append, each with metadata of its own).
//   written: when the Exif said the camera was turned (Orientation 2 to 8), a 36-byte
//            Exif segment that says only that, so the photo is not shown sideways.
// A file that does not follow the segment structure throws JpegError: the page then
// refuses it rather than send it with its metadata while the sender asked otherwise.

export class JpegError extends Error {}

const WINDOW = 1024 * 1024;
const SOI = 0xd8;
const EOI = 0xd9;
const SOS = 0xda;
const APP0 = 0xe0;
const APP1 = 0xe1;
const APP2 = 0xe2;
const APP14 = 0xee;
const COM = 0xfe;
const ORIENTATION_TAG = 0x0112;

const ascii = (text) => Uint8Array.from(text, (c) => c.charCodeAt(0));
const JFIF = ascii("JFIF\0");
const EXIF = ascii("Exif\0\0");
const ICC = ascii("ICC_PROFILE\0");
const ADOBE = ascii("Adobe");

const startsWith = (bytes, prefix) =>
  bytes.length >= prefix.length && prefix.every((byte, i) => bytes[i] === byte);

/** `read` for a File or Blob. */
export const fileReader = (file) => async (offset, length) =>
  new Uint8Array(await file.slice(offset, offset + length).arrayBuffer());

/** Whether the bytes begin as a JPEG does: SOI and the start of a marker (FF D8 FF). */
export async function isJpeg(read) {
  const head = await read(0, 3);
  return head.length === 3 && head[0] === 0xff && head[1] === SOI && head[2] === 0xff;
}

// One window of the file, moved as the walk goes on.
class Window {
  constructor(read, size) {
    this.read = read;
    this.size = size;
    this.start = 0;
    this.bytes = new Uint8Array(0);
  }

  async load(offset, length) {
    if (offset >= this.start && offset + length <= this.start + this.bytes.length) return;
    this.start = offset;
    this.bytes = await this.read(offset, Math.max(length, WINDOW));
    if (this.bytes.length < Math.min(length, this.size - offset)) {
      throw new JpegError("the file changed while it was being read");
    }
  }

  async byte(offset) {
    if (offset >= this.size) throw new JpegError("it ends in the middle of a segment");
    await this.load(offset, 1);
    return this.bytes[offset - this.start];
  }

  async slice(offset, length) {
    if (offset + length > this.size) throw new JpegError("a segment runs past the end of the file");
    await this.load(offset, length);
    return this.bytes.slice(offset - this.start, offset - this.start + length);
  }

  // The offset of the next 0xFF from `offset` on, or -1.
  async nextFF(offset) {
    while (offset < this.size) {
      await this.load(offset, 1);
      const found = this.bytes.indexOf(0xff, offset - this.start);
      if (found >= 0) return this.start + found;
      offset = this.start + this.bytes.length;
    }
    return -1;
  }
}

// Exif's Orientation (1 to 8) from an APP1 payload, or 0 where it has none or the
// TIFF structure is not what it should be (the segment goes anyway).
export function exifOrientation(payload) {
  if (!startsWith(payload, EXIF)) return 0;
  const tiff = payload.subarray(EXIF.length);
  const view = new DataView(tiff.buffer, tiff.byteOffset, tiff.byteLength);
  if (tiff.length < 8) return 0;
  const little = tiff[0] === 0x49 && tiff[1] === 0x49;
  if (!little && !(tiff[0] === 0x4d && tiff[1] === 0x4d)) return 0;
  if (view.getUint16(2, little) !== 42) return 0;
  const ifd = view.getUint32(4, little);
  if (ifd + 2 > tiff.length) return 0;
  const count = view.getUint16(ifd, little);
  for (let i = 0; i < count; i++) {
    const entry = ifd + 2 + 12 * i;
    if (entry + 12 > tiff.length) return 0;
    if (view.getUint16(entry, little) !== ORIENTATION_TAG) continue;
    const type = view.getUint16(entry + 2, little);
    const value = view.getUint16(entry + 8, little);
    return type === 3 && view.getUint32(entry + 4, little) === 1 && value >= 1 && value <= 8 ? value : 0;
  }
  return 0;
}

/** An APP1 segment whose Exif holds the Orientation only (big-endian TIFF, one IFD). */
export function orientationSegment(orientation) {
  const segment = new Uint8Array(36);
  const view = new DataView(segment.buffer);
  view.setUint16(0, 0xffe1);
  view.setUint16(2, 34);
  segment.set(EXIF, 4);
  segment.set(ascii("MM"), 10);
  view.setUint16(12, 42);
  view.setUint32(14, 8); // IFD0 right after the TIFF header
  view.setUint16(18, 1); // one entry
  view.setUint16(20, ORIENTATION_TAG);
  view.setUint16(22, 3); // SHORT
  view.setUint32(24, 1); // one value, held in the entry; then no next IFD (zeros)
  view.setUint16(28, orientation);
  return segment;
}

// What happens to one segment: "keep", "drop", or the bytes that replace it.
async function judge(win, offset, marker, length) {
  const isApp = marker >= APP0 && marker <= 0xef;
  if (!isApp && marker !== COM) return "keep";
  if (marker === COM) return "drop";
  // The identifiers looked at are short; an Exif segment is read whole (at most 64 KiB).
  const head = await win.slice(offset + 4, Math.min(length - 2, 16));
  if (marker === APP0 && startsWith(head, JFIF)) {
    if (length < 16) throw new JpegError("its JFIF segment is too short");
    if (length === 16) return "keep";
    // A JFIF thumbnail: the same header without it.
    const jfif = await win.slice(offset, 18);
    jfif[3] = 16;
    jfif[2] = 0;
    jfif[16] = 0;
    jfif[17] = 0;
    return jfif;
  }
  if (marker === APP1 && startsWith(head, EXIF)) {
    const orientation = exifOrientation(await win.slice(offset + 4, length - 2));
    return orientation > 1 ? orientationSegment(orientation) : "drop";
  }
  if (marker === APP2 && startsWith(head, ICC)) return "keep";
  if (marker === APP14 && startsWith(head, ADOBE)) return "keep";
  return "drop";
}

/**
 * The plan for a JPEG without its metadata: {parts, size, removed}, each part either
 * {start, end} (a range of the file) or {bytes}. Throws JpegError for a file that is
 * not a well-formed JPEG stream.
 */
export async function cleanJpeg(read, size) {
  const win = new Window(read, size);
  const parts = [];
  const keep = (start, end) => {
    const last = parts[parts.length - 1];
    if (last && last.end === start) last.end = end;
    else parts.push({ start, end });
  };
  if (size < 4 || (await win.byte(0)) !== 0xff || (await win.byte(1)) !== SOI) {
    throw new JpegError("it does not start as a JPEG does");
  }
  keep(0, 2);
  let offset = 2;
  let orientationWritten = false;
  for (;;) {
    if (offset >= size) throw new JpegError("it ends before its end-of-image marker");
    if ((await win.byte(offset)) !== 0xff) throw new JpegError(`no marker where one belongs (byte ${offset})`);
    while ((await win.byte(offset + 1)) === 0xff) offset += 1; // fill bytes
    const marker = await win.byte(offset + 1);
    if (marker === EOI) {
      keep(offset, offset + 2);
      break; // whatever follows is not part of this image
    }
    if (marker === 0x01 || (marker >= 0xd0 && marker <= 0xd7)) {
      keep(offset, offset + 2); // TEM, RSTn: no length
      offset += 2;
      continue;
    }
    if (marker === 0x00 || marker === SOI) throw new JpegError(`an unexpected marker at byte ${offset}`);
    const lengthBytes = await win.slice(offset + 2, 2);
    const length = (lengthBytes[0] << 8) | lengthBytes[1];
    const end = offset + 2 + length;
    if (length < 2 || end > size) throw new JpegError(`a segment runs past the end of the file (byte ${offset})`);
    let verdict = await judge(win, offset, marker, length);
    if (verdict instanceof Uint8Array && marker === APP1) {
      if (orientationWritten) verdict = "drop";
      orientationWritten = true;
    }
    if (verdict === "keep") keep(offset, end);
    else if (verdict !== "drop") parts.push({ bytes: verdict });
    offset = end;
    if (marker !== SOS) continue;
    // Scan data: a 0xFF in it is followed by 0x00 (stuffing) or a restart marker;
    // any other marker ends it.
    const scanStart = offset;
    for (;;) {
      const ff = await win.nextFF(offset);
      if (ff < 0 || ff + 1 >= size) throw new JpegError("it ends inside its image data");
      const next = await win.byte(ff + 1);
      if (next === 0x00 || (next >= 0xd0 && next <= 0xd7)) offset = ff + 2;
      else if (next === 0xff) offset = ff + 1;
      else {
        offset = ff;
        break;
      }
    }
    if (offset > scanStart) keep(scanStart, offset);
  }
  const cleaned = parts.reduce((sum, part) => sum + (part.bytes ? part.bytes.length : part.end - part.start), 0);
  return { parts, size: cleaned, removed: size - cleaned };
}

/** The cleaned file, in pieces of at most `window` bytes, as the plan says: bytes
 * `from` to `to` of it (all of it by default; a large file is encrypted in parts). */
export async function* planPieces(read, plan, { from = 0, to = plan.size, window = WINDOW } = {}) {
  let at = 0; // where the current part starts in the cleaned file
  for (const part of plan.parts) {
    const length = part.bytes ? part.bytes.length : part.end - part.start;
    const start = Math.max(from, at) - at;
    const end = Math.min(to, at + length) - at;
    at += length;
    if (start >= end) continue;
    if (part.bytes) {
      yield part.bytes.subarray(start, end);
      continue;
    }
    for (let offset = part.start + start; offset < part.start + end; offset += window) {
      const wanted = Math.min(window, part.start + end - offset);
      const piece = await read(offset, wanted);
      if (piece.length !== wanted) throw new JpegError("the file changed while it was being sent");
      yield piece;
    }
  }
}
