import type { ImageSize } from './image-size.js';

/**
 * How a model family bills an image (OpenAI's "Images and vision" guide, "Calculating costs"):
 * - tiles: fit the image in 2048×2048, scale its short side down to 768, then `base` + `tile` per
 *   512-pixel tile; at detail low, `base` alone;
 * - patches: 32-pixel patches, at most `budget` of them (a larger image is scaled down to fit), times
 *   the model's `multiplier`, whatever the detail.
 */
export type ImageRule =
  { kind: 'tiles'; base: number; tile: number } | { kind: 'patches'; budget: number; multiplier: number };

const GPT_4O: ImageRule = { kind: 'tiles', base: 85, tile: 170 };

/**
 * By model prefix; the longest matching prefix wins. Where OpenAI's figures and the bills users
 * measured differ, the higher is taken: gpt-5-mini/nano are billed 1.2 and 1.5 per patch, documented
 * 1.62 and 2.46; gpt-5.2 and later are billed 1.2 per patch, documented 1.
 */
const RULES: [prefix: string, rule: ImageRule][] = (
  [
    ['gpt-4o-mini', { kind: 'tiles', base: 2_833, tile: 5_667 }],
    ['gpt-4o', GPT_4O],
    ['chatgpt-4o', GPT_4O],
    ['gpt-4.1', GPT_4O],
    ['gpt-4.5', GPT_4O],
    ['gpt-4-turbo', GPT_4O],
    ['gpt-4.1-mini', { kind: 'patches', budget: 1_536, multiplier: 1.62 }],
    ['gpt-4.1-nano', { kind: 'patches', budget: 1_536, multiplier: 2.46 }],
    ['gpt-5', { kind: 'tiles', base: 70, tile: 140 }],
    ['gpt-5-mini', { kind: 'patches', budget: 1_536, multiplier: 1.62 }],
    ['gpt-5-nano', { kind: 'patches', budget: 1_536, multiplier: 2.46 }],
    ['gpt-5.2', { kind: 'patches', budget: 1_536, multiplier: 1.2 }],
    ['gpt-5.3', { kind: 'patches', budget: 1_536, multiplier: 1.2 }],
    ['gpt-5.4', { kind: 'patches', budget: 2_500, multiplier: 1.2 }],
    ['gpt-5.4-mini', { kind: 'patches', budget: 1_536, multiplier: 1.62 }],
    ['gpt-5.4-nano', { kind: 'patches', budget: 1_536, multiplier: 2.46 }],
    ['gpt-5.5', { kind: 'patches', budget: 2_500, multiplier: 1.2 }],
    ['o1', { kind: 'tiles', base: 75, tile: 150 }],
    ['o3', { kind: 'tiles', base: 75, tile: 150 }],
    ['o4-mini', { kind: 'patches', budget: 1_536, multiplier: 1.72 }],
    ['codex-mini', { kind: 'patches', budget: 1_536, multiplier: 1.72 }],
    ['computer-use-preview', { kind: 'tiles', base: 65, tile: 129 }],
  ] satisfies [string, ImageRule][]
).sort(([a], [b]) => b.length - a.length);

const LONGEST_SIDE = 2_048;
const SHORT_SIDE = 768;
const TILE = 512;
const PATCH = 32;
/** After fitting, an image is at most 768 × 2048: 2 × 4 tiles. */
const MOST_TILES = Math.ceil(SHORT_SIDE / TILE) * Math.ceil(LONGEST_SIDE / TILE);
/** Scaled sizes are compared to tile edges a hair below them, so float noise never adds a tile. */
const EPSILON = 1e-6;

/** The image rule of a model, after stripping a fine-tune's `ft:`; unknown models bill as gpt-4o. */
export function imageRuleFor(model: string): ImageRule {
  const base = (model.startsWith('ft:') ? model.slice(3) : model).toLowerCase();
  return RULES.find(([prefix]) => base.startsWith(prefix))?.[1] ?? GPT_4O;
}

/**
 * The input tokens an image costs. `size` undefined (a remote URL, or a header that could not be read):
 * the most the rule and the detail allow. `detail` auto, missing or unknown counts as high.
 */
export function imageTokens(rule: ImageRule, size: ImageSize | undefined, detail: unknown): number {
  if (rule.kind === 'patches') {
    const patches = size
      ? Math.min(rule.budget, Math.ceil(size.width / PATCH) * Math.ceil(size.height / PATCH))
      : rule.budget;
    return Math.ceil(patches * rule.multiplier);
  }
  if (detail === 'low') return rule.base;
  return rule.base + rule.tile * (size ? tilesOf(size) : MOST_TILES);
}

/** The tiles of an image at detail high, never upscaled. */
function tilesOf({ width, height }: ImageSize): number {
  let scale = Math.min(1, LONGEST_SIDE / Math.max(width, height));
  scale *= Math.min(1, SHORT_SIDE / (Math.min(width, height) * scale));
  return Math.ceil((width * scale) / TILE - EPSILON) * Math.ceil((height * scale) / TILE - EPSILON);
}
