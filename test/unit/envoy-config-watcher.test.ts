import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { writeFileSync } from 'node:fs';
import { mkdir, mkdtemp, rename, rm, symlink, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setImmediate as nextTurn } from 'node:timers/promises';
import type { EnvoyConfig } from '../../src/envoy/config.js';
import { EnvoyConfigError } from '../../src/envoy/config-error.js';
import type { EnvoyConfigWatcherEvents } from '../../src/envoy/config-watcher.js';
import { EnvoyConfigWatcher } from '../../src/envoy/config-watcher.js';

// Only a guard against a hang; the tests wait on events, never on the clock.
const SAFETY_MS = 10_000;

function domainText(domain: string, requestsPerMinute: number): string {
  return `domain: ${domain}
descriptors:
  - key: user
    rate_limit:
      unit: minute
      requests_per_unit: ${requestsPerMinute}
`;
}

const BAD_TEXT = domainText('shop', 10).replace('unit: minute', 'unit: fortnight');

/** requests_per_unit of the `user` rule of a domain, or undefined when the domain is not in force. */
function limitOf(config: EnvoyConfig, domain: string): number | undefined {
  return config.domains.get(domain)?.descriptors.keyOnly.get('user')?.rule?.requestsPerUnit;
}

async function nextEvent<Name extends keyof EnvoyConfigWatcherEvents>(
  watcher: EnvoyConfigWatcher,
  name: Name,
): Promise<EnvoyConfigWatcherEvents[Name][0]> {
  const [payload] = (await once(watcher, name, {
    signal: AbortSignal.timeout(SAFETY_MS),
  })) as EnvoyConfigWatcherEvents[Name];
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

interface WatchedDirectory {
  dir: string;
  watcher: EnvoyConfigWatcher;
  close(): Promise<void>;
}

/** A temp directory holding shop.yaml (10 a minute), and a started watcher on it. */
async function watchedDirectory(debounceMs = 50): Promise<WatchedDirectory> {
  const dir = await mkdtemp(join(tmpdir(), 'quotad-envoy-watch-'));
  await writeFile(join(dir, 'shop.yaml'), domainText('shop', 10));
  const watcher = new EnvoyConfigWatcher(dir, { debounceMs });
  await watcher.start();
  return {
    dir,
    watcher,
    async close() {
      await watcher.stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

// In-place edits use writeFileSync: truncate and write happen before the loop sees either event, so the
// watcher can never read the empty file in between.
describe('EnvoyConfigWatcher', () => {
  test('start() loads the directory and serves it as the configuration in force', async () => {
    const setup = await watchedDirectory();
    try {
      assert.equal(limitOf(setup.watcher.current, 'shop'), 10);
    } finally {
      await setup.close();
    }
  });

  test('start() throws an EnvoyConfigError when a file is invalid, and leaves no watch behind', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'quotad-envoy-watch-'));
    try {
      await writeFile(join(dir, 'shop.yaml'), BAD_TEXT);
      const watchesBefore = countResources('FSEventWrap');
      await assert.rejects(new EnvoyConfigWatcher(dir).start(), EnvoyConfigError);
      await waitUntil(() => countResources('FSEventWrap') === watchesBefore, 'the directory watch is closed');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('start() throws an EnvoyConfigError when the directory does not exist', async () => {
    await assert.rejects(
      new EnvoyConfigWatcher(join(tmpdir(), 'quotad-no-such-envoy-directory')).start(),
      EnvoyConfigError,
    );
  });

  test('a valid edit in place applies and emits reloaded with the new sha256', async () => {
    const setup = await watchedDirectory();
    try {
      const before = setup.watcher.sha256;
      const reloaded = nextEvent(setup.watcher, 'reloaded');
      writeFileSync(join(setup.dir, 'shop.yaml'), domainText('shop', 20));
      const { config, sha256 } = await reloaded;
      assert.deepEqual(
        {
          limit: limitOf(config, 'shop'),
          inForce: setup.watcher.current === config,
          sha256,
          changed: sha256 !== before,
        },
        { limit: 20, inForce: true, sha256: setup.watcher.sha256, changed: true },
      );
    } finally {
      await setup.close();
    }
  });

  test('a new file adds its domain', async () => {
    const setup = await watchedDirectory();
    try {
      const reloaded = nextEvent(setup.watcher, 'reloaded');
      writeFileSync(join(setup.dir, 'api.yml'), domainText('api', 5));
      const { config } = await reloaded;
      assert.deepEqual([limitOf(config, 'shop'), limitOf(config, 'api')], [10, 5]);
    } finally {
      await setup.close();
    }
  });

  test('a removed file takes its domain out', async () => {
    const setup = await watchedDirectory();
    try {
      await writeFile(join(setup.dir, 'api.yaml'), domainText('api', 5));
      assert.equal(await setup.watcher.reload(), 'reloaded');
      const reloaded = nextEvent(setup.watcher, 'reloaded');
      await unlink(join(setup.dir, 'api.yaml'));
      const { config } = await reloaded;
      assert.deepEqual([...config.domains.keys()], ['shop']);
    } finally {
      await setup.close();
    }
  });

  test('an invalid edit emits rejected with file, line and reason, and keeps the last good configuration', async () => {
    const setup = await watchedDirectory();
    try {
      const before = setup.watcher.current;
      const rejected = nextEvent(setup.watcher, 'rejected');
      writeFileSync(join(setup.dir, 'shop.yaml'), BAD_TEXT);
      const error = await rejected;
      assert.deepEqual(
        { message: error.message, kept: setup.watcher.current === before },
        {
          message: `${join(setup.dir, 'shop.yaml')}:5:13 descriptors[0].rate_limit.unit: invalid unit "fortnight"; expected one of second, minute, hour, day, week, month, year`,
          kept: true,
        },
      );
    } finally {
      await setup.close();
    }
  });

  test('a new file repeating a domain is rejected and changes nothing', async () => {
    const setup = await watchedDirectory();
    try {
      const before = setup.watcher.current;
      const rejected = nextEvent(setup.watcher, 'rejected');
      writeFileSync(join(setup.dir, 'zz-copy.yaml'), domainText('shop', 99));
      const error = await rejected;
      assert.deepEqual(
        { message: error.message, kept: setup.watcher.current === before },
        {
          message: `${join(setup.dir, 'zz-copy.yaml')}:1:9 domain: duplicate domain "shop": ${join(setup.dir, 'shop.yaml')}:1 defines it already`,
          kept: true,
        },
      );
    } finally {
      await setup.close();
    }
  });

  test('a good edit after a rejected one is still picked up', async () => {
    const setup = await watchedDirectory();
    try {
      const rejected = nextEvent(setup.watcher, 'rejected');
      writeFileSync(join(setup.dir, 'shop.yaml'), BAD_TEXT);
      await rejected;
      const reloaded = nextEvent(setup.watcher, 'reloaded');
      writeFileSync(join(setup.dir, 'shop.yaml'), domainText('shop', 30));
      await reloaded;
      assert.equal(limitOf(setup.watcher.current, 'shop'), 30);
    } finally {
      await setup.close();
    }
  });

  test('an edit written to a temp file and renamed over the file is seen', async () => {
    const setup = await watchedDirectory();
    try {
      const reloaded = nextEvent(setup.watcher, 'reloaded');
      const temp = join(setup.dir, '.shop.yaml.tmp');
      await writeFile(temp, domainText('shop', 40));
      await rename(temp, join(setup.dir, 'shop.yaml'));
      await reloaded;
      assert.equal(limitOf(setup.watcher.current, 'shop'), 40);
    } finally {
      await setup.close();
    }
  });

  test('a Kubernetes ConfigMap update (the ..data symlink swapped to a new directory) is seen', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'quotad-envoy-configmap-'));
    const watcher = new EnvoyConfigWatcher(dir, { debounceMs: 50 });
    try {
      await mkdir(join(dir, '..v1'));
      await writeFile(join(dir, '..v1', 'shop.yaml'), domainText('shop', 10));
      await symlink('..v1', join(dir, '..data'));
      await symlink(join('..data', 'shop.yaml'), join(dir, 'shop.yaml'));
      await watcher.start();
      const reloaded = nextEvent(watcher, 'reloaded');
      await mkdir(join(dir, '..v2'));
      await writeFile(join(dir, '..v2', 'shop.yaml'), domainText('shop', 50));
      await symlink('..v2', join(dir, '..data_tmp'));
      await rename(join(dir, '..data_tmp'), join(dir, '..data'));
      await reloaded;
      assert.equal(limitOf(watcher.current, 'shop'), 50);
    } finally {
      await watcher.stop();
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('reload() re-reads the directory on demand, without waiting for the watch', async () => {
    const setup = await watchedDirectory(SAFETY_MS);
    try {
      writeFileSync(join(setup.dir, 'shop.yaml'), domainText('shop', 60));
      assert.deepEqual(
        { outcome: await setup.watcher.reload(), limit: limitOf(setup.watcher.current, 'shop') },
        { outcome: 'reloaded', limit: 60 },
      );
    } finally {
      await setup.close();
    }
  });

  test('reload() of an unchanged directory reports unchanged and keeps the same configuration object', async () => {
    const setup = await watchedDirectory();
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

  test('reload() of an invalid directory reports rejected and emits it', async () => {
    const setup = await watchedDirectory(SAFETY_MS);
    try {
      writeFileSync(join(setup.dir, 'shop.yaml'), BAD_TEXT);
      const rejected = nextEvent(setup.watcher, 'rejected');
      assert.equal(await setup.watcher.reload(), 'rejected');
      assert.ok((await rejected) instanceof EnvoyConfigError);
    } finally {
      await setup.close();
    }
  });

  test('stop() closes the directory watch', async () => {
    const watchesBefore = countResources('FSEventWrap');
    const setup = await watchedDirectory();
    await setup.close();
    await waitUntil(() => countResources('FSEventWrap') === watchesBefore, 'the directory watch is closed');
  });

  test('stop() cancels a debounced re-read still pending, leaving no timer', async () => {
    const timersBefore = countResources('Timeout');
    const setup = await watchedDirectory(SAFETY_MS);
    try {
      writeFileSync(join(setup.dir, 'shop.yaml'), domainText('shop', 70));
      await waitUntil(() => countResources('Timeout') > timersBefore, 'the edit starts the debounce timer');
    } finally {
      await setup.close();
    }
    assert.equal(countResources('Timeout'), timersBefore);
  });
});
