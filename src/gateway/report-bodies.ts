/** The JSON bodies of the caller's own reports, GET /v1/models and GET /v1/usage, from the authority's answers. */
import type { GetUsageResponse__Output } from '../gen/quotad/v1/GetUsageResponse.js';
import type { ListModelsResponse__Output } from '../gen/quotad/v1/ListModelsResponse.js';

/** The body of GET /v1/models, in OpenAI's shape. */
export function modelsBody(answer: ListModelsResponse__Output) {
  return {
    object: 'list',
    data: answer.models.map((model) => ({
      id: model.id,
      object: 'model',
      created: 0,
      owned_by: 'quotad',
      aliases: model.aliases,
    })),
  };
}

/** The body of GET /v1/usage: the tier, the key, and every limit with what is used and when it resets. */
export function usageBody(usage: GetUsageResponse__Output) {
  return {
    object: 'usage',
    tier: usage.tier,
    key: usage.key
      ? {
          id: usage.key.id,
          org: usage.key.org,
          expires_at: usage.key.expiresAtMs ? Math.floor(usage.key.expiresAtMs / 1000) : null,
        }
      : null,
    tokens_used: usage.tokensUsed,
    spend_usd: (usage.usdMicrosSpent / 1_000_000).toFixed(6),
    limits: usage.limits.map((limit) => ({
      name: limit.name,
      kind: limit.kind.toLowerCase(),
      unit: limit.unit.toLowerCase(),
      limit: limit.limit,
      used: limit.used,
      remaining: limit.remaining,
      resets_in_ms: limit.resetAfterMs,
      ...(limit.kind === 'BUDGET'
        ? { period_start: limit.periodStartMs / 1000, period_end: limit.periodEndMs / 1000 }
        : {}),
      ...(limit.kind === 'RATE' ? { window_seconds: limit.windowMs / 1000 } : {}),
    })),
  };
}
