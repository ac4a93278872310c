// Generates TypeScript types from proto/ with proto-loader-gen-types, then adds the `.js` extensions
// that Node's ESM resolution (and tsc's NodeNext mode) require on relative imports.
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const outDir = 'src/gen';
rmSync(outDir, { recursive: true, force: true });
execFileSync(
  'npx',
  [
    'proto-loader-gen-types',
    '--grpcLib=@grpc/grpc-js',
    '--longs=Number',
    '--enums=String',
    '--defaults',
    '--oneofs',
    '--keepCase=false',
    '--includeComments',
    `--outDir=${outDir}`,
    'quotad/v1/quota.proto',
    'quotad/v1/admin.proto',
    // Last: an array option would take the file names after it as its own values.
    '--includeDirs=proto',
  ],
  { stdio: 'inherit' },
);

for (const entry of readdirSync(outDir, { recursive: true, withFileTypes: true })) {
  if (!entry.isFile() || !entry.name.endsWith('.ts')) continue;
  const file = join(entry.parentPath, entry.name);
  const source = readFileSync(file, 'utf8');
  writeFileSync(file, source.replace(/from '(\.{1,2}\/[^']+?)(?<!\.js)'/g, "from '$1.js'"));
}
