import type { DestinationStream } from 'pino';
import { QuotaAuthority } from '../authority/quota-authority.js';
import { startAuthorityServer } from '../authority/server.js';
import type { Clock } from '../core/clock.js';
import { PolicyWatcher } from '../policy/watcher.js';
import { MemoryStore } from '../store/memory-store.js';
import { createRedisClient, RedisStore } from '../store/redis/redis-store.js';
import type { QuotaStore } from '../store/store.js';
import { createLogger, type Logger } from '../telemetry/logger.js';
import { AuthorityMetrics } from '../telemetry/metrics.js';
import { startMetricsServer } from '../telemetry/metrics-server.js';
import type { ServeConfig } from './config.js';
import { VERSION } from './version.js';

const systemClock: Clock = { now: () => Date.now() };

export interface ServeOverrides {
  /** Drives time in both stores and the calendar (tests). Production uses the system clock and Redis TIME. */
  clock?: Clock;
  /** Where log lines go (tests capture them). */
  logDestination?: DestinationStream;
}

export interface RunningAuthority {
  grpcPort: number;
  metricsPort: number;
  logger: Logger;
  metrics: AuthorityMetrics;
  policy: PolicyWatcher;
  /** Graceful stop: NOT_SERVING, drain, finish in-flight calls, then close the policy watch and the store. */
  stop(): Promise<void>;
}

async function openStore(config: ServeConfig, clock: Clock | undefined, logger: Logger): Promise<QuotaStore> {
  if (!config.redisUrl) {
    logger.warn(
      'no REDIS_URL: counters live in this process only. Run a single instance; replicas would not share limits, and a restart forgets usage.',
    );
    return new MemoryStore({ clock: clock ?? systemClock });
  }
  const redis = createRedisClient(config.redisUrl, { commandTimeoutMs: config.redisTimeoutMs });
  redis.on('error', (error: Error) => logger.warn({ err: error.message }, 'redis connection error'));
  redis.on('ready', () => logger.info('redis ready'));
  try {
    await redis.connect();
  } catch (error) {
    // Serve anyway: each limit's on_store_failure answers until the background reconnect succeeds.
    logger.error(
      { err: (error as Error).message },
      'redis unreachable at start; failure policies decide until it is back',
    );
  }
  return new RedisStore(clock ? { redis, clock } : { redis });
}

/** Wires and starts the authority: policy, store, gRPC server and metrics endpoint. */
export async function startAuthority(
  config: ServeConfig,
  overrides: ServeOverrides = {},
): Promise<RunningAuthority> {
  const logger = createLogger({
    level: config.logLevel,
    name: 'quotad',
    destination: overrides.logDestination,
  });
  const clock = overrides.clock;
  const store = await openStore(config, clock, logger);
  const metrics = new AuthorityMetrics({ version: VERSION, storeKind: store.kind });

  const policy = new PolicyWatcher(config.policyPath);
  policy.on('reloaded', ({ sha256 }) => {
    metrics.recordPolicyReload({ ok: true, loadedAtMs: Date.now() });
    logger.info({ path: policy.path, sha256 }, 'policy reloaded');
  });
  policy.on('rejected', (error) => {
    metrics.recordPolicyReload({ ok: false });
    logger.error(
      { path: policy.path, err: error.message },
      'policy edit rejected; the last good policy stays in force',
    );
  });
  policy.on('watchFailed', (error) =>
    logger.error({ err: error.message }, 'policy directory no longer watched'),
  );
  try {
    await policy.start();
  } catch (error) {
    await store.close();
    throw error;
  }
  metrics.recordPolicyReload({ ok: true, loadedAtMs: Date.now() });

  const authority = new QuotaAuthority({
    store,
    fallback: new MemoryStore({ clock: clock ?? systemClock }),
    policy: () => policy.current,
    clock: clock ?? systemClock,
    metrics,
    logger,
  });
  const server = await startAuthorityServer({
    address: `${config.grpcAddress.host}:${config.grpcAddress.port}`,
    authority,
    metrics,
    logger,
  });
  const metricsServer = await startMetricsServer({
    host: config.metricsAddress.host,
    port: config.metricsAddress.port,
    render: () => metrics.render(),
  });
  logger.info(
    {
      version: VERSION,
      grpc: `${config.grpcAddress.host}:${server.port}`,
      metrics: `${config.metricsAddress.host}:${metricsServer.port}`,
      store: store.kind,
      policy: policy.path,
      policySha256: policy.sha256,
    },
    store.kind === 'memory'
      ? 'quotad authority serving (in-process store, single instance)'
      : 'quotad authority serving',
  );

  let stopping: Promise<void> | undefined;
  return {
    grpcPort: server.port,
    metricsPort: metricsServer.port,
    logger,
    metrics,
    policy,
    stop() {
      stopping ??= (async () => {
        logger.info({ drainDelayMs: config.shutdownDelayMs }, 'shutting down: health NOT_SERVING, draining');
        await server.shutdown({ drainDelayMs: config.shutdownDelayMs, graceMs: config.shutdownGraceMs });
        await policy.stop();
        await metricsServer.close();
        await store.close();
        logger.info('stopped');
      })();
      return stopping;
    },
  };
}
