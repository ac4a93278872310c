import * as z from 'zod';
import { isValidTimeZone } from '../core/calendar.js';
import { parseDuration } from '../core/duration.js';
import { parseUsdToMicros } from '../core/money.js';
import type { AlertsSpec, AnomalyAction, LimitSpec, ModelSpec, Policy, TierSpec } from '../core/policy.js';
import { MAX_TOKENS } from '../core/quota.js';

const LIMIT_NAME = /^[a-z][a-z0-9_]{0,62}$/;
const TIER_NAME = /^[a-z][a-z0-9_-]{0,62}$/;
const MODEL_NAME = /^\S+$/;
const MIN_WINDOW_MS = 1_000;
const MAX_WINDOW_MS = 86_400_000;
// Rate counters are Lua doubles; limit × window beyond 2^50 would lose integer precision in the script.
const MAX_RATE_PRODUCT = 2 ** 50;

const DURATION_WORDS = 'a duration like 30s, 1m, 24h';
const USD_WORDS = 'a dollar amount with at most 6 decimals, like "2.50"';
const TIME_ZONE_WORDS = 'an IANA time zone like UTC or Europe/Berlin';

type ErrorMessage = (issue: { input?: unknown }) => string;

/** A message for a wrong value that still says "required" when the key is missing. */
function expected(description: string): ErrorMessage {
  return (issue) => (issue.input === undefined ? 'required' : `expected ${description}`);
}

function strictObject<Shape extends z.core.$ZodLooseShape>(shape: Shape) {
  const keys = Object.keys(shape).join(', ');
  return z.strictObject(shape, {
    error: (issue) =>
      issue.code === 'unrecognized_keys' ? `expected one of: ${keys}` : expected('a mapping')(issue),
  });
}

const timeZone = z
  .string({ error: expected(TIME_ZONE_WORDS) })
  .refine(isValidTimeZone, { error: `expected ${TIME_ZONE_WORDS}` });

const duration = z.string({ error: expected(DURATION_WORDS) }).transform((text, ctx) => {
  const ms = parseDuration(text);
  if (ms === undefined || ms === 0) {
    ctx.issues.push({ code: 'custom', message: `expected ${DURATION_WORDS}`, input: text });
    return z.NEVER;
  }
  return ms;
});

const usdMicros = z
  .union([z.string(), z.number()], { error: expected(USD_WORDS) })
  .transform((value, ctx) => {
    const micros = parseUsdToMicros(value);
    if (micros === undefined) {
      ctx.issues.push({ code: 'custom', message: `expected ${USD_WORDS}`, input: value });
      return z.NEVER;
    }
    return micros;
  });

function enumOf<const Values extends readonly [string, ...string[]]>(values: Values) {
  return z.enum(values, { error: expected(`one of: ${values.join(', ')}`) });
}

const THRESHOLD_WORDS = 'a fraction of the limit above 0 and at most 10, with at most 4 decimals, like 0.8';

const threshold = z
  .number({ error: expected(THRESHOLD_WORDS) })
  .refine(
    (value) => value > 0 && value <= 10 && Math.abs(value * 10_000 - Math.round(value * 10_000)) < 1e-6,
    { error: `expected ${THRESHOLD_WORDS}` },
  );

/** Fractions in ascending order, each once; `[]` for none. */
const thresholdList = z
  .array(threshold, { error: expected(`a list of fractions like [0.5, 0.8, 1.0], or [] for none`) })
  .superRefine((list, ctx) => {
    list.forEach((value, index) => {
      const previous = list[index - 1];
      if (previous !== undefined && value <= previous) {
        const message = 'expected fractions in ascending order, each once';
        ctx.addIssue({ code: 'custom', message, input: value, path: [index] });
      }
    });
  });

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

const webhookSchema = strictObject({
  url: z.string({ error: expected('an http:// or https:// URL') }).refine(
    (text) => {
      try {
        const url = new URL(text);
        return url.protocol === 'http:' || url.protocol === 'https:';
      } catch {
        return false;
      }
    },
    { error: 'expected an http:// or https:// URL' },
  ),
  secret_env: z
    .string({ error: expected('the name of an environment variable') })
    .regex(ENV_NAME, { error: 'expected the name of an environment variable, like QUOTAD_WEBHOOK_SECRET' }),
  timeout: duration.prefault('10s'),
  max_in_flight: z
    .int({ error: expected('an integer') })
    .min(1, { error: 'expected an integer >= 1' })
    .max(1_000, { error: 'expected an integer <= 1000' })
    .default(8),
  retry_for: duration.prefault('1h'),
});

const positive = (what: string) =>
  z.number({ error: expected(what) }).refine((value) => value > 0 && Number.isFinite(value), {
    error: `expected ${what}`,
  });

const anomalySchema = strictObject({
  factor: positive('a number above 1, like 5')
    .refine((value) => value > 1, { error: 'expected a number above 1, like 5' })
    .default(5),
  interval: duration.prefault('1m'),
  half_life: duration.prefault('1h'),
  min_history: duration.prefault('1h'),
  min_requests: z
    .int({ error: expected('an integer') })
    .min(1, { error: 'expected an integer >= 1' })
    .default(20),
  min_tokens: z
    .int({ error: expected('an integer') })
    .min(1, { error: 'expected an integer >= 1' })
    .default(20_000),
  cooldown: duration.prefault('15m'),
  action: z
    .record(z.string().regex(TIER_NAME, { error: 'expected a tier name' }), enumOf(['alert', 'block']), {
      error: expected('a mapping of tier names to alert or block'),
    })
    .default({}),
}).superRefine((anomaly, ctx) => {
  if (anomaly.min_history < anomaly.interval) {
    const message = 'expected at least one interval of history';
    ctx.addIssue({ code: 'custom', message, input: anomaly.min_history, path: ['min_history'] });
  }
});

const alertsSchema = strictObject({
  budget_thresholds: thresholdList.default([0.5, 0.8, 1]),
  webhook: webhookSchema.optional(),
  anomaly: anomalySchema.optional(),
});

const modelSchema = strictObject({
  input_per_million: usdMicros,
  output_per_million: usdMicros,
  aliases: z.array(z.string().regex(MODEL_NAME), { error: expected('a list of model names') }).optional(),
});

const rawLimitSchema = strictObject({
  name: z.string({ error: expected('a limit name') }).regex(LIMIT_NAME, {
    error: 'expected a lowercase name like requests_per_minute (a-z, 0-9, _; at most 63 characters)',
  }),
  type: enumOf(['rate', 'budget', 'concurrency']),
  unit: enumOf(['requests', 'tokens', 'usd']).optional(),
  count: enumOf(['input', 'output', 'total']).optional(),
  limit: z.union([z.number(), z.string()], { error: expected('a positive integer') }),
  window: z.string({ error: expected(DURATION_WORDS) }).optional(),
  period: enumOf(['day', 'week', 'month']).optional(),
  timezone: timeZone.optional(),
  per: enumOf(['subject', 'org']).default('subject'),
  shadow: z.boolean({ error: expected('true or false') }).default(false),
  on_store_failure: enumOf(['open', 'closed', 'local']).default('closed'),
  alert_thresholds: thresholdList.optional(),
});

type RawLimit = z.output<typeof rawLimitSchema>;

/** A limit as its tier states it; the time zone is left undefined where the policy's default applies. */
export type LimitEntry = Omit<LimitSpec, 'timeZone'> & { timeZone: string | undefined };

/** Reads one raw limit, reporting each problem against the key that has it. */
class LimitReader {
  problems = 0;

  constructor(
    private readonly raw: RawLimit,
    private readonly ctx: z.core.$RefinementCtx<RawLimit>,
  ) {}

  report(key: keyof RawLimit, message: string): void {
    this.problems += 1;
    this.ctx.issues.push({ code: 'custom', message, input: this.raw[key], path: [key] });
  }

  refuse(keys: readonly (keyof RawLimit)[], why: string): void {
    for (const key of keys) if (this.raw[key] !== undefined) this.report(key, why);
  }

  integerLimit(): number {
    const { limit } = this.raw;
    if (typeof limit === 'number' && Number.isSafeInteger(limit) && limit > 0) return limit;
    this.report('limit', 'expected a positive integer');
    return 0;
  }

  tokenCount(): 'input' | 'output' | 'total' {
    return this.raw.count ?? 'total';
  }

  rate(): LimitEntry {
    const { raw } = this;
    this.refuse(['period', 'timezone'], 'only budget limits have a period and time zone');
    this.refuse(['alert_thresholds'], 'only budget limits have alert thresholds');
    if (raw.unit === undefined) this.report('unit', 'required: requests or tokens');
    else if (raw.unit === 'usd') this.report('unit', 'a rate limit counts requests or tokens');
    if (raw.unit !== 'tokens') this.refuse(['count'], 'only token limits have a count');
    const limit = this.integerLimit();
    const windowMs = raw.window === undefined ? undefined : parseDuration(raw.window);
    if (raw.window === undefined) this.report('window', 'required for a rate limit');
    else if (windowMs === undefined) this.report('window', `expected ${DURATION_WORDS}`);
    else if (windowMs < MIN_WINDOW_MS || windowMs > MAX_WINDOW_MS) {
      this.report('window', 'expected a window between 1s and 1d');
    } else if (limit * windowMs > MAX_RATE_PRODUCT) {
      this.report('limit', `limit × window (${limit} × ${windowMs} ms) is above 2^50; lower one of them`);
    }
    const tokens = raw.unit === 'tokens';
    return {
      ...this.common(),
      kind: 'rate',
      unit: tokens ? 'tokens' : 'requests',
      measure: tokens ? this.tokenCount() : 'requests',
      limit,
      windowMs: windowMs ?? 0,
      period: 'day',
      timeZone: undefined,
    };
  }

  budget(): LimitEntry {
    const { raw } = this;
    this.refuse(['window'], 'only rate limits have a window');
    if (raw.period === undefined) this.report('period', 'required for a budget limit: day, week or month');
    if (raw.unit !== 'tokens') this.refuse(['count'], 'only token limits have a count');
    let limit = 0;
    if (raw.unit === 'usd') {
      limit = parseUsdToMicros(raw.limit) ?? 0;
      if (limit === 0) this.report('limit', 'expected a positive dollar amount with at most 6 decimals');
    } else if (raw.unit === 'tokens') {
      limit = this.integerLimit();
    } else if (raw.unit === undefined) {
      this.report('unit', 'required: tokens or usd');
    } else {
      this.report('unit', 'a budget counts tokens or usd');
    }
    const tokens = raw.unit === 'tokens';
    return {
      ...this.common(),
      kind: 'budget',
      unit: tokens ? 'tokens' : 'usd_micros',
      measure: tokens ? this.tokenCount() : 'usd',
      limit,
      windowMs: 0,
      period: raw.period ?? 'day',
      timeZone: raw.timezone,
      ...(raw.alert_thresholds ? { alertThresholds: raw.alert_thresholds } : {}),
    };
  }

  concurrency(): LimitEntry {
    const { raw } = this;
    this.refuse(
      ['window', 'period', 'timezone', 'count'],
      'a concurrency limit has no window, period or count',
    );
    this.refuse(['alert_thresholds'], 'only budget limits have alert thresholds');
    if (raw.unit !== undefined && raw.unit !== 'requests') {
      this.report('unit', 'a concurrency limit counts requests; omit unit or write requests');
    }
    return {
      ...this.common(),
      kind: 'concurrency',
      unit: 'concurrent',
      measure: 'lease',
      limit: this.integerLimit(),
      windowMs: 0,
      period: 'day',
      timeZone: undefined,
    };
  }

  private common(): Pick<LimitSpec, 'name' | 'scope' | 'shadow' | 'onStoreFailure'> {
    const { raw } = this;
    return { name: raw.name, scope: raw.per, shadow: raw.shadow, onStoreFailure: raw.on_store_failure };
  }
}

const limitSchema = rawLimitSchema.transform((raw, ctx) => {
  const reader = new LimitReader(raw, ctx);
  const entry = reader[raw.type]();
  return reader.problems > 0 ? z.NEVER : entry;
});

const tierSchema = strictObject({
  models: z
    .union([z.literal('*'), z.array(z.string().min(1)).min(1)], {
      error: expected('"*" or a list of model names'),
    })
    .optional(),
  // A cap above MAX_TOKENS could never bind: the authority refuses such counts before any cap.
  max_output_tokens: z
    .int({ error: expected('an integer') })
    .min(1, { error: 'expected an integer >= 1' })
    .max(MAX_TOKENS, { error: `expected an integer <= ${MAX_TOKENS}` }),
  max_input_tokens: z
    .int({ error: expected('an integer') })
    .min(0, { error: 'expected an integer >= 0 (0: no cap)' })
    .max(MAX_TOKENS, { error: `expected an integer <= ${MAX_TOKENS}` })
    .default(0),
  limits: z.array(limitSchema, { error: expected('a list of limits') }).default([]),
}).superRefine((tier, ctx) => {
  const seen = new Set<string>();
  tier.limits.forEach((limit, index) => {
    if (seen.has(limit.name)) {
      const message = `duplicate limit name "${limit.name}" in this tier`;
      ctx.addIssue({ code: 'custom', message, input: limit.name, path: ['limits', index, 'name'] });
    }
    seen.add(limit.name);
  });
});

function nonEmptyRecord<Value extends z.ZodType>(
  keyPattern: RegExp,
  keyHint: string,
  value: Value,
  what: string,
) {
  return z
    .record(z.string().regex(keyPattern, { error: keyHint }), value, {
      error: expected(`a mapping of ${what}`),
    })
    .refine((record) => Object.keys(record).length > 0, { error: `define at least one of the ${what}` });
}

/**
 * The policy file as `yaml` parses it: strict (unknown keys are errors), defaults filled, durations in
 * milliseconds, dollars in micro-dollars, and every cross-reference (aliases, tier models) checked.
 */
export const policyFileSchema = strictObject({
  version: z.literal(1, { error: expected('version 1') }),
  timezone: timeZone.default('UTC'),
  reservation: strictObject({
    lease: duration.prefault('10m'),
    idempotency_window: duration.prefault('1h'),
  }).prefault({}),
  replicas: z
    .int({ error: expected('an integer') })
    .min(1, { error: 'expected an integer >= 1' })
    .default(1),
  models: nonEmptyRecord(MODEL_NAME, 'expected a model name without spaces', modelSchema, 'models'),
  tiers: nonEmptyRecord(TIER_NAME, 'expected a lowercase tier name like free', tierSchema, 'tiers'),
  alerts: alertsSchema.optional(),
}).superRefine((file, ctx) => {
  for (const tier of Object.keys(file.alerts?.anomaly?.action ?? {})) {
    if (!(tier in file.tiers)) {
      const message = `unknown tier "${tier}"; define it under tiers`;
      ctx.addIssue({ code: 'custom', message, input: tier, path: ['alerts', 'anomaly', 'action', tier] });
    }
  }
  const owners = new Map<string, string>(Object.keys(file.models).map((name) => [name, name]));
  for (const [name, model] of Object.entries(file.models)) {
    model.aliases?.forEach((alias, index) => {
      const owner = owners.get(alias);
      if (owner !== undefined) {
        const message = `"${alias}" already names model "${owner}"`;
        ctx.addIssue({ code: 'custom', message, input: alias, path: ['models', name, 'aliases', index] });
      }
      owners.set(alias, name);
    });
  }
  for (const [name, tier] of Object.entries(file.tiers)) {
    if (!Array.isArray(tier.models)) continue;
    tier.models.forEach((model, index) => {
      if (!owners.has(model)) {
        const message = `unknown model "${model}"; define it under models`;
        ctx.addIssue({ code: 'custom', message, input: model, path: ['tiers', name, 'models', index] });
      }
    });
  }
});

/** The validated file, before it becomes a Policy. */
export type PolicyFile = z.output<typeof policyFileSchema>;

/** Turns a validated file into the Policy the decision logic reads: aliases resolved, time zones filled. */
export function toPolicy(file: PolicyFile): Policy {
  const models = new Map<string, ModelSpec>();
  for (const [name, model] of Object.entries(file.models)) {
    const spec: ModelSpec = {
      name,
      inputMicrosPerMillion: model.input_per_million,
      outputMicrosPerMillion: model.output_per_million,
    };
    models.set(name, spec);
    for (const alias of model.aliases ?? []) models.set(alias, spec);
  }
  const alerts = toAlerts(file.alerts);
  const tiers = new Map<string, TierSpec>();
  for (const [name, tier] of Object.entries(file.tiers)) {
    const allowed = Array.isArray(tier.models)
      ? new Set(tier.models.map((model) => models.get(model)?.name ?? model))
      : undefined;
    tiers.set(name, {
      name,
      models: allowed,
      maxOutputTokens: tier.max_output_tokens,
      maxInputTokens: tier.max_input_tokens,
      limits: tier.limits.map((limit) => withThresholds(limit, file.timezone, alerts)),
    });
  }
  return {
    timeZone: file.timezone,
    leaseMs: file.reservation.lease,
    idempotencyWindowMs: file.reservation.idempotency_window,
    replicas: file.replicas,
    models,
    tiers,
    ...(alerts ? { alerts } : {}),
  };
}

/** A limit with its time zone filled and, for a budget, its alert thresholds (its own, else the policy's). */
function withThresholds(limit: LimitEntry, timeZone: string, alerts: AlertsSpec | undefined): LimitSpec {
  const spec: LimitSpec = { ...limit, timeZone: limit.timeZone ?? timeZone };
  if (spec.kind !== 'budget') return spec;
  const { alertThresholds: own, ...rest } = spec;
  const thresholds = own ?? alerts?.budgetThresholds ?? [];
  return thresholds.length > 0 ? { ...rest, alertThresholds: thresholds } : rest;
}

function toAlerts(raw: PolicyFile['alerts']): AlertsSpec | undefined {
  if (!raw) return undefined;
  const { webhook, anomaly } = raw;
  return {
    budgetThresholds: raw.budget_thresholds,
    webhook: webhook && {
      url: webhook.url,
      secretEnv: webhook.secret_env,
      timeoutMs: webhook.timeout,
      maxInFlight: webhook.max_in_flight,
      retryForMs: webhook.retry_for,
    },
    anomaly: anomaly && {
      factor: anomaly.factor,
      intervalMs: anomaly.interval,
      halfLifeMs: anomaly.half_life,
      minHistoryMs: anomaly.min_history,
      minRequests: anomaly.min_requests,
      minTokens: anomaly.min_tokens,
      cooldownMs: anomaly.cooldown,
      actions: new Map(Object.entries(anomaly.action) as [string, AnomalyAction][]),
    },
  };
}
