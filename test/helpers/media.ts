/**
 * The smallest valid headers of images, audio and PDFs with a given size, as data URLs or base64, for
 * tests of what the gateway reads from them. Pixels and samples are zeros: only headers are read.
 */

function dataUrl(mime: string, bytes: Buffer): string {
  return `data:${mime};base64,${bytes.toString('base64')}`;
}

export function pngDataUrl(width: number, height: number): string {
  const header = Buffer.alloc(33);
  Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]).copy(header, 0);
  header.writeUInt32BE(13, 8);
  header.write('IHDR', 12, 'latin1');
  header.writeUInt32BE(width, 16);
  header.writeUInt32BE(height, 20);
  header.writeUInt8(8, 24); // bit depth
  header.writeUInt8(6, 25); // RGBA
  return dataUrl('image/png', Buffer.concat([header, Buffer.alloc(64)]));
}

export function gifDataUrl(width: number, height: number): string {
  const header = Buffer.alloc(13);
  header.write('GIF89a', 0, 'latin1');
  header.writeUInt16LE(width, 6);
  header.writeUInt16LE(height, 8);
  return dataUrl('image/gif', Buffer.concat([header, Buffer.alloc(64)]));
}

/** A lossy (VP8), lossless (VP8L) or extended (VP8X) WebP. */
export function webpDataUrl(width: number, height: number, kind: 'VP8 ' | 'VP8L' | 'VP8X'): string {
  const header = Buffer.alloc(40);
  header.write('RIFF', 0, 'latin1');
  header.writeUInt32LE(32, 4);
  header.write('WEBP', 8, 'latin1');
  header.write(kind, 12, 'latin1');
  if (kind === 'VP8 ') {
    Buffer.from([0x9d, 0x01, 0x2a]).copy(header, 23);
    header.writeUInt16LE(width, 26);
    header.writeUInt16LE(height, 28);
  } else if (kind === 'VP8L') {
    header.writeUInt8(0x2f, 20);
    header.writeUInt32LE((width - 1) | ((height - 1) << 14), 21);
  } else {
    header.writeUIntLE(width - 1, 24, 3);
    header.writeUIntLE(height - 1, 27, 3);
  }
  return dataUrl('image/webp', header);
}

/**
 * A JPEG whose frame header (baseline, or progressive) comes after `metadataBytes` of APP1 (EXIF)
 * segments, as in camera pictures.
 */
export function jpegDataUrl(width: number, height: number, metadataBytes = 0, progressive = false): string {
  const parts = [Buffer.from([0xff, 0xd8])];
  for (let left = metadataBytes; left > 0; left -= 65_533) {
    const length = Math.min(left, 65_533);
    const segment = Buffer.alloc(length + 4);
    segment.writeUInt16BE(0xffe1, 0);
    segment.writeUInt16BE(length + 2, 2);
    parts.push(segment);
  }
  const frame = Buffer.alloc(19);
  frame.writeUInt16BE(progressive ? 0xffc2 : 0xffc0, 0);
  frame.writeUInt16BE(17, 2);
  frame.writeUInt8(8, 4);
  frame.writeUInt16BE(height, 5);
  frame.writeUInt16BE(width, 7);
  frame.writeUInt8(3, 9);
  parts.push(frame, Buffer.from([0xff, 0xd9]));
  return dataUrl('image/jpeg', Buffer.concat(parts));
}

/** Base64 of a PCM WAV of `seconds` at `byteRate` bytes a second. */
export function wavBase64(seconds: number, byteRate: number): string {
  const data = Math.round(seconds * byteRate);
  const header = Buffer.alloc(44);
  header.write('RIFF', 0, 'latin1');
  header.writeUInt32LE(36 + data, 4);
  header.write('WAVE', 8, 'latin1');
  header.write('fmt ', 12, 'latin1');
  header.writeUInt32LE(16, 16);
  header.writeUInt16LE(1, 20); // PCM
  header.writeUInt16LE(1, 22); // mono
  header.writeUInt32LE(byteRate / 2, 24); // sample rate at 16 bits
  header.writeUInt32LE(byteRate, 28);
  header.writeUInt16LE(2, 32);
  header.writeUInt16LE(16, 34);
  header.write('data', 36, 'latin1');
  header.writeUInt32LE(data, 40);
  return Buffer.concat([header, Buffer.alloc(data)]).toString('base64');
}

/** A PDF data URL with `pages` page objects. */
export function pdfDataUrl(pages: number): string {
  const objects = Array.from(
    { length: pages },
    (_, i) => `${i + 3} 0 obj << /Type /Page /Parent 2 0 R >> endobj`,
  );
  const text = `%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n2 0 obj << /Type /Pages /Count ${pages} >> endobj\n${objects.join('\n')}\n%%EOF\n`;
  return dataUrl('application/pdf', Buffer.from(text, 'latin1'));
}
