import { format } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import type { Logger } from '../telemetry/logger.js';

/**
 * grpc-js writes its own errors to the console as bare text (`E No address added …`), beside the process's
 * JSON lines; this sends them through `logger` instead, as warnings (grpc-js reports as errors what the
 * process then handles, such as a busy port).
 */
export function routeGrpcLogs(logger: Logger): void {
  grpc.setLogger({
    error: (...args: unknown[]) => logger.warn({ component: 'grpc-js' }, format(...args)),
    info: (...args: unknown[]) => logger.info({ component: 'grpc-js' }, format(...args)),
    debug: (...args: unknown[]) => logger.debug({ component: 'grpc-js' }, format(...args)),
  });
}
