import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { dataUrlImageSize } from '../../src/gateway/image-size.js';
import { imageRuleFor, imageTokens } from '../../src/gateway/image-tokens.js';
import { gifDataUrl, jpegDataUrl, pngDataUrl, webpDataUrl } from '../helpers/media.js';

describe('image sizes read from data URLs', () => {
  test('PNG, GIF and the three kinds of WebP', () => {
    assert.deepEqual(dataUrlImageSize(pngDataUrl(1920, 1080)), { width: 1920, height: 1080 });
    assert.deepEqual(dataUrlImageSize(gifDataUrl(640, 480)), { width: 640, height: 480 });
    for (const kind of ['VP8 ', 'VP8L', 'VP8X'] as const) {
      assert.deepEqual(dataUrlImageSize(webpDataUrl(1000, 700, kind)), { width: 1000, height: 700 }, kind);
    }
  });

  test('a JPEG, baseline or progressive, behind 200 KB of EXIF', () => {
    assert.deepEqual(dataUrlImageSize(jpegDataUrl(4032, 3024)), { width: 4032, height: 3024 });
    assert.deepEqual(dataUrlImageSize(jpegDataUrl(3024, 4032, 200_000, true)), { width: 3024, height: 4032 });
  });

  test('not base64, not an image, or a header cut short: no size', () => {
    assert.equal(dataUrlImageSize('data:image/png,%89PNG'), undefined);
    assert.equal(
      dataUrlImageSize(`data:text/plain;base64,${Buffer.from('hello').toString('base64')}`),
      undefined,
    );
    assert.equal(dataUrlImageSize(jpegDataUrl(100, 100, 1_000).slice(0, 200)), undefined);
    assert.equal(dataUrlImageSize('https://example.com/cat.png'), undefined);
  });
});

describe('image tokens by model family, size and detail', () => {
  const gpt4o = imageRuleFor('gpt-4o');

  test("gpt-4o: OpenAI's examples, 1024×1024 is 765 and 2048×4096 is 1,105; low detail is 85", () => {
    assert.equal(imageTokens(gpt4o, { width: 1024, height: 1024 }, 'high'), 765);
    assert.equal(imageTokens(gpt4o, { width: 2048, height: 4096 }, 'auto'), 1_105);
    assert.equal(imageTokens(gpt4o, { width: 4096, height: 4096 }, 'low'), 85);
  });

  test('a small image is not scaled up: 512×512 is one tile', () => {
    assert.equal(imageTokens(gpt4o, { width: 512, height: 512 }, 'high'), 85 + 170);
  });

  test('gpt-4o-mini bills its own constants: 1024×1024 is 2,833 + 4 × 5,667', () => {
    assert.equal(
      imageTokens(imageRuleFor('gpt-4o-mini-2024-07-18'), { width: 1024, height: 1024 }, 'high'),
      25_501,
    );
  });

  test('an image of unknown size counts the most its detail allows: 8 tiles at high, the base at low', () => {
    assert.equal(imageTokens(gpt4o, undefined, undefined), 85 + 8 * 170);
    assert.equal(imageTokens(imageRuleFor('gpt-4o-mini'), undefined, 'high'), 2_833 + 8 * 5_667);
    assert.equal(imageTokens(gpt4o, undefined, 'low'), 85);
  });

  test('o-series and gpt-5 tiles, and a fine-tune bills as its base model', () => {
    assert.equal(imageTokens(imageRuleFor('o3'), { width: 1024, height: 1024 }, 'high'), 75 + 4 * 150);
    assert.equal(imageTokens(imageRuleFor('gpt-5'), { width: 1024, height: 1024 }, 'high'), 70 + 4 * 140);
    assert.equal(imageTokens(imageRuleFor('ft:gpt-4o-mini-2024-07-18:acme::x1'), undefined, 'low'), 2_833);
  });

  test('patch models: 32-pixel patches up to 1,536, times the multiplier, whatever the detail', () => {
    const mini = imageRuleFor('gpt-4.1-mini');
    assert.equal(imageTokens(mini, { width: 1024, height: 1024 }, 'low'), Math.ceil(1_024 * 1.62));
    assert.equal(imageTokens(mini, { width: 1800, height: 2400 }, 'high'), Math.ceil(1_536 * 1.62));
    assert.equal(imageTokens(imageRuleFor('gpt-4.1-nano'), undefined, 'low'), Math.ceil(1_536 * 2.46));
    assert.equal(
      imageTokens(imageRuleFor('o4-mini'), { width: 64, height: 64 }, 'high'),
      Math.ceil(4 * 1.72),
    );
    assert.equal(
      imageTokens(imageRuleFor('gpt-5-mini'), { width: 100, height: 100 }, 'high'),
      Math.ceil(16 * 1.62),
    );
  });

  test('a model no rule names bills as gpt-4o', () => {
    assert.deepEqual(imageRuleFor('llava-next'), gpt4o);
  });
});
