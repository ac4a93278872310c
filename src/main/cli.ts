#!/usr/bin/env node
import { EnvoyConfigError } from '../envoy/config-error.js';
import { PolicyError } from '../policy/policy-error.js';
import type { Logger } from '../telemetry/logger.js';
import { EXIT, auditCli, eventsCli, keysCli, storeCli, usageCli } from './admin-cli.js';
import { ConfigError, parseServeConfig, serveUsage } from './config.js';
import { gatewayUsage, parseGatewayConfig } from './gateway-config.js';
import { ListenError } from './listen.js';
import { VERSION } from './version.js';

const USAGE = `quotad ${VERSION}: one quota authority for every LLM gateway replica.

Usage:
  quotad serve [flags]     run the authority (gRPC QuotaService, health, reflection, /metrics)
  quotad serve --help      list serve's flags and environment variables
  quotad gateway [flags]   run the OpenAI-compatible HTTP gateway in front of the authority
  quotad gateway --help    list the gateway's flags and environment variables
  quotad keys <command>    manage API keys over the authority's admin API (create, list, show,
                           revoke, rotate, signing, limits)
  quotad usage ID          an API key's limits: used, remaining, limit, reset
  quotad events            recent spend alerts and anomalies, and their webhook delivery
  quotad audit [flags]     the audit trail of admin calls (filters --key, --actor, --action, --since)
  quotad store confirm-reset
                           after the store was emptied or replaced, let refusing authorities serve
  quotad keys --help       list the key and store commands, their flags and exit codes
  quotad version           print the version
`;

/** What a long-running command hands to `runUntilSignalled`. */
interface Running {
  logger: Logger;
  stop(): Promise<void>;
}

/**
 * Starts a long-running command and serves until SIGTERM or SIGINT, then stops it gracefully. The signal
 * handlers are in place before `start` runs: a signal that comes while it starts (or the moment it says
 * it serves) stops it once started, rather than killing the process by the default action.
 * `onHangup` handles SIGHUP.
 */
async function runUntilSignalled<R extends Running>(
  start: () => Promise<R>,
  onHangup?: (running: R) => void,
): Promise<number> {
  let signalled: NodeJS.Signals | undefined;
  let wake = () => {};
  const onSignal = (signal: NodeJS.Signals) => {
    signalled ??= signal;
    wake();
  };
  process.once('SIGTERM', onSignal);
  process.once('SIGINT', onSignal);
  const running = await start();
  if (onHangup) process.on('SIGHUP', () => onHangup(running));
  if (!signalled) await new Promise<void>((resolve) => (wake = resolve));
  running.logger.info({ signal: signalled }, 'signal received');
  await running.stop().catch((error: unknown) => running.logger.error({ err: error }, 'shutdown failed'));
  return EXIT.ok;
}

async function serve(args: string[]): Promise<number> {
  if (args.includes('--help') || args.includes('-h')) {
    process.stdout.write(serveUsage());
    return EXIT.ok;
  }
  const config = parseServeConfig(args, process.env);
  // Loaded here, not at the top: the key commands would otherwise pay for Redis, metrics and the server
  // at every start (a third of their run time), and they are run by scripts in loops.
  const { startAuthority } = await import('./serve.js');
  return runUntilSignalled(
    () => startAuthority(config),
    (running) => {
      running.logger.info('SIGHUP: re-reading the policy and the Envoy configuration');
      void running.policy.reload();
      void running.envoy?.watcher.reload();
    },
  );
}

async function gateway(args: string[]): Promise<number> {
  if (args.includes('--help') || args.includes('-h')) {
    process.stdout.write(gatewayUsage());
    return EXIT.ok;
  }
  const config = parseGatewayConfig(args, process.env);
  const { startGateway } = await import('./gateway.js');
  return runUntilSignalled(
    () => startGateway(config),
    (running) => running.reopenRequestLog(),
  );
}

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'serve':
      return serve(rest);
    case 'gateway':
      return gateway(rest);
    case 'keys':
      return keysCli(rest, process.env);
    case 'usage':
      return usageCli(rest, process.env);
    case 'store':
      return storeCli(rest, process.env);
    case 'events':
      return eventsCli(rest, process.env);
    case 'audit':
      return auditCli(rest, process.env);
    case 'version':
    case '--version':
      process.stdout.write(`${VERSION}\n`);
      return EXIT.ok;
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      process.stdout.write(USAGE);
      return command === undefined ? EXIT.usage : EXIT.ok;
    default:
      process.stderr.write(`quotad: unknown command '${command}'\n\n${USAGE}`);
      return EXIT.usage;
  }
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error: unknown) => {
    if (error instanceof ListenError) {
      process.stderr.write(`quotad: ${error.message}\n`);
      process.exit(EXIT.failure);
    }
    if (error instanceof ConfigError || error instanceof PolicyError || error instanceof EnvoyConfigError) {
      process.stderr.write(`quotad: ${error.message}\n`);
      process.exit(EXIT.usage);
    }
    process.stderr.write(`quotad: ${(error as Error).stack ?? String(error)}\n`);
    process.exit(EXIT.failure);
  },
);
