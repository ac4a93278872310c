/** A descriptor value with `*` in it, split into the literal parts between the stars; undefined otherwise. */
export function wildcardParts(value: string): readonly string[] | undefined {
  return value.includes('*') ? value.split('*') : undefined;
}

/**
 * Whether `value` matches a wildcard: it starts with the first part, ends with the last, and holds the
 * parts between in order, without overlapping; each `*` stands for any run of characters, the empty one too.
 */
export function matchesWildcard(parts: readonly string[], value: string): boolean {
  const first = parts[0] ?? '';
  if (parts.length === 1) return value === first;
  const last = parts[parts.length - 1] ?? '';
  const end = value.length - last.length;
  if (end < first.length || !value.startsWith(first) || !value.endsWith(last)) return false;
  let position = first.length;
  for (const middle of parts.slice(1, -1)) {
    const found = value.indexOf(middle, position);
    if (found < 0 || found + middle.length > end) return false;
    position = found + middle.length;
  }
  return true;
}
