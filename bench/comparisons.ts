/**
 * The ratios `make bench` judges its targets on, round by round, with their median and spread. A ratio is
 * only ever taken between figures of the same round: the machine drifts between rounds, both sides of a
 * ratio drift together within one.
 */
import type { GatewayResult, GatewayRun, GatewayTarget, RoundsResult } from './result-types.js';

export interface Spread {
  median: number;
  min: number;
  max: number;
  /** One value per round, in round order. */
  values: number[];
}

export function spreadOf(values: number[]): Spread {
  const finite = values.filter((v) => Number.isFinite(v));
  if (finite.length === 0) return { median: NaN, min: NaN, max: NaN, values };
  const sorted = [...finite].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  const median =
    sorted.length % 2 === 1
      ? (sorted[mid] as number)
      : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
  return { median, min: sorted[0] as number, max: sorted[sorted.length - 1] as number, values };
}

/** "1.23× (1.10–1.31)": a median with the range of the rounds. */
export function showSpread(s: Spread | undefined, unit = '×', digits = 2): string {
  if (!s || !Number.isFinite(s.median)) return '—';
  const f = (n: number) => n.toFixed(digits);
  return s.values.length > 1 ? `${f(s.median)}${unit} (${f(s.min)}–${f(s.max)})` : `${f(s.median)}${unit}`;
}

/** The gateway scenario's targets, in the order each round loads them. */
export const GATEWAY_TARGETS: readonly GatewayTarget[] = [
  'direct',
  'quotad-memory',
  'quotad-redis',
  'portkey',
];

const QUOTAD: readonly GatewayTarget[] = ['quotad-memory', 'quotad-redis'];

/** The quotad gateway's own process, the authority and Redis behind it: what one request costs quotad. */
export function quotadCpuMs(run: GatewayRun | undefined): number {
  if (!run) return NaN;
  const c = run.cpuMsPerRequest;
  return (c.gateway ?? 0) + (c.authority ?? 0) + (c.redis ?? 0);
}

export interface GatewayComparison {
  rounds: number[];
  run(round: number, target: GatewayTarget, connections: number): GatewayRun | undefined;
  /** p50 at one connection less direct's, per target. */
  addedP50: Record<GatewayTarget, Spread>;
  /** quotad's added p50 ÷ Portkey's, at one connection. */
  addedP50VsPortkey: Record<string, Spread>;
  /** The gateway process's CPU per request ÷ Portkey's, at one connection. */
  gatewayCpuVsPortkey: Record<string, Spread>;
  /** Gateway + authority (+ Redis) CPU per request ÷ Portkey's, at one connection. */
  totalCpuVsPortkey: Record<string, Spread>;
  /** Requests/s at 32 connections ÷ Portkey's. */
  throughputVsPortkey: Record<string, Spread>;
  /** Requests/s at 32 connections ÷ direct's. */
  throughputVsDirect: Record<GatewayTarget, Spread>;
  /** Medians per target and connections: req/s, p50, p99, gateway CPU ms per request. */
  median(target: GatewayTarget, connections: number, pick: (run: GatewayRun) => number): number;
}

export function compareGateways(gateway: GatewayResult): GatewayComparison {
  const rounds = [...new Set(gateway.runs.map((r) => r.round))].sort((a, b) => a - b);
  const run = (round: number, target: GatewayTarget, connections: number) =>
    gateway.runs.find((r) => r.round === round && r.target === target && r.connections === connections);
  const perRound = (f: (round: number) => number) => spreadOf(rounds.map(f));
  const lone = 1;
  const many = Math.max(...gateway.runs.map((r) => r.connections));
  const added = (round: number, target: GatewayTarget) =>
    (run(round, target, lone)?.p50Ms ?? NaN) - (run(round, 'direct', lone)?.p50Ms ?? NaN);
  /** Round by round: `pick` of the target's run ÷ `pickTo` of `to`'s, both at `connections`. */
  const ratio = (
    target: GatewayTarget,
    to: GatewayTarget,
    connections: number,
    pick: (run: GatewayRun) => number,
    pickTo = pick,
  ) =>
    perRound((r) => {
      const [of, against] = [run(r, target, connections), run(r, to, connections)];
      return of && against ? pick(of) / pickTo(against) : NaN;
    });
  const byTarget = <T>(targets: readonly GatewayTarget[], f: (t: GatewayTarget) => T) =>
    Object.fromEntries(targets.map((t) => [t, f(t)])) as Record<GatewayTarget, T>;
  const gatewayCpu = (r: GatewayRun) => r.cpuMsPerRequest.gateway ?? NaN;
  const throughput = (r: GatewayRun) => r.requestsPerSecond;
  return {
    rounds,
    run,
    addedP50: byTarget(GATEWAY_TARGETS, (t) => perRound((r) => added(r, t))),
    addedP50VsPortkey: byTarget(QUOTAD, (t) => perRound((r) => added(r, t) / added(r, 'portkey'))),
    gatewayCpuVsPortkey: byTarget(QUOTAD, (t) => ratio(t, 'portkey', lone, gatewayCpu)),
    totalCpuVsPortkey: byTarget(QUOTAD, (t) => ratio(t, 'portkey', lone, quotadCpuMs, gatewayCpu)),
    throughputVsPortkey: byTarget(QUOTAD, (t) => ratio(t, 'portkey', many, throughput)),
    throughputVsDirect: byTarget(GATEWAY_TARGETS, (t) => ratio(t, 'direct', many, throughput)),
    median: (target, connections, pick) =>
      spreadOf(
        rounds.map((r) => {
          const found = run(r, target, connections);
          return found ? pick(found) : NaN;
        }),
      ).median,
  };
}

export interface RoundsComparison {
  rounds: number[];
  /** CheckQuota/s ÷ the transport ceiling's, per store. */
  vsTransport: Record<'redis' | 'memory', Spread>;
  /** CheckQuota/s ÷ rate-limiter-flexible's, per store. */
  vsRlf: Record<'redis' | 'memory', Spread>;
  /** The server's CPU per CheckQuota ÷ the no-op server's, per store (and rate-limiter-flexible's). */
  serverCpuVsTransport: Record<'redis' | 'memory' | 'rlf', Spread>;
  median(id: string, pick: (run: RoundsResult['runs'][number]) => number): number;
}

export function compareRounds(result: RoundsResult): RoundsComparison {
  const rounds = [...new Set(result.runs.map((r) => r.round))].sort((a, b) => a - b);
  const at = (round: number, id: string) => result.runs.find((r) => r.round === round && r.id === id);
  const per = (f: (round: number) => number) => spreadOf(rounds.map(f));
  const calls = (round: number, id: string) => at(round, id)?.callsPerSecond ?? NaN;
  const cpu = (round: number, id: string) => at(round, id)?.serverMsPerCall ?? NaN;
  return {
    rounds,
    vsTransport: {
      redis: per((r) => calls(r, 'redis') / calls(r, 'transport')),
      memory: per((r) => calls(r, 'memory') / calls(r, 'transport')),
    },
    vsRlf: {
      redis: per((r) => calls(r, 'redis') / calls(r, 'rlf')),
      memory: per((r) => calls(r, 'memory') / calls(r, 'rlf')),
    },
    serverCpuVsTransport: {
      redis: per((r) => cpu(r, 'redis') / cpu(r, 'transport')),
      memory: per((r) => cpu(r, 'memory') / cpu(r, 'transport')),
      rlf: per((r) => cpu(r, 'rlf') / cpu(r, 'transport')),
    },
    median: (id, pick) =>
      spreadOf(
        rounds.map((r) => {
          const found = at(r, id);
          return found ? pick(found) : NaN;
        }),
      ).median,
  };
}
