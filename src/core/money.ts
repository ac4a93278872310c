/** Micro-dollars in one dollar. Money is always an integer count of micro-dollars, never a float. */
export const MICROS_PER_USD = 1_000_000;
const TOKENS_PER_MILLION = 1_000_000;

const DECIMAL_USD = /^(\d{1,9})(?:\.(\d{1,6}))?$/;

/** Parses a dollar amount such as `"2.50"` or `0.15` into integer micro-dollars; undefined when malformed. */
export function parseUsdToMicros(value: string | number): number | undefined {
  const text = typeof value === 'number' ? numberToPlainString(value) : value.trim().replace(/^\$/, '');
  const match = DECIMAL_USD.exec(text);
  if (!match) return undefined;
  const [, whole, fraction = ''] = match;
  return Number(whole) * MICROS_PER_USD + Number(fraction.padEnd(6, '0'));
}

function numberToPlainString(value: number): string {
  // YAML gives 0.15 as a float; its shortest round-trip text is the decimal the operator wrote.
  return Number.isFinite(value) && value >= 0 ? String(value) : 'invalid';
}

/** A model's prices in micro-dollars per million tokens. */
export interface ModelPrice {
  inputMicrosPerMillion: number;
  outputMicrosPerMillion: number;
}

/** The cost of a request in micro-dollars, rounded up so that a fraction of a micro-dollar is never given away. */
export function costMicros(price: ModelPrice, inputTokens: number, outputTokens: number): number {
  const scaled = inputTokens * price.inputMicrosPerMillion + outputTokens * price.outputMicrosPerMillion;
  return Math.ceil(scaled / TOKENS_PER_MILLION);
}

/** Formats micro-dollars for humans: `$1.50`, `$0.000150`. */
export function formatUsd(micros: number): string {
  const dollars = micros / MICROS_PER_USD;
  return micros % 10_000 === 0 ? `$${dollars.toFixed(2)}` : `$${dollars.toFixed(6)}`;
}
