/** An image's size in pixels. */
export interface ImageSize {
  width: number;
  height: number;
}

/** Base64 characters decoded per step while looking for a JPEG's frame header (a multiple of 4). */
const BASE64_STEP = 65_536;

/**
 * The size of the image in a `data:` URL, read from the header of a PNG, GIF, WebP or JPEG without
 * decoding pixels; undefined when the URL is not base64 or the header is not one of those.
 */
export function dataUrlImageSize(url: string): ImageSize | undefined {
  const comma = url.indexOf(',');
  if (!url.startsWith('data:') || comma < 0 || !url.slice(0, comma).endsWith(';base64')) return undefined;
  const payload = url.slice(comma + 1);
  const head = decodeBase64(payload, 0, 64);
  const fixed = pngSize(head) ?? gifSize(head) ?? webpSize(head);
  if (fixed) return fixed;
  if (head[0] !== 0xff || head[1] !== 0xd8) return undefined;
  // A JPEG's frame header follows its metadata (EXIF, thumbnails): decode until it is found.
  for (let end = BASE64_STEP; ; end *= 2) {
    const bytes = decodeBase64(payload, 0, end);
    const size = jpegSize(bytes);
    if (size !== 'more' || end >= payload.length) return size === 'more' ? undefined : size;
  }
}

/** Bytes of the base64 text from character `start` to `end` (both multiples of 4, `end` capped). */
function decodeBase64(base64: string, start: number, end: number): Buffer {
  return Buffer.from(base64.slice(start, end), 'base64');
}

function pngSize(b: Buffer): ImageSize | undefined {
  const signature = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];
  if (b.length < 24 || signature.some((byte, i) => b[i] !== byte)) return undefined;
  if (b.toString('latin1', 12, 16) !== 'IHDR') return undefined;
  return positive(b.readUInt32BE(16), b.readUInt32BE(20));
}

function gifSize(b: Buffer): ImageSize | undefined {
  if (b.length < 10 || !['GIF87a', 'GIF89a'].includes(b.toString('latin1', 0, 6))) return undefined;
  return positive(b.readUInt16LE(6), b.readUInt16LE(8));
}

function webpSize(b: Buffer): ImageSize | undefined {
  if (b.length < 30 || b.toString('latin1', 0, 4) !== 'RIFF' || b.toString('latin1', 8, 12) !== 'WEBP') {
    return undefined;
  }
  switch (b.toString('latin1', 12, 16)) {
    case 'VP8 ':
      return positive(b.readUInt16LE(26) & 0x3fff, b.readUInt16LE(28) & 0x3fff);
    case 'VP8L': {
      if (b[20] !== 0x2f) return undefined;
      const bits = b.readUInt32LE(21);
      return positive((bits & 0x3fff) + 1, ((bits >>> 14) & 0x3fff) + 1);
    }
    case 'VP8X':
      return positive(b.readUIntLE(24, 3) + 1, b.readUIntLE(27, 3) + 1);
    default:
      return undefined;
  }
}

/** Start-of-frame markers (baseline, progressive, lossless, arithmetic); C4, C8 and CC are not frames. */
const JPEG_FRAMES = new Set([0xc0, 0xc1, 0xc2, 0xc3, 0xc5, 0xc6, 0xc7, 0xc9, 0xca, 0xcb, 0xcd, 0xce, 0xcf]);

/** A JPEG's size from its frame header; 'more' when the bytes end before it. */
function jpegSize(b: Buffer): ImageSize | 'more' | undefined {
  let at = 2;
  for (;;) {
    if (at + 4 > b.length) return 'more';
    if (b[at] !== 0xff) return undefined;
    const marker = b[at + 1] as number;
    if (marker === 0xff) {
      at += 1; // fill byte
      continue;
    }
    if (marker === 0xd8 || marker === 0x01 || (marker >= 0xd0 && marker <= 0xd7)) {
      at += 2; // markers without a length
      continue;
    }
    if (marker === 0xd9 || marker === 0xda) return undefined; // the image data began with no frame header
    if (JPEG_FRAMES.has(marker)) {
      if (at + 9 > b.length) return 'more';
      return positive(b.readUInt16BE(at + 7), b.readUInt16BE(at + 5));
    }
    at += 2 + b.readUInt16BE(at + 2);
  }
}

function positive(width: number, height: number): ImageSize | undefined {
  return width > 0 && height > 0 ? { width, height } : undefined;
}
