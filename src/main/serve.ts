import type { DestinationStream } from 'pino';
import { WebhookDelivery } from '../events/webhook-delivery.js';
import { AdminTokens, watchAdminTokensFile } from '../authority/admin-tokens.js';
import { startAuthorityServer } from '../authority/server.js';
import type { Clock } from '../core/clock.js';
import type { Policy } from '../core/policy.js';
import { sha256 } from '../keys/api-key.js';
import type { KeyRegistry } from '../keys/key-registry.js';
import { PolicyWatcher } from '../policy/watcher.js';
import { MemoryAuditLog, type AuditLog } from '../store/audit-log.js';
import type { KeyStore } from '../store/key-store.js';
import { MemoryKeyStore } from '../store/memory-key-store.js';
import { MemoryStore } from '../store/memory-store.js';
import { RedisAuditLog } from '../store/redis/redis-audit-log.js';
import { RedisKeyStore } from '../store/redis/redis-key-store.js';
import { createRedisConnection, type RedisConnection } from '../store/redis/connection.js';
import { RedisStore } from '../store/redis/redis-store.js';
import { StoreReachability } from '../store/redis/reachability.js';
import type { QuotaStore } from '../store/store.js';
import { createLogger, type Logger } from '../telemetry/logger.js';
import { AuthorityMetrics, type MemoryStoreRole } from '../telemetry/metrics.js';
import { startMetricsServer } from '../telemetry/metrics-server.js';
import { composeAuthority } from './compose-authority.js';
import { ConfigError, SERVE_SETTINGS, type ServeConfig } from './config.js';
import { routeGrpcLogs } from './grpc-log.js';
import { listenOn } from './listen.js';
import { startEnvoyFront, type EnvoyFront } from './envoy.js';
import { serverCredentials } from './tls.js';
import { VERSION } from './version.js';

const systemClock: Clock = { now: () => Date.now() };

export interface ServeOverrides {
  /** Drives time in both stores and the calendar (tests). Production uses the system clock and Redis TIME. */
  clock?: Clock;
  /** Where log lines go (tests capture them). */
  logDestination?: DestinationStream;
  /** Where the demo key banner goes (stderr by default; tests capture it). */
  bannerOutput?: { write(text: string): unknown };
}

export interface RunningAuthority {
  grpcPort: number;
  metricsPort: number;
  logger: Logger;
  metrics: AuthorityMetrics;
  policy: PolicyWatcher;
  keys: KeyRegistry;
  /** The Envoy RateLimitService front, when --envoy-config is set. */
  envoy: EnvoyFront | undefined;
  /** Graceful stop: NOT_SERVING, drain, finish in-flight calls, then close the policy watch and the store. */
  stop(): Promise<void>;
}

interface Stores {
  quota: QuotaStore;
  keys: KeyStore;
  /** The audit trail of admin calls. */
  audit: AuditLog;
  redis?: RedisConnection;
  /** Why QuotaService refuses now (a store reset awaiting confirmation, --on-store-reset refuse). */
  refusal?: () => string | undefined;
  /** ConfirmStoreReset: resolves whether a reset was pending. */
  confirmStoreReset?: () => Promise<boolean>;
}

/** An in-process store bounded by --memory-max-entries, its size and refusals in the metrics. */
function boundedMemoryStore(
  role: MemoryStoreRole,
  clock: Clock,
  config: ServeConfig,
  metrics: AuthorityMetrics,
): MemoryStore {
  const store = new MemoryStore({
    clock,
    maxEntries: config.memoryMaxEntries,
    onFull: () => metrics.memoryStoreFull.inc({ store: role }),
  });
  metrics.watchMemoryStore(role, () => store.entries);
  return store;
}

async function openStores(
  config: ServeConfig,
  clock: Clock | undefined,
  logger: Logger,
  metrics: AuthorityMetrics,
): Promise<Stores> {
  if (!config.redis) {
    logger.warn(
      'no REDIS_URL (nor cluster or sentinels): counters and API keys live in this process only. Run a single instance; replicas would not share limits, and a restart forgets usage and keys.',
    );
    const local = clock ?? systemClock;
    return {
      quota: boundedMemoryStore('memory', local, config, metrics),
      keys: new MemoryKeyStore({ clock: local }),
      audit: new MemoryAuditLog({ ...config.audit, now: () => local.now() }),
    };
  }
  const redis = createRedisConnection(config.redis, { commandTimeoutMs: config.redisTimeoutMs });
  const mode = config.redis.mode;
  redis.on('error', (error: Error) => logger.warn({ err: error.message, mode }, 'redis connection error'));
  redis.on('ready', () => logger.info({ mode }, 'redis ready'));
  if (mode === 'sentinel') {
    redis.on('+switch-master', () => logger.warn({ mode }, 'redis sentinel switched master'));
  } else if (mode === 'cluster') {
    redis.on('+node', (node: { options: { host?: string; port?: number } }) =>
      logger.info({ node: `${node.options.host}:${node.options.port}` }, 'redis cluster node added'),
    );
    redis.on('-node', (node: { options: { host?: string; port?: number } }) =>
      logger.warn({ node: `${node.options.host}:${node.options.port}` }, 'redis cluster node removed'),
    );
  }
  try {
    await redis.connect();
  } catch (error) {
    // Serve anyway: each limit's on_store_failure answers until the background reconnect succeeds.
    logger.error(
      { err: (error as Error).message },
      'redis unreachable at start; failure policies decide until it is back',
    );
  }
  const refuseOnReset = config.onStoreReset === 'refuse';
  let pending = false;
  const keys = new RedisKeyStore({
    redis,
    refuseOnReset,
    onResetPending: (now) => {
      if (refuseOnReset && now !== pending) {
        metrics.storeResetRefusing.set(now ? 1 : 0);
        if (now) {
          logger.error(
            'QuotaService refuses every call (UNAVAILABLE, --on-store-reset refuse) until an operator runs quotad store confirm-reset',
          );
        } else logger.warn('store reset confirmed: QuotaService serves again');
      }
      pending = now;
    },
    // Confirmations well inside the TTL, so a healthy channel keeps every cached key trusted.
    confirmEveryMs: Math.max(50, config.keyCacheTtlMs / 4),
    writeReplicas: config.redisWaitReplicas,
    onStoreReset: (how) => {
      metrics.storeResets.inc({ how });
      if (how === 'missing-at-start') {
        logger.warn(
          { how },
          'redis holds no quotad store marker: a new store, or one that lost its data (then keys are unknown and budgets restart at 0)',
        );
      } else {
        logger.error(
          { how },
          'redis store was emptied or replaced under a running authority: cached API keys dropped; keys, budgets and reservations written before are gone',
        );
      }
    },
    onServerChanged: (from, to) =>
      logger.warn(
        { from, to },
        'redis holding the key registry is another server (restart or failover: new run_id or master_replid): cached API keys dropped',
      ),
    // WAIT must give up (and say how many confirmed) before the command's own timeout cuts it off.
    writeReplicaTimeoutMs: Math.max(1, Math.floor(config.redisTimeoutMs * 0.8)),
    onChannelError: (error) =>
      logger.warn({ err: error.message }, 'api key change channel error; cached keys expire by their TTL'),
  });
  const quota = new RedisStore({
    redis,
    ...(clock ? { clock } : {}),
    budgetWaitReplicas: config.redisWaitBudgets ? 1 : 0,
    budgetWaitTimeoutMs: Math.max(1, Math.floor(config.redisTimeoutMs * 0.8)),
    onBudgetUnconfirmed: () => metrics.budgetWritesUnconfirmed.inc(),
  });
  const audit = new RedisAuditLog({ redis, ...config.audit });
  return {
    quota,
    keys,
    audit,
    redis,
    refusal: () =>
      refuseOnReset && pending
        ? 'the quota store was emptied or replaced (its keys, budgets and reservations from before are gone); this authority refuses every call until an operator confirms with quotad store confirm-reset (--on-store-reset refuse)'
        : undefined,
    confirmStoreReset: () => keys.confirmStoreReset(),
  };
}

/**
 * A first run's way in: when the store holds no key, issue a demo key on the free tier and show it once,
 * on stderr and never in the logs. A store that already holds keys gets none (their secrets are unknown).
 */
async function seedDemoKey(
  keys: KeyRegistry,
  logger: Logger,
  output: { write(text: string): unknown },
  addresses: { grpc: string; gateway: string; inProcess: boolean },
): Promise<void> {
  if (!(await keys.isEmpty())) {
    logger.info('demo key not created: the store already holds API keys (quotad keys create makes more)');
    return;
  }
  const { record, secret } = await keys.create({
    name: 'demo',
    owner: 'quotad demo',
    org: 'demo',
    tier: 'free',
    expiresInMs: 0,
    type: 'demo',
  });
  logger.warn(
    { keyId: record.id, tier: record.tier },
    'DEMO API key created (free tier); its secret is on stderr, once',
  );
  // grpcurl takes bytes fields as base64: the SHA-256 the gateway would send for this key.
  const hash = sha256(secret).toString('base64');
  const request = `{"request_id":"try-1","api_key_sha256":"${hash}","model":"gpt-4o-mini","input_tokens":100,"max_output_tokens":200}`;
  const chat = `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Hello, quotad"}],"max_tokens":50}`;
  const forgets = addresses.inProcess
    ? `  The in-process store forgets every key when this authority stops: after a restart, this key (and any\n` +
      `  other from an earlier run) gets 401 invalid_api_key, and a new demo key is printed.\n\n`
    : '';
  output.write(
    `\nquotad: DEMO API key (tier free, org demo, id ${record.id}). For trying quotad out, not for production:\n\n` +
      `    export DEMO_KEY=${secret}\n\n` +
      forgets +
      `  Through the gateway at ${addresses.gateway} (make run starts one there):\n\n` +
      `    curl -i ${addresses.gateway}/v1/chat/completions -H "Authorization: Bearer $DEMO_KEY" -H 'Content-Type: application/json' -d '${chat}'\n\n` +
      `  Or ask the authority itself; callers send the key's SHA-256, never the key:\n\n` +
      `    grpcurl -plaintext -d '${request}' ${addresses.grpc} quotad.v1.QuotaService/CheckQuota\n\n`,
  );
}

/** What the authority's logs must never show: its tokens and the password in REDIS_URL. */
function authoritySecrets(config: ServeConfig): (string | undefined)[] {
  let redisPassword: string | undefined;
  if (config.redisUrl && URL.canParse(config.redisUrl)) {
    const { password } = new URL(config.redisUrl);
    if (password) redisPassword = decodeURIComponent(password);
  }
  const target = config.redis;
  const targetPassword = target && target.mode !== 'standalone' ? target.password : undefined;
  return [config.adminToken, config.authorityToken, config.signingKey, redisPassword, targetPassword];
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
    secrets: authoritySecrets(config),
  });
  routeGrpcLogs(logger);
  const clock = overrides.clock;
  // Without an injected clock, Redis scripts read Redis TIME; everything else reads the system clock.
  const localClock = clock ?? systemClock;
  const metrics = new AuthorityMetrics({ version: VERSION, storeKind: config.redis ? 'redis' : 'memory' });
  const adminTokens = new AdminTokens(config.adminToken);
  let tokensWatch: { stop(): void } | undefined;
  if (config.adminTokensFile) {
    try {
      tokensWatch = watchAdminTokensFile(config.adminTokensFile, adminTokens, {
        loaded: (count) => logger.info({ path: config.adminTokensFile, count }, 'admin tokens reloaded'),
        rejected: (error) =>
          logger.error({ err: error.message }, 'admin tokens file rejected; the tokens in force stay'),
      });
    } catch (error) {
      throw new ConfigError(`QUOTAD_ADMIN_TOKENS_FILE: ${(error as Error).message}`);
    }
  }
  const stores = await openStores(config, clock, logger, metrics);
  const store = stores.quota;

  const policy = new PolicyWatcher(config.policyPath);
  /** What the metrics follow of each policy put in force, the first as every reloaded one. */
  const inForce = (next: Policy) => {
    metrics.recordPolicyReload({ ok: true, loadedAtMs: Date.now() });
    metrics.startLimitSeries(next);
  };
  policy.on('reloaded', ({ policy: next, sha256 }) => {
    inForce(next);
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
    tokensWatch?.stop();
    await stores.keys.close();
    await stores.audit.close();
    await store.close();
    throw error;
  }
  inForce(policy.current);

  const delivery = new WebhookDelivery({
    outbox: store.events,
    webhook: () => policy.current.alerts?.webhook,
    // The HMAC key is read when each event is signed, so a rotated secret applies without a restart.
    secret: (variable) => process.env[variable],
    metrics: metrics.events,
    logger,
  });
  const signingKey = config.signingKey === undefined ? undefined : Buffer.from(config.signingKey, 'utf8');
  const { authority, keys, handlers } = composeAuthority({
    store,
    keyStore: stores.keys,
    onEventsRaised: () => delivery.kick(),
    fallback: boundedMemoryStore('fallback', localClock, config, metrics),
    policy: () => policy.current,
    clock: localClock,
    metrics,
    logger,
    keyCacheTtlMs: config.keyCacheTtlMs,
    maxStoreWaitMs: config.redisTimeoutMs,
    ...(stores.refusal ? { refusal: stores.refusal } : {}),
    ...(stores.confirmStoreReset ? { confirmStoreReset: stores.confirmStoreReset } : {}),
    ...(config.adminToken || config.adminTokensFile
      ? { admin: { tokens: adminTokens, audit: stores.audit } }
      : {}),
    signing: { masterKey: signingKey, maxAgeMs: config.signatureMaxAgeMs },
    ...(config.authorityToken ? { quotaToken: config.authorityToken } : {}),
  });
  let envoy: EnvoyFront | undefined;
  try {
    envoy = config.envoyConfigDir
      ? await startEnvoyFront({
          directory: config.envoyConfigDir,
          config,
          redis: stores.redis,
          clock,
          localClock,
          replicas: () => policy.current.replicas,
          metrics,
          logger,
        })
      : undefined;
  } catch (error) {
    authority.close();
    tokensWatch?.stop();
    await policy.stop();
    await stores.keys.close();
    await stores.audit.close();
    await store.close();
    throw error;
  }
  const server = await listenOn(SERVE_SETTINGS.grpcAddr, config.grpcAddress, () =>
    startAuthorityServer({
      address: `${config.grpcAddress.host}:${config.grpcAddress.port}`,
      maxConnectionAgeMs: config.maxConnectionAgeMs,
      logger,
      ...handlers,
      ...(config.tls ? { credentials: serverCredentials(config.tls) } : {}),
      ...(envoy ? { extraServices: [envoy.service] } : {}),
    }),
  );
  const metricsServer = await listenOn(SERVE_SETTINGS.metricsAddr, config.metricsAddress, () =>
    startMetricsServer({
      host: config.metricsAddress.host,
      port: config.metricsAddress.port,
      render: () => metrics.render(),
    }),
  ).catch(async (error: unknown) => {
    await server.shutdown({ drainDelayMs: 0, graceMs: 0 });
    throw error;
  });
  const reachability =
    stores.redis && config.storeDownAfterMs > 0
      ? new StoreReachability({
          redis: stores.redis,
          downAfterMs: config.storeDownAfterMs,
          onChange: (reachable) => {
            server.setQuotaServing(reachable);
            if (reachable) logger.warn('redis answers again: health SERVING for quotad.v1.QuotaService');
            else {
              logger.error(
                { downAfterMs: config.storeDownAfterMs },
                'redis unreachable (no master answered a PING for --store-down-after): health NOT_SERVING for quotad.v1.QuotaService; on_store_failure answers calls',
              );
            }
          },
        })
      : undefined;
  if (config.demoKey) {
    const host = ['0.0.0.0', '::'].includes(config.grpcAddress.host) ? '127.0.0.1' : config.grpcAddress.host;
    await seedDemoKey(keys, logger, overrides.bannerOutput ?? process.stderr, {
      grpc: `${host}:${server.port}`,
      gateway: config.demoGateway,
      inProcess: store.kind === 'memory',
    });
  }
  delivery.start();
  logger.info(
    {
      version: VERSION,
      grpc: `${config.grpcAddress.host}:${server.port}`,
      metrics: `${config.metricsAddress.host}:${metricsServer.port}`,
      store: store.kind,
      admin: handlers.admin
        ? `on (${adminTokens.size} tokens)`
        : 'off (no QUOTAD_ADMIN_TOKEN or QUOTAD_ADMIN_TOKENS_FILE)',
      quotaService: config.authorityToken ? 'token required' : 'open to any caller that reaches the port',
      tls: config.tls ? (config.tls.clientCaPath ? 'mutual' : 'on') : 'off',
      policy: policy.path,
      policySha256: policy.sha256,
      envoy: envoy ? envoy.watcher.directory : 'off (no --envoy-config)',
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
    keys,
    envoy,
    stop() {
      stopping ??= (async () => {
        logger.info({ drainDelayMs: config.shutdownDelayMs }, 'shutting down: health NOT_SERVING, draining');
        reachability?.stop();
        await server.shutdown({ drainDelayMs: config.shutdownDelayMs, graceMs: config.shutdownGraceMs });
        authority.close();
        // POSTs in flight finish (each within the webhook timeout); what is still waiting stays in the store.
        await delivery.stop();
        tokensWatch?.stop();
        await policy.stop();
        await envoy?.stop();
        await metricsServer.close();
        await stores.keys.close();
        await stores.audit.close();
        await store.close();
        logger.info('stopped');
      })();
      return stopping;
    },
  };
}
