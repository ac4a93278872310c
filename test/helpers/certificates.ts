import { execFile } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';

const openssl = (args: string[]) => promisify(execFile)('openssl', args);
const EC = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];

/** PEM files of a throwaway PKI, made in `dir` for one test run. */
export interface TestCertificates {
  /** The CA that signed the server's and the client's certificates. */
  ca: string;
  /** The authority's certificate, for 127.0.0.1 and localhost, and its key. */
  serverCert: string;
  serverKey: string;
  /** A client certificate the CA signed, and its key. */
  clientCert: string;
  clientKey: string;
  /** A client certificate signed by another CA, which the authority must not accept. */
  strangerCert: string;
  strangerKey: string;
}

async function authority(dir: string, name: string): Promise<{ cert: string; key: string }> {
  const [cert, key] = [join(dir, `${name}.pem`), join(dir, `${name}.key`)];
  await openssl([
    'req',
    '-x509',
    ...EC,
    '-days',
    '1',
    '-subj',
    `/CN=${name}`,
    '-addext',
    'basicConstraints=critical,CA:TRUE',
    '-addext',
    'keyUsage=critical,keyCertSign,cRLSign',
    '-keyout',
    key,
    '-out',
    cert,
  ]);
  return { cert, key };
}

async function signed(
  dir: string,
  name: string,
  by: { cert: string; key: string },
  extensions: string,
): Promise<{ cert: string; key: string }> {
  const [cert, key, request, ext] = ['pem', 'key', 'csr', 'ext'].map((suffix) =>
    join(dir, `${name}.${suffix}`),
  );
  await writeFile(ext as string, `${extensions}\n`);
  await openssl(['req', ...EC, '-subj', `/CN=${name}`, '-keyout', key as string, '-out', request as string]);
  await openssl([
    'x509',
    '-req',
    '-in',
    request as string,
    '-CA',
    by.cert,
    '-CAkey',
    by.key,
    '-CAcreateserial',
    '-days',
    '1',
    '-extfile',
    ext as string,
    '-out',
    cert as string,
  ]);
  return { cert: cert as string, key: key as string };
}

/** Makes a CA, a server and a client certificate it signed, and a stranger's client certificate. */
export async function makeCertificates(dir: string): Promise<TestCertificates> {
  const ca = await authority(dir, 'quotad-test-ca');
  const server = await signed(
    dir,
    'server',
    ca,
    'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth',
  );
  const client = await signed(dir, 'client', ca, 'extendedKeyUsage=clientAuth');
  const strangerCa = await authority(dir, 'stranger-ca');
  const stranger = await signed(dir, 'stranger', strangerCa, 'extendedKeyUsage=clientAuth');
  return {
    ca: ca.cert,
    serverCert: server.cert,
    serverKey: server.key,
    clientCert: client.cert,
    clientKey: client.key,
    strangerCert: stranger.cert,
    strangerKey: stranger.key,
  };
}
