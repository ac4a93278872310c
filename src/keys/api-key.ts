import { createHash } from 'node:crypto';
import { crc32 } from 'node:zlib';

/**
 * The API key format: `qd_<type>_<body><checksum>`.
 *
 * - the type prefix (`qd_live_`, `qd_demo_`) says what the key is, so a secret scanner can recognise a
 *   leaked key and a log reader can tell a demo key at a glance;
 * - the body is 32 base62 characters drawn from a CSPRNG: log2(62^32) ≈ 190 bits;
 * - the checksum is the CRC-32 of prefix + body in 6 base62 characters, so a scanner can tell a real key
 *   from a look-alike, and a typo is refused before any store lookup.
 *
 * The authority never sees a key: callers send its SHA-256, and only that hash is stored.
 */

export const KEY_TYPES = ['live', 'demo'] as const;
export type KeyType = (typeof KEY_TYPES)[number];

const ALPHABET = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';
const BODY_LENGTH = 32;
const CHECKSUM_LENGTH = 6;
/** Random bytes drawn per key body: about 31 are needed for 32 characters after skipping biased bytes. */
export const KEY_RANDOM_BYTES = 48;
const KEY_PATTERN = new RegExp(
  `^qd_(${KEY_TYPES.join('|')})_([0-9A-Za-z]{${BODY_LENGTH + CHECKSUM_LENGTH}})$`,
);

function toBase62(value: number, width: number): string {
  let text = '';
  for (let rest = value; text.length < width; rest = Math.floor(rest / 62)) text = ALPHABET[rest % 62] + text;
  return text;
}

function checksum(prefixAndBody: string): string {
  return toBase62(crc32(prefixAndBody), CHECKSUM_LENGTH);
}

/**
 * `length` base62 characters from random bytes. Bytes of 248 and above are skipped so each character is
 * uniform over the 62 (no modulo bias).
 */
function randomBase62(random: Uint8Array, length: number): string {
  let text = '';
  for (const byte of random) {
    if (byte >= 248) continue;
    text += ALPHABET[byte % 62];
    if (text.length === length) return text;
  }
  throw new Error(`${random.length} random bytes were not enough for ${length} base62 characters`);
}

/** Formats a new key from random bytes (from `crypto.randomBytes(KEY_RANDOM_BYTES)` in production). */
export function formatApiKey(type: KeyType, random: Uint8Array): string {
  const prefixAndBody = `qd_${type}_${randomBase62(random, BODY_LENGTH)}`;
  return prefixAndBody + checksum(prefixAndBody);
}

/**
 * What every key id starts with. A key is charged as the subject of its id, so this prefix is reserved:
 * no other credential (a JWT's sub, a QuotaService principal) may name a subject that starts with it.
 */
export const KEY_ID_PREFIX = 'key_';

const KEY_ID = /^key_[0-9A-Za-z]+$/;

/** `key_` + the creation time (base36, padded, so ids sort by it) + 10 random base62 characters. */
export function formatKeyId(nowMs: number, random: Uint8Array): string {
  return `${KEY_ID_PREFIX}${nowMs.toString(36).padStart(9, '0')}${randomBase62(random, 10)}`;
}

/** Whether a subject is in the API keys' namespace, which only the authority's key resolution may use. */
export function isKeySubject(subject: string): boolean {
  return subject.startsWith(KEY_ID_PREFIX);
}

export function isKeyId(text: string): boolean {
  return KEY_ID.test(text);
}

export type ApiKeyCheck =
  { ok: true; type: KeyType; sha256: Buffer } | { ok: false; reason: 'malformed' | 'checksum' };

/** Checks a presented key's shape and checksum (no lookup) and hashes it for the authority. */
export function checkApiKey(text: string): ApiKeyCheck {
  const match = KEY_PATTERN.exec(text);
  if (!match) return { ok: false, reason: 'malformed' };
  const split = text.length - CHECKSUM_LENGTH;
  if (checksum(text.slice(0, split)) !== text.slice(split)) return { ok: false, reason: 'checksum' };
  return { ok: true, type: match[1] as KeyType, sha256: sha256(text) };
}

export function sha256(text: string): Buffer {
  return createHash('sha256').update(text, 'utf8').digest();
}

/** What may be shown of a secret: its type prefix and first four characters of its body. */
export function keyHint(key: string): string {
  const prefixEnd = key.indexOf('_', 3) + 1;
  return `${key.slice(0, prefixEnd + 4)}…`;
}
