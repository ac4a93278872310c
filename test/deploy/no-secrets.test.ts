import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { isMap, isScalar, isSeq, parseAllDocuments, type Node as YamlNode } from 'yaml';
import { checkApiKey, formatApiKey, KEY_RANDOM_BYTES } from '../../src/keys/api-key.js';
import { REPO_ROOT } from '../../harness/authority-process.js';

/**
 * What this scan looks for, in every file git tracks or would add (tracked and untracked, less ignored):
 * the credentials this project could plausibly leak, each by a shape that real ones have and fixtures do
 * not, so it never needs an exception list:
 *
 * - quotad API keys with a valid checksum (a look-alike or a typo fails `checkApiKey`);
 * - OpenAI keys: every real one carries `T3BlbkFJ` (base64 of "OpenAI"), which fixtures such as
 *   `sk-upstream-secret-…` do not;
 * - PEM private keys;
 * - passwords inside URLs (`scheme://user:password@host`), unless a placeholder (`password`, `PASSWORD`,
 *   `$VAR`, `<…>`);
 * - under deploy/: Secret objects with data, and YAML values under secret-looking keys or environment
 *   variables (`token:`, `password:`, `{name: …_API_KEY, value: …}`).
 *
 * Not in scope: generic high-entropy strings (hashes and test vectors would drown it) and git history
 * (a leaked secret is rotated, not rewritten out).
 */

const PLACEHOLDER = /^([A-Z][A-Z0-9_]*|password|pass|secret|\$\{?\w+\}?|<[^>]*>|\.\.\.|…|x+|\*+)$/;
const SECRET_KEY = /(^|[_.-])(password|passwd|token|secret|api[_-]?key)$/i;
const SECRET_ENV = /(TOKEN|SECRET|PASSWORD|API_KEY)$/;

function yamlFindings(text: string): string[] {
  const findings: string[] = [];
  const visit = (node: unknown, path: string): void => {
    if (isMap(node)) {
      const entries = new Map(
        node.items.map((pair) => [isScalar(pair.key) ? String(pair.key.value) : '', pair.value]),
      );
      const kind = entries.get('kind');
      if (isScalar(kind) && kind.value === 'Secret' && (entries.has('data') || entries.has('stringData'))) {
        findings.push(`${path}: a Secret with data`);
      }
      const name = entries.get('name');
      const value = entries.get('value');
      if (
        isScalar(name) &&
        SECRET_ENV.test(String(name.value)) &&
        isScalar(value) &&
        String(value.value) !== ''
      ) {
        findings.push(`${path}: ${String(name.value)} has a literal value`);
      }
      for (const [key, child] of entries) {
        if (
          SECRET_KEY.test(key) &&
          isScalar(child) &&
          typeof child.value === 'string' &&
          child.value !== ''
        ) {
          findings.push(`${path}.${key}: a literal value`);
        }
        visit(child, `${path}.${key}`);
      }
    } else if (isSeq(node)) {
      node.items.forEach((item, index) => visit(item, `${path}[${index}]`));
    }
  };
  for (const document of parseAllDocuments(text)) visit(document.contents as YamlNode | null, '');
  return findings;
}

/** The credentials in one file's text, each described without repeating it. */
function credentialsIn(text: string, path: string): string[] {
  const findings: string[] = [];
  for (const [key] of text.matchAll(/qd_(live|demo)_[0-9A-Za-z]{38}(?![0-9A-Za-z])/g)) {
    if (checkApiKey(key).ok) findings.push('a quotad API key');
  }
  if (/sk-[A-Za-z0-9_-]*T3BlbkFJ/.test(text)) findings.push('an OpenAI API key');
  if (/-----BEGIN ([A-Z]+ )*PRIVATE KEY-----/.test(text)) findings.push('a PEM private key');
  for (const [, password] of text.matchAll(/\b[a-z][a-z0-9+.-]*:\/\/[^\s:@/'"`]*:([^\s@/'"`]+)@/g)) {
    if (!PLACEHOLDER.test(password as string)) findings.push('a password in a URL');
  }
  if (path.startsWith('deploy/') && /\.ya?ml$/.test(path)) findings.push(...yamlFindings(text));
  return findings;
}

function repositoryFiles(): string[] {
  const listed = execFileSync('git', ['ls-files', '-z', '--cached', '--others', '--exclude-standard'], {
    cwd: REPO_ROOT,
    encoding: 'utf8',
    maxBuffer: 64 * 1024 * 1024,
  });
  return listed.split('\0').filter((path) => path !== '' && existsSync(join(REPO_ROOT, path)));
}

test('no file in the repository holds a credential', () => {
  const files = repositoryFiles();
  assert.ok(files.includes('deploy/kubernetes/base/kustomization.yaml'), 'the scan sees the manifests');
  const findings = files.flatMap((path) => {
    const bytes = readFileSync(join(REPO_ROOT, path));
    if (bytes.subarray(0, 8000).includes(0)) return [];
    return credentialsIn(bytes.toString('utf8'), path).map((finding) => `${path}: ${finding}`);
  });
  assert.deepEqual(findings, []);
});

test('the scan finds each kind of credential, and passes fixtures and placeholders', () => {
  // Built at run time, so that this file holds none of them.
  const key = formatApiKey('live', randomBytes(KEY_RANDOM_BYTES));
  const openai = ['sk', 'proj', 'a'.repeat(20) + 'T3Blbk' + 'FJ' + 'b'.repeat(20)].join('-');
  const pem = ['-----BEGIN', 'RSA PRIVATE KEY-----'].join(' ');
  const found = (text: string, path = 'README.md') => credentialsIn(text, path);
  assert.deepEqual(found(`key: ${key}`), ['a quotad API key']);
  assert.deepEqual(found(`${key.slice(0, -1)}${key.endsWith('0') ? '1' : '0'}`), []);
  assert.deepEqual(found(`OPENAI_API_KEY=${openai}`), ['an OpenAI API key']);
  assert.deepEqual(found("const UPSTREAM_KEY = 'sk-upstream-secret-never-logged-4242';"), []);
  assert.deepEqual(found(pem), ['a PEM private key']);
  const url = ['REDIS_URL=rediss://default', 's3cr3t-value@redis:6379'].join(':');
  assert.deepEqual(found(url), ['a password in a URL']);
  assert.deepEqual(found("--from-literal=url='rediss://default:PASSWORD@redis.example.internal:6379'"), []);
  const manifest =
    'kind: Secret\nstringData:\n  token: abc\n---\nenv:\n  - name: QUOTAD_ADMIN_TOKEN\n    value: abc\n';
  assert.deepEqual(found(manifest, 'deploy/kubernetes/x.yaml'), [
    ': a Secret with data',
    '.stringData.token: a literal value',
    '.env[0]: QUOTAD_ADMIN_TOKEN has a literal value',
  ]);
});
