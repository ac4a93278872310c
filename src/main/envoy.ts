import type { RedisConnection } from '../store/redis/connection.js';
import type { Clock } from '../core/clock.js';
import { EnvoyConfigWatcher } from '../envoy/config-watcher.js';
import { loadRateLimitServiceDefinition, RLS_SERVICE_NAME } from '../envoy/rls-proto.js';
import { RateLimitService } from '../envoy/rls-service.js';
import type { ExtraService } from '../authority/server.js';
import { EnvoyMemoryStore } from '../store/envoy-memory-store.js';
import { EnvoyRedisStore } from '../store/redis/envoy-redis-store.js';
import { EnvoyMetrics } from '../telemetry/envoy-metrics.js';
import type { Logger } from '../telemetry/logger.js';
import type { AuthorityMetrics } from '../telemetry/metrics.js';
import type { ServeConfig } from './config.js';

export interface EnvoyFront {
  service: ExtraService;
  watcher: EnvoyConfigWatcher;
  metrics: EnvoyMetrics;
  stop(): Promise<void>;
}

export interface EnvoyFrontOptions {
  directory: string;
  config: ServeConfig;
  /** The authority's Redis client when it has one; the Envoy counters then live there too. */
  redis: RedisConnection | undefined;
  /** Injected in tests; production: the system clock here and Redis TIME in the script. */
  clock: Clock | undefined;
  localClock: Clock;
  replicas: () => number;
  metrics: AuthorityMetrics;
  logger: Logger;
}

/**
 * Envoy's RateLimitService over a directory of envoyproxy/ratelimit files: loads and watches the directory
 * (a bad directory at start is an error: nothing serves on a configuration nobody checked) and counts in
 * the authority's store.
 */
export async function startEnvoyFront(options: EnvoyFrontOptions): Promise<EnvoyFront> {
  const { logger, config } = options;
  const metrics = new EnvoyMetrics(options.metrics.registry);
  const watcher = new EnvoyConfigWatcher(options.directory);
  const inForce = (domains: number) => {
    metrics.configValid.set(1);
    metrics.configDomains.set(domains);
  };
  watcher.on('reloaded', ({ config: next, sha256 }) => {
    metrics.configReloads.inc({ result: 'success' });
    inForce(next.domains.size);
    logger.info(
      { directory: watcher.directory, sha256, domains: [...next.domains.keys()] },
      'envoy config reloaded',
    );
  });
  watcher.on('rejected', (error) => {
    metrics.configReloads.inc({ result: 'failure' });
    metrics.configValid.set(0);
    logger.error(
      { directory: watcher.directory, err: error.message },
      'envoy config edit rejected; the last good config stays in force',
    );
  });
  watcher.on('watchFailed', (error) =>
    logger.error({ err: error.message }, 'envoy config directory no longer watched'),
  );
  const initial = await watcher.start();
  inForce(initial.domains.size);
  const memory = () =>
    new EnvoyMemoryStore({
      clock: options.localClock,
      maxEntries: config.memoryMaxEntries,
      onFull: () => options.metrics.memoryStoreFull.inc({ store: 'fallback' }),
    });
  const store = options.redis
    ? new EnvoyRedisStore(
        options.clock ? { redis: options.redis, clock: options.clock } : { redis: options.redis },
      )
    : memory();
  const service = new RateLimitService({
    config: () => watcher.current,
    store,
    fallback: memory(),
    onStoreFailure: config.envoyOnStoreFailure,
    replicas: options.replicas,
    maxStoreWaitMs: config.redisTimeoutMs,
    metrics,
    logger,
  });
  logger.info(
    {
      directory: watcher.directory,
      sha256: watcher.sha256,
      domains: [...initial.domains.keys()],
      store: store.kind,
    },
    'envoy RateLimitService serving',
  );
  return {
    service: {
      name: RLS_SERVICE_NAME,
      definition: loadRateLimitServiceDefinition(),
      handlers: service.handlers(),
    },
    watcher,
    metrics,
    stop: () => watcher.stop(),
  };
}
