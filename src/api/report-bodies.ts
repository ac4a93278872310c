/**
 * The JSON of the reports a caller or an operator reads, from the authority's answers: GET /v1/models,
 * and usage in one documented shape, served by the gateway's GET /v1/usage and printed by
 * `quotad usage --json`.
 */
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

/** A key as usage names it; `expiresAtMs` 0 for a key that never expires. */
interface UsageKey {
  id: string;
  org: string;
  expiresAtMs: number;
}

/**
 * Usage: the tier, the key, and every limit with what is used and when it resets. `key` names the key when
 * the answer does not (AdminService's GetKeyUsage carries it beside the usage).
 */
export function usageBody(usage: GetUsageResponse__Output, key: UsageKey | null = usage.key) {
  return {
    object: 'usage',
    tier: usage.tier,
    key: key
      ? {
          id: key.id,
          org: key.org,
          expires_at: key.expiresAtMs ? Math.floor(key.expiresAtMs / 1000) : null,
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
