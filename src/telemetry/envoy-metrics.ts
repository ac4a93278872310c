import type { status as GrpcStatus } from '@grpc/grpc-js';
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import { LATENCY_BUCKETS_SECONDS } from './metrics.js';

export type EnvoyPhaseLabel = 'charge' | 'reserve' | 'settle';
/** What became of one descriptor of a request. */
export type EnvoyDescriptorResult =
  'within_limit' | 'over_limit' | 'shadow_over_limit' | 'unlimited' | 'replaced' | 'no_rule';
export type EnvoyStoreFailureMode = 'open' | 'closed' | 'local';

/** The `domain` label of a request for a domain no file defines: one series, whatever callers send. */
export const UNKNOWN_DOMAIN_LABEL = '(unknown)';

/**
 * The Envoy front's metrics, in the authority's registry. Labels are the configuration's: domain and
 * rule (envoyproxy/ratelimit's statistics key, which carries a request's values only where a rule says
 * `detailed_metric` or `value_to_metric`), never a request's own values otherwise.
 */
export class EnvoyMetrics {
  /** ShouldRateLimit calls by gRPC status name. */
  readonly calls: Counter<'code'>;
  /** Answered calls by domain, overall code (OK, OVER_LIMIT) and phase. */
  readonly decisions: Counter<'domain' | 'code' | 'phase'>;
  /** Descriptors by domain, rule and what became of them. */
  readonly descriptors: Counter<'domain' | 'rule' | 'result'>;
  /** Hits charged by domain and rule (as envoyproxy/ratelimit's total_hits, but only what was charged). */
  readonly hitsCharged: Counter<'domain' | 'rule'>;
  /** Reserve and settle outcomes by domain. */
  readonly reservations: Counter<'domain' | 'outcome'>;
  /** Calls answered by --envoy-on-store-failure because the store was out. */
  readonly degraded: Counter<'mode'>;
  readonly duration: Histogram<'phase'>;
  readonly configReloads: Counter<'result'>;
  /** 1 while the directory's last read was valid, 0 while a rejected edit waits to be fixed. */
  readonly configValid: Gauge;
  readonly configDomains: Gauge;

  constructor(registry: Registry) {
    const registers = [registry];
    this.calls = new Counter({
      name: 'quotad_envoy_calls_total',
      help: 'ShouldRateLimit calls by gRPC status.',
      labelNames: ['code'] as const,
      registers,
    });
    this.decisions = new Counter({
      name: 'quotad_envoy_decisions_total',
      help: 'ShouldRateLimit answers by domain, overall code and reserve-and-settle phase.',
      labelNames: ['domain', 'code', 'phase'] as const,
      registers,
    });
    this.descriptors = new Counter({
      name: 'quotad_envoy_descriptors_total',
      help: 'Descriptors by domain, rule and result (within_limit, over_limit, shadow_over_limit, unlimited, replaced, no_rule).',
      labelNames: ['domain', 'rule', 'result'] as const,
      registers,
    });
    this.hitsCharged = new Counter({
      name: 'quotad_envoy_hits_charged_total',
      help: 'Hits charged to Envoy rules (refused requests charge none), by domain and rule.',
      labelNames: ['domain', 'rule'] as const,
      registers,
    });
    this.reservations = new Counter({
      name: 'quotad_envoy_reservations_total',
      help: 'Reserve-and-settle outcomes over Envoy by domain (admitted, denied, duplicate, settled, settled_duplicate, settled_without_reservation).',
      labelNames: ['domain', 'outcome'] as const,
      registers,
    });
    this.degraded = new Counter({
      name: 'quotad_envoy_degraded_decisions_total',
      help: 'ShouldRateLimit calls answered by --envoy-on-store-failure while the store was out.',
      labelNames: ['mode'] as const,
      registers,
    });
    this.duration = new Histogram({
      name: 'quotad_envoy_decision_duration_seconds',
      help: 'Time to answer ShouldRateLimit, by phase.',
      labelNames: ['phase'] as const,
      buckets: [...LATENCY_BUCKETS_SECONDS],
      registers,
    });
    this.configReloads = new Counter({
      name: 'quotad_envoy_config_reloads_total',
      help: 'Envoy configuration directory reloads by result (success, failure).',
      labelNames: ['result'] as const,
      registers,
    });
    this.configValid = new Gauge({
      name: 'quotad_envoy_config_valid',
      help: '1 when the last read of the Envoy configuration directory was valid, 0 while an invalid edit is pending.',
      registers,
    });
    this.configDomains = new Gauge({
      name: 'quotad_envoy_config_domains',
      help: 'Envoy domains in force.',
      registers,
    });
    for (const code of [
      'OK',
      'INVALID_ARGUMENT',
      'INTERNAL',
      'RESOURCE_EXHAUSTED',
    ] as (keyof typeof GrpcStatus)[]) {
      this.calls.inc({ code }, 0);
    }
    for (const mode of ['open', 'closed', 'local'] as const) this.degraded.inc({ mode }, 0);
    for (const result of ['success', 'failure']) this.configReloads.inc({ result }, 0);
  }
}
