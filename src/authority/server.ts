import * as grpc from '@grpc/grpc-js';
import { ReflectionService } from '@grpc/reflection';
import { HealthImplementation } from 'grpc-health-check';
import type * as protoLoader from '@grpc/proto-loader';
import type { AdminServiceHandlers } from '../gen/quotad/v1/AdminService.js';
import type { QuotaServiceHandlers } from '../gen/quotad/v1/QuotaService.js';
import type { Logger } from '../telemetry/logger.js';
import { loadQuotaPackage, loadReflectedServices } from '../api/proto.js';

export const QUOTA_SERVICE_NAME = 'quotad.v1.QuotaService';

export interface AuthorityServerOptions {
  /** host:port; port 0 binds a free one. */
  address: string;
  /**
   * After this long a client's connection is sent GOAWAY: its calls in flight finish, and the client
   * reconnects, resolving the service's addresses again. That is how gateways balancing over a headless
   * Service find authority replicas added since they connected. 0 or absent: connections live on.
   */
  maxConnectionAgeMs?: number;
  logger: Logger;
  /** QuotaService's handlers (built in src/main, see composeAuthority). */
  quota: QuotaServiceHandlers;
  /** AdminService's handlers; the service is not served at all without them (no admin token configured). */
  admin?: AdminServiceHandlers;
  /** TLS (and client certificates, with a client CA) on the port; plaintext when absent. */
  credentials?: grpc.ServerCredentials;
  /** More services on the same port (Envoy's RateLimitService), in health and reflection too. */
  extraServices?: readonly ExtraService[];
}

export interface ExtraService {
  /** Full name, e.g. `envoy.service.ratelimit.v3.RateLimitService`. */
  name: string;
  /** Its package definition (proto-loader), for the service and for reflection. */
  definition: protoLoader.PackageDefinition;
  handlers: grpc.UntypedServiceImplementation;
}

export interface ShutdownOptions {
  /** How long to keep serving while reporting NOT_SERVING, so balancers and clients move away first. */
  drainDelayMs: number;
  /** How long in-flight calls may take to finish before they are cut. */
  graceMs: number;
}

export interface AuthorityServer {
  port: number;
  /** Marks the server NOT_SERVING, keeps serving for the drain delay, then finishes in-flight calls and stops. */
  shutdown(options: ShutdownOptions): Promise<void>;
}

/** The gRPC server: QuotaService, grpc.health.v1 and server reflection, bound to `address`. */
export async function startAuthorityServer(options: AuthorityServerOptions): Promise<AuthorityServer> {
  const { proto } = loadQuotaPackage();
  const age = options.maxConnectionAgeMs ?? 0;
  const server = new grpc.Server(age > 0 ? { 'grpc.max_connection_age_ms': age } : {});
  server.addService(proto.quotad.v1.QuotaService.service, options.quota);
  if (options.admin) server.addService(proto.quotad.v1.AdminService.service, options.admin);
  const extra = options.extraServices ?? [];
  for (const service of extra) {
    server.addService(service.definition[service.name] as grpc.ServiceDefinition, service.handlers);
  }
  const served = [QUOTA_SERVICE_NAME, ...extra.map((service) => service.name)];
  const health = new HealthImplementation(
    Object.fromEntries([['', 'SERVING'], ...served.map((name) => [name, 'SERVING'])]),
  );
  health.addToServer(server);
  const reflected = extra.reduce(
    (all, service) => ({ ...all, ...service.definition }),
    loadReflectedServices(options.admin !== undefined),
  );
  new ReflectionService(reflected).addToServer(server);

  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync(
      options.address,
      options.credentials ?? grpc.ServerCredentials.createInsecure(),
      (error, bound) => (error ? reject(error) : resolve(bound)),
    );
  });

  return {
    port,
    async shutdown({ drainDelayMs, graceMs }) {
      health.setStatus('', 'NOT_SERVING');
      for (const name of served) health.setStatus(name, 'NOT_SERVING');
      if (drainDelayMs > 0) await new Promise((resolve) => setTimeout(resolve, drainDelayMs));
      await new Promise<void>((resolve) => {
        const force = setTimeout(() => {
          options.logger.warn({ graceMs }, 'in-flight calls outlived the grace period; cutting them');
          server.forceShutdown();
          resolve();
        }, graceMs);
        server.tryShutdown(() => {
          clearTimeout(force);
          resolve();
        });
      });
    },
  };
}
