import { fileURLToPath } from 'node:url';
import { parseServeConfig, type ServeConfig } from '../../src/main/config.js';

export const SHIPPED_POLICY = fileURLToPath(new URL('../../../config/policy.yaml', import.meta.url));

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
