/** The admin CLI's AdminService client: settings, the call, and a gRPC failure explained for the operator. */
import * as grpc from '@grpc/grpc-js';
import { adminServiceClient, isGrpcError, type AdminApi } from '../../api/client.js';
import { authorityCredentials, type AuthorityTls } from '../tls.js';

/** Exit codes a script can rely on (listed in ADMIN_USAGE, so keep the two in step). */
export const EXIT = { ok: 0, failure: 1, usage: 2, unreachable: 3, unauthorized: 4, notFound: 5 } as const;

/** A failure explained for the operator, with the exit code a script can branch on. */
export class CliError extends Error {
  readonly exitCode: number;

  constructor(message: string, exitCode: number) {
    super(message);
    this.name = 'CliError';
    this.exitCode = exitCode;
  }
}

export function usageError(message: string): CliError {
  return new CliError(`${message} (see quotad keys --help)`, EXIT.usage);
}

/** AdminService with promise methods whose failures are already CliErrors. */
export type AdminCalls = Omit<AdminApi, 'raw' | 'close'>;

/** Where to call and with what, from the flags and the environment. */
export interface Settings {
  authority: string;
  /** TLS to the authority; plaintext when unset. */
  tls: AuthorityTls | undefined;
  token: string;
  timeoutMs: number;
  json: boolean;
}

/**
 * grpc-js's connection failures end in `Resolution note: ` and nothing when the name resolved without a
 * note, and repeat `Error: `: the reason, without either.
 */
function cleanDetails(details: string): string {
  return details
    .replace(/\.?\s*Resolution note:\s*$/, '')
    .replace(/Last error: Error: /, 'last error: ')
    .trim();
}

/** Turns a gRPC failure into what the operator should do about it; the status decides the exit code. */
export function explainStatus(error: grpc.ServiceError, authority: string): CliError {
  const details = cleanDetails(error.details || error.message);
  switch (error.code) {
    case grpc.status.UNAVAILABLE:
    case grpc.status.DEADLINE_EXCEEDED:
      return new CliError(
        `the authority at ${authority} did not answer (${details}); is it running there? ` +
          'Point to it with --authority or QUOTAD_AUTHORITY',
        EXIT.unreachable,
      );
    case grpc.status.UNAUTHENTICATED:
      return new CliError(
        `the authority at ${authority} refused the admin token (missing or wrong): ` +
          'set QUOTAD_ADMIN_TOKEN to the token the authority was started with',
        EXIT.unauthorized,
      );
    case grpc.status.PERMISSION_DENIED:
      return new CliError(`the authority refused: ${details}`, EXIT.unauthorized);
    case grpc.status.UNIMPLEMENTED:
      return new CliError(
        `the authority at ${authority} has no admin API: start it with QUOTAD_ADMIN_TOKEN set`,
        EXIT.unauthorized,
      );
    case grpc.status.INVALID_ARGUMENT:
      return new CliError(`the authority refused the request: ${details}`, EXIT.usage);
    case grpc.status.NOT_FOUND:
      return new CliError(details, EXIT.notFound);
    default:
      return new CliError(`${grpc.status[error.code] ?? error.code}: ${details}`, EXIT.failure);
  }
}

/** One AdminService client for the command: the token in every call's metadata, a deadline on each call. */
export function connect(settings: Settings): { api: AdminCalls; close: () => void } {
  const client = adminServiceClient(settings.authority, {
    credentials: authorityCredentials(settings.tls),
    token: settings.token,
    deadlineMs: settings.timeoutMs,
  });
  function explained<Req, Res>(call: (request: Req) => Promise<Res>): (request: Req) => Promise<Res> {
    return (request) =>
      call(request).catch((error: unknown) => {
        throw isGrpcError(error) ? explainStatus(error, settings.authority) : error;
      });
  }
  const api: AdminCalls = {
    createKey: explained(client.createKey),
    listKeys: explained(client.listKeys),
    getKey: explained(client.getKey),
    revokeKey: explained(client.revokeKey),
    rotateKey: explained(client.rotateKey),
    setKeyLimits: explained(client.setKeyLimits),
    getKeyUsage: explained(client.getKeyUsage),
    confirmStoreReset: explained(client.confirmStoreReset),
    listEvents: explained(client.listEvents),
    setKeySigning: explained(client.setKeySigning),
    listAuditRecords: explained(client.listAuditRecords),
  };
  return { api, close: client.close };
}
