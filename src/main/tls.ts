import { readFileSync } from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import { ConfigError } from './config.js';

/** How a client reaches an authority over TLS: the CA that signed its certificate, and a client certificate for mutual TLS. */
export interface AuthorityTls {
  caPath: string;
  certPath?: string;
  keyPath?: string;
}

/** Reads the CA, and a client certificate and key when both are given, into TLS channel credentials. */
export function authorityCredentials(tls: AuthorityTls | undefined): grpc.ChannelCredentials {
  if (!tls) return grpc.credentials.createInsecure();
  const read = (path: string | undefined) => (path === undefined ? null : readFileSync(path));
  return grpc.credentials.createSsl(read(tls.caPath), read(tls.keyPath), read(tls.certPath));
}

/**
 * The client side's TLS settings from three optional values: none means plaintext; a client certificate
 * and key go together, and only with a CA.
 */
export function authorityTlsSetting(
  names: { ca: string; cert: string; key: string },
  values: { ca?: string; cert?: string; key?: string },
): AuthorityTls | undefined {
  if ((values.cert === undefined) !== (values.key === undefined)) {
    throw new ConfigError(`${names.cert} and ${names.key}: set both, or neither`);
  }
  if (values.ca === undefined) {
    if (values.cert !== undefined) throw new ConfigError(`${names.cert}: needs ${names.ca}`);
    return undefined;
  }
  return {
    caPath: values.ca,
    ...(values.cert === undefined ? {} : { certPath: values.cert }),
    ...(values.key === undefined ? {} : { keyPath: values.key }),
  };
}

/** TLS for the authority's gRPC port from PEM files; with a client CA, clients must present a certificate it signed. */
export function serverCredentials(tls: {
  certPath: string;
  keyPath: string;
  clientCaPath?: string;
}): grpc.ServerCredentials {
  const clientCa = tls.clientCaPath === undefined ? null : readFileSync(tls.clientCaPath);
  return grpc.ServerCredentials.createSsl(
    clientCa,
    [{ cert_chain: readFileSync(tls.certPath), private_key: readFileSync(tls.keyPath) }],
    clientCa !== null,
  );
}
