import { Cluster, Redis, type ClusterOptions, type RedisOptions } from 'ioredis';

export interface RedisNode {
  host: string;
  port: number;
}

/** Where the shared store is, in one of the three ways an operator runs Redis. */
export type RedisTarget =
  | { mode: 'standalone'; url: string }
  | { mode: 'cluster'; nodes: RedisNode[]; tls: boolean; username?: string; password?: string }
  | {
      mode: 'sentinel';
      sentinels: RedisNode[];
      /** The master's name as the sentinels monitor it (`sentinel monitor <name> …`). */
      name: string;
      tls: boolean;
      username?: string;
      password?: string;
    };

/** A client of any of the three: the commands quotad sends are the same, only routing differs. */
export type RedisConnection = Redis | Cluster;

export interface RedisClientOptions {
  /** The longest any command is waited for (`--redis-timeout`); the authority waits less when a call's deadline leaves less. */
  commandTimeoutMs: number;
}

/** Failover replies after which a connection must find the master again rather than retry where it is. */
const RECONNECT_ON = /^(READONLY|MASTERDOWN|LOADING)/;

/**
 * Per-connection options shared by all three modes: fail fast instead of waiting (no resend after a
 * reconnect, one bounded timeout per command), reconnect in the background so recovery needs no restart.
 * ioredis's auto-pipelining stays off (see RedisStore#pipelined).
 */
function connectionOptions(options: RedisClientOptions): RedisOptions {
  return {
    commandTimeout: options.commandTimeoutMs,
    connectTimeout: Math.max(1_000, options.commandTimeoutMs),
    autoResendUnfulfilledCommands: false,
    maxRetriesPerRequest: 0,
    enableAutoPipelining: false,
    retryStrategy: (attempt) => Math.min(50 * 2 ** Math.min(attempt, 5), 1_000),
    // A master demoted under us answers writes with READONLY: reconnect (Sentinel then names the new one).
    reconnectOnError: (error) => RECONNECT_ON.test(error.message),
  };
}

function credentials(target: { username?: string; password?: string }): RedisOptions {
  return {
    ...(target.username ? { username: target.username } : {}),
    ...(target.password ? { password: target.password } : {}),
  };
}

/**
 * A client for the target, connected lazily (call `connect()`). Standalone and Sentinel give a `Redis`
 * with no offline queue: a command while the connection is down fails at once and the authority answers
 * by its failure policy. Sentinel asks the sentinels for the current master on every (re)connection and
 * listens for `+switch-master`, so it follows a promoted replica without a restart.
 *
 * Cluster gives an ioredis `Cluster`: it follows MOVED/ASK, refreshes its slot map after a failover, and
 * keeps a short queue per node while one reconnects (each command still bounded by its timeout, and the
 * authority waits no longer than a call's deadline).
 */
export function createRedisConnection(target: RedisTarget, options: RedisClientOptions): RedisConnection {
  const base = connectionOptions(options);
  switch (target.mode) {
    case 'standalone':
      return new Redis(target.url, { ...base, enableOfflineQueue: false, lazyConnect: true });
    case 'sentinel':
      return new Redis({
        ...base,
        ...credentials(target),
        sentinels: target.sentinels,
        name: target.name,
        role: 'master',
        enableOfflineQueue: false,
        lazyConnect: true,
        failoverDetector: true,
        sentinelRetryStrategy: (attempt) => Math.min(50 * 2 ** Math.min(attempt, 5), 1_000),
        ...(target.tls ? { tls: {}, sentinelTLS: {}, enableTLSForSentinelMode: true } : {}),
      });
    case 'cluster': {
      const clusterOptions: ClusterOptions = {
        redisOptions: { ...base, ...credentials(target), ...(target.tls ? { tls: {} } : {}) },
        scaleReads: 'master',
        lazyConnect: true,
        enableOfflineQueue: false,
        enableReadyCheck: true,
        maxRedirections: 16,
        retryDelayOnFailover: 50,
        retryDelayOnClusterDown: 50,
        retryDelayOnTryAgain: 50,
        retryDelayOnMoved: 0,
        slotsRefreshTimeout: Math.max(1_000, options.commandTimeoutMs),
        slotsRefreshInterval: 2_000,
        clusterRetryStrategy: (attempt) => Math.min(50 * 2 ** Math.min(attempt, 5), 1_000),
        ...(target.tls ? { dnsLookup: (address, callback) => callback(null, address) } : {}),
      };
      return new Cluster(target.nodes, clusterOptions);
    }
  }
}

/** Which mode a client is in, for logs and metrics. */
export function connectionMode(redis: RedisConnection): RedisTarget['mode'] {
  if (redis instanceof Cluster) return 'cluster';
  return redis.options.sentinels ? 'sentinel' : 'standalone';
}

/**
 * The masters a client writes to right now: one for standalone and Sentinel, every master holding slots
 * for Cluster. Operations that must reach each shard (WAIT, markers, health) go through these.
 */
export function masterClients(redis: RedisConnection): Redis[] {
  return redis instanceof Cluster ? redis.nodes('master') : [redis];
}

/**
 * Closes a client for good: QUIT (replies already on their way still arrive), then a disconnect, which
 * also closes what QUIT leaves open (a Sentinel client's failover-detector connections to the sentinels).
 */
export async function closeConnection(redis: RedisConnection): Promise<void> {
  await redis.quit().catch(() => undefined);
  redis.disconnect();
}
