import { readFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import type { DestinationStream } from 'pino';
import { startDemoUpstream, demoUpstreamBanner, type DemoUpstream } from '../demo/upstream.js';
import type { Settler } from '../gateway/settlement.js';
import { createLogger, type Logger } from '../telemetry/logger.js';
import { GatewayMetrics } from '../telemetry/gateway-metrics.js';
import { composeGateway, gatewaySecrets } from './compose-gateway.js';
import { GATEWAY_SETTINGS, type GatewayConfig } from './gateway-config.js';
import { routeGrpcLogs } from './grpc-log.js';
import { listenOn } from './listen.js';
import { VERSION } from './version.js';

export interface GatewayOverrides {
  /** Where log lines go (tests capture them). */
  logDestination?: DestinationStream;
  /** Where the demo upstream banner goes (stderr by default). */
  bannerOutput?: { write(text: string): unknown };
  /** Delays between settlement attempts (tests shorten them). */
  settlementBackoffMs?: readonly number[];
}

export interface RunningGateway {
  port: number;
  /** e.g. http://127.0.0.1:8080, for clients on this host. */
  url: string;
  logger: Logger;
  metrics: GatewayMetrics;
  settler: Settler;
  /** Resolves once no model call is in progress and every settlement started has ended. */
  drain(): Promise<void>;
  /** Opens --request-log again (SIGHUP, after logrotate renamed it); does nothing without one. */
  reopenRequestLog(): void;
  /** Stops taking requests, finishes those in flight, waits for pending settlements (up to the grace). */
  stop(): Promise<void>;
}

/** Open files the gateway needs besides its clients': upstream and authority connections, logs, Node's own. */
const FILES_BESIDES_CLIENTS = 256;

/** The process's soft limit on open files, where the system tells it (Linux); undefined elsewhere. */
export function openFilesLimit(): number | undefined {
  try {
    const line = /^Max open files\s+(\d+)/m.exec(readFileSync('/proc/self/limits', 'utf8'));
    return line ? Number(line[1]) : undefined;
  } catch {
    return undefined;
  }
}

/** Wires and starts `quotad gateway`: authority client, upstream, authentication and the HTTP server. */
export async function startGateway(
  config: GatewayConfig,
  overrides: GatewayOverrides = {},
): Promise<RunningGateway> {
  const logger = createLogger({
    level: config.logLevel,
    name: 'quotad-gateway',
    destination: overrides.logDestination,
    secrets: gatewaySecrets(config),
  });
  routeGrpcLogs(logger);
  const metrics = new GatewayMetrics({ version: VERSION });
  let demo: DemoUpstream | undefined;
  let upstreamUrl = config.upstreamUrl;
  if (config.demoUpstream && !config.upstreamApiKey) {
    demo = await startDemoUpstream({ host: '127.0.0.1', port: 0 });
    upstreamUrl = demo.url;
    (overrides.bannerOutput ?? process.stderr).write(`\n${demoUpstreamBanner(demo.url)}\n\n`);
    logger.warn(
      { upstream: demo.url },
      'DEMO upstream: answers are canned text, not a model (no OPENAI_API_KEY)',
    );
  }
  const { app, authority, settler, upstream, models, requestLog } = await composeGateway(config, {
    logger,
    metrics,
    upstreamUrl,
    ...(overrides.settlementBackoffMs ? { settlementBackoffMs: overrides.settlementBackoffMs } : {}),
  });
  const files = openFilesLimit();
  if (files !== undefined && config.connections.maxConnections > files - FILES_BESIDES_CLIENTS) {
    // Past the limit, accept() and the upstream's connect() fail alike: every request would, not just new ones.
    logger.warn(
      { maxConnections: config.connections.maxConnections, openFilesLimit: files },
      `--max-connections is above the open-files limit less ${FILES_BESIDES_CLIENTS}: raise the limit (ulimit -n) or lower --max-connections`,
    );
  }
  await listenOn(GATEWAY_SETTINGS.addr, config.address, () =>
    app.listen({ host: config.address.host, port: config.address.port }),
  ).catch(async (error: unknown) => {
    await app.close();
    throw error;
  });
  const { port } = app.server.address() as AddressInfo;
  const host = ['0.0.0.0', '::'].includes(config.address.host) ? '127.0.0.1' : config.address.host;
  const url = `http://${host.includes(':') ? `[${host}]` : host}:${port}`;
  logger.info(
    {
      version: VERSION,
      address: `${config.address.host}:${port}`,
      authority: config.authorityTarget,
      authorityTls: config.authorityTls ? (config.authorityTls.certPath ? 'mutual' : 'on') : 'off',
      upstream: upstreamUrl,
      failMode: config.failMode,
      jwt: config.jwt?.kind ?? 'off',
      requestLog: config.requestLog ? `${config.requestLog.path} (${config.requestLog.format})` : 'off',
    },
    'quotad gateway serving',
  );

  const drain = async () => {
    await models.idle();
    await settler.drain();
  };
  let stopping: Promise<void> | undefined;
  return {
    port,
    url,
    logger,
    metrics,
    settler,
    drain,
    reopenRequestLog() {
      if (!requestLog) return;
      requestLog.reopen();
      logger.info({ path: config.requestLog?.path }, 'request log reopened');
    },
    stop() {
      stopping ??= (async () => {
        logger.info(
          { pendingSettlements: settler.pending },
          'shutting down: finishing requests and settlements',
        );
        let timer: NodeJS.Timeout | undefined;
        const grace = new Promise<'timeout'>((resolve) => {
          timer = setTimeout(() => resolve('timeout'), config.shutdownGraceMs);
        });
        const drained = app.close().then(drain);
        if ((await Promise.race([drained, grace])) === 'timeout') {
          logger.warn({ pendingSettlements: settler.pending }, 'grace period over; unsettled usage is lost');
          app.server.closeAllConnections();
        }
        clearTimeout(timer);
        authority.close();
        upstream.close();
        // After the authority's channel is closed, so a settlement still retrying gives up and its line is written.
        await requestLog?.close();
        await demo?.close();
        logger.info('stopped');
      })();
      return stopping;
    },
  };
}
