import { fileURLToPath } from 'node:url';
import { parseServeConfig, type ServeConfig } from '../src/main/config.js';
import { parseGatewayConfig, type GatewayConfig } from '../src/main/gateway-config.js';

export const SHIPPED_POLICY = fileURLToPath(new URL('../../config/policy.yaml', import.meta.url));

/**
 * `quotad serve`'s settings for an authority started in the test's process: free loopback ports, the
 * shipped policy, then the test's own flags and environment.
 */
export function inProcessServeConfig(args: string[], env: NodeJS.ProcessEnv): ServeConfig {
  return parseServeConfig(
    ['--grpc-addr', '127.0.0.1:0', '--metrics-addr', '127.0.0.1:0', '--policy', SHIPPED_POLICY, ...args],
    env,
  );
}

/**
 * `quotad gateway`'s settings for a gateway started in the test's (or benchmark's) process: a free
 * loopback port in front of the authority on `authorityPort` and the upstream at `upstreamUrl`, then the
 * caller's own flags (a later flag wins) and environment.
 */
export function inProcessGatewayConfig(
  authorityPort: number,
  upstreamUrl: string,
  args: string[],
  env: NodeJS.ProcessEnv,
): GatewayConfig {
  return parseGatewayConfig(
    [
      '--addr',
      '127.0.0.1:0',
      '--authority',
      `127.0.0.1:${authorityPort}`,
      '--upstream-url',
      upstreamUrl,
      ...args,
    ],
    env,
  );
}
