import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { writeFileSync } from 'node:fs';
import { mkdir, mkdtemp, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { PolicyError } from '../../src/policy/policy-error.js';
import type { PolicyWatcherEvents } from '../../src/policy/watcher.js';
import { PolicyWatcher } from '../../src/policy/watcher.js';

// Only a guard against a hang; the tests wait on events, never on the clock.
const SAFETY_MS = 10_000;

function policyText(requestsPerMinute: number): string {
  return `version: 1
models:
  gpt-4o-mini:
    input_per_million: "0.15"
    output_per_million: "0.60"
tiers:
  free:
    max_output_tokens: 500
    limits:
      - name: requests_per_minute
        type: rate
        unit: requests
        limit: ${requestsPerMinute}
        window: 1m
`;
}

const BAD_TEXT = policyText(10).replace('window: 1m', 'window: one minute');

function rpmOf(watcher: PolicyWatcher): number | undefined {
  return watcher.current.tiers.get('free')?.limits[0]?.limit;
}

async function nextEvent<Name extends keyof PolicyWatcherEvents>(
  watcher: PolicyWatcher,
  name: Name,
): Promise<PolicyWatcherEvents[Name][0]> {
  const [payload] = (await once(watcher, name, {
    signal: AbortSignal.timeout(SAFETY_MS),
  })) as PolicyWatcherEvents[Name];
  return payload;
}

/** Yields to the event loop until `condition` holds; fails after SAFETY_MS instead of hanging. */
async function waitUntil(condition: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + SAFETY_MS;
  while (!condition()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting until ${what}`);
    await nextTurn();
  }
}

function countResources(kind: string): number {
  return process.getActiveResourcesInfo().filter((resource) => resource === kind).length;
}

/** A temp directory holding a valid policy.yaml (10 rpm), and a started watcher on it. */
async function watchedPolicy(
  debounceMs = 50,
): Promise<{ dir: string; path: string; watcher: PolicyWatcher; close(): Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), 'quotad-policy-'));
  const path = join(dir, 'policy.yaml');
  await writeFile(path, policyText(10));
  const watcher = new PolicyWatcher(path, { debounceMs });
  await watcher.start();
  return {
    dir,
    path,
    watcher,
    async close() {
      await watcher.stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

// In-place edits use writeFileSync: truncate and write happen before the loop sees either event, so the
// watcher can never read the empty file in between.
describe('PolicyWatcher', () => {
  test('start() loads the file and serves it as the current policy', async () => {
    const setup = await watchedPolicy();
    try {
      assert.equal(rpmOf(setup.watcher), 10);
    } finally {
      await setup.close();
    }
  });

  test('start() throws a PolicyError when the initial file is invalid, and leaves no watch behind', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'quotad-policy-'));
    try {
      const path = join(dir, 'policy.yaml');
      await writeFile(path, BAD_TEXT);
      const watchesBefore = countResources('FSEventWrap');
      await assert.rejects(new PolicyWatcher(path).start(), PolicyError);
      await waitUntil(() => countResources('FSEventWrap') === watchesBefore, 'the directory watch is closed');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('start() throws a PolicyError when the policy directory does not exist', async () => {
    const path = join(tmpdir(), 'quotad-no-such-directory', 'policy.yaml');
    await assert.rejects(new PolicyWatcher(path).start(), PolicyError);
  });

  test('a valid edit in place swaps the current policy and emits reloaded with its sha256', async () => {
    const setup = await watchedPolicy();
    try {
      const reloaded = nextEvent(setup.watcher, 'reloaded');
      writeFileSync(setup.path, policyText(20));
      const { policy, sha256 } = await reloaded;
      assert.deepEqual(
        {
          rpm: policy.tiers.get('free')?.limits[0]?.limit,
          swapped: setup.watcher.current === policy,
          sha256,
        },
        { rpm: 20, swapped: true, sha256: setup.watcher.sha256 },
      );
    } finally {
      await setup.close();
    }
  });

  test('an invalid edit emits rejected with the line and keeps the last good policy', async () => {
    const setup = await watchedPolicy();
    try {
      const before = setup.watcher.current;
      const rejected = nextEvent(setup.watcher, 'rejected');
      writeFileSync(setup.path, BAD_TEXT);
      const error = await rejected;
      assert.deepEqual(
        { message: error.message, kept: setup.watcher.current === before },
        {
          message: `${setup.path}:14:17 tiers.free.limits[0].window: expected a duration like 30s, 1m, 24h`,
          kept: true,
        },
      );
    } finally {
      await setup.close();
    }
  });

  test('a good edit after a rejected one is still picked up', async () => {
    const setup = await watchedPolicy();
    try {
      const rejected = nextEvent(setup.watcher, 'rejected');
      writeFileSync(setup.path, BAD_TEXT);
      await rejected;
      const reloaded = nextEvent(setup.watcher, 'reloaded');
      writeFileSync(setup.path, policyText(30));
      await reloaded;
      assert.equal(rpmOf(setup.watcher), 30);
    } finally {
      await setup.close();
    }
  });

  test('an edit written to a temp file and renamed over the policy is seen', async () => {
    const setup = await watchedPolicy();
    try {
      const reloaded = nextEvent(setup.watcher, 'reloaded');
      const temp = join(setup.dir, 'policy.yaml.tmp');
      await writeFile(temp, policyText(40));
      await rename(temp, setup.path);
      await reloaded;
      assert.equal(rpmOf(setup.watcher), 40);
    } finally {
      await setup.close();
    }
  });

  test('a Kubernetes ConfigMap update (the ..data symlink swapped to a new directory) is seen', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'quotad-configmap-'));
    const watcher = new PolicyWatcher(join(dir, 'policy.yaml'), { debounceMs: 50 });
    try {
      await mkdir(join(dir, '..v1'));
      await writeFile(join(dir, '..v1', 'policy.yaml'), policyText(10));
      await symlink('..v1', join(dir, '..data'));
      await symlink(join('..data', 'policy.yaml'), join(dir, 'policy.yaml'));
      await watcher.start();
      const reloaded = nextEvent(watcher, 'reloaded');
      await mkdir(join(dir, '..v2'));
      await writeFile(join(dir, '..v2', 'policy.yaml'), policyText(50));
      await symlink('..v2', join(dir, '..data_tmp'));
      await rename(join(dir, '..data_tmp'), join(dir, '..data'));
      await reloaded;
      assert.equal(rpmOf(watcher), 50);
    } finally {
      await watcher.stop();
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('reload() re-reads the file on demand, without waiting for the watch', async () => {
    const setup = await watchedPolicy(SAFETY_MS);
    try {
      writeFileSync(setup.path, policyText(60));
      assert.deepEqual(
        { outcome: await setup.watcher.reload(), rpm: rpmOf(setup.watcher) },
        { outcome: 'reloaded', rpm: 60 },
      );
    } finally {
      await setup.close();
    }
  });

  test('reload() of an unchanged file reports unchanged and keeps the same policy object', async () => {
    const setup = await watchedPolicy();
    try {
      const before = setup.watcher.current;
      assert.deepEqual(
        { outcome: await setup.watcher.reload(), same: setup.watcher.current === before },
        { outcome: 'unchanged', same: true },
      );
    } finally {
      await setup.close();
    }
  });

  test('stop() closes the directory watch', async () => {
    const watchesBefore = countResources('FSEventWrap');
    const setup = await watchedPolicy();
    await setup.close();
    await waitUntil(() => countResources('FSEventWrap') === watchesBefore, 'the directory watch is closed');
  });

  test('stop() cancels a debounced re-read still pending, leaving no timer', async () => {
    const timersBefore = countResources('Timeout');
    const setup = await watchedPolicy(SAFETY_MS);
    try {
      writeFileSync(setup.path, policyText(70));
      await waitUntil(() => countResources('Timeout') > timersBefore, 'the edit starts the debounce timer');
    } finally {
      await setup.close();
    }
    assert.equal(countResources('Timeout'), timersBefore);
  });
});
