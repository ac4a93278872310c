/** What one `make bench` run measured: written to bench/results/latest.json and rendered by report.ts and chart.ts. */

import type { BurstResult } from './burst.js';
import type { EnvoyResult } from './envoy.js';
import type { ProfileSummary } from './cpuprofile.js';
import type { SigningResult } from './signing.js';
import type { HistogramData } from './histogram.js';
import type { Operation } from './loadgen.js';

export interface CpuShare {
  /** Cores busy over the measured period (1 = one core all the time), by process. */
  [process: string]: number;
}

export interface LoadPoint {
  mode: 'closed' | 'open';
  op: Operation;
  concurrency?: number;
  fraction?: number;
  offeredPerSecond?: number;
  operations: number;
  operationsPerSecond: number;
  decisionsPerSecond: number;
  callsPerSecond: number;
  p50Ms: number;
  p99Ms: number;
  p999Ms: number;
  meanMs: number;
  maxMs: number;
  /** Open loop: from the actual send, and the generator's own delay in sending. */
  serviceP50Ms?: number;
  serviceP99Ms?: number;
  lagP50Ms?: number;
  lagP99Ms?: number;
  denied: number;
  errors: Record<string, number>;
  unfinished: number;
  cpu: CpuShare;
  /** Redis commands over the measured period, by command (from INFO commandstats). */
  redisCommands?: Record<string, number>;
  /** Redis commands over the whole phase (warm-up included), and the gRPC calls sent in it, by method. */
  redisTotals?: {
    commands: Record<string, number>;
    sent: Record<string, number>;
    /** How long the window of `commands` was. */
    seconds?: number;
    /** Scripts a second the servers ran while idle just before (housekeeping), taken off the count. */
    idleScriptsPerSecond?: number;
  };
  latencyBuckets?: HistogramData;
}

export interface GrpcScenario {
  id: string;
  title: string;
  server: string;
  skipped?: string;
  closed?: LoadPoint;
  checkOnly?: LoadPoint;
  batch?: LoadPoint;
  open: LoadPoint[];
  notes: string[];
}

/** One CheckQuota-alone closed loop of the rounds scenario. */
export interface RoundsRun {
  round: number;
  /** transport, redis, memory or rlf, as the gRPC scenarios. */
  id: string;
  callsPerSecond: number;
  p50Ms: number;
  p99Ms: number;
  /** The server process's CPU milliseconds per CheckQuota. */
  serverMsPerCall: number;
  cpu: CpuShare;
  errors: number;
}

export interface RoundsResult {
  rounds: number;
  seconds: number;
  runs: RoundsRun[];
}

export interface StorageResult {
  skipped?: string;
  commandLine: string;
  sha: string;
  argCount: number;
  runs: {
    pipeline: number;
    clients: number;
    requests: number;
    rps: number;
    p50Ms: number;
    p99Ms: number;
    maxMs: number;
    /** redis-server's CPU over the run, in cores. */
    redisCores: number;
  }[];
  settleRps?: number;
}

/** Where the gateway scenario's load goes: the upstream itself, quotad's gateway on each store, Portkey's. */
export type GatewayTarget = 'direct' | 'quotad-memory' | 'quotad-redis' | 'portkey';

export interface GatewayRun {
  round: number;
  target: GatewayTarget;
  connections: number;
  requests: number;
  requestsPerSecond: number;
  p50Ms: number;
  p99Ms: number;
  meanMs: number;
  non2xx: number;
  errors: number;
  /** CPU milliseconds per request, by process (gateway: quotad's or Portkey's; authority; redis; upstream). */
  cpuMsPerRequest: CpuShare;
  /**
   * A quotad gateway's mean milliseconds per model call by stage, from its /metrics over the run (warm-up
   * included): intake, estimate, decide, upstream, relay, and total (request to end of response).
   */
  stagesMs?: Record<string, number>;
}

export interface GatewayResult {
  runs: GatewayRun[];
  rounds: number;
  seconds: number;
  warmupSeconds: number;
  portkeyVersion: string;
  commandLines: string[];
}

export interface FootprintResult {
  principals: number;
  limits: number;
  method: string;
  baselineBytes: number;
  afterReserveBytes: number;
  afterDropReservationsBytes: number;
  /** used_memory of an empty keyspace (script loaded), and once the counters alone are restored into it. */
  countersBaselineBytes: number;
  countersOnlyBytes: number;
  /** From the counters alone: (countersOnlyBytes - countersBaselineBytes) / (principals × limits). */
  countersPerPrincipalLimit: number;
  /** From the counters left after UNLINKing the records, in the key tables the records had grown. */
  countersBesideRecordsPerPrincipalLimit: number;
  reservationRecordBytes: number;
  keys: number;
  slidingLogMembers: number;
  slidingLogBytes: number;
  slidingLogPerPrincipalLimit: number;
  slidingLogEncoding: string;
}

export interface Results {
  startedAt: string;
  finishedAt: string;
  durationSeconds: number;
  machine: Record<string, string | number>;
  commandLines: Record<string, string>;
  settings: Record<string, string | number>;
  grpc: GrpcScenario[];
  storage?: StorageResult;
  rounds?: RoundsResult;
  gateway?: GatewayResult;
  footprint?: FootprintResult;
  profile?: ProfileSummary & { operationsPerSecond: number; seconds: number };
  burst?: BurstResult;
  envoy?: EnvoyResult;
  signing?: SigningResult;
  protoHasBatch: boolean;
}
