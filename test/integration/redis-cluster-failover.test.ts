import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { API_KEY_IDS, orgPrefix } from '../../src/store/keys.js';
import { createRedisConnection } from '../../src/store/redis/connection.js';
import { RedisKeyStore } from '../../src/store/redis/redis-key-store.js';
import { newKeyRecord } from '../../src/core/key-record.js';
import { killMasterUnderLoad } from '../helpers/failover.js';
import { TestRedisCluster } from '../../harness/redis-topology.js';

let cluster: TestRedisCluster;
before(async () => {
  cluster = await TestRedisCluster.start();
});
after(() => cluster.stop());

async function connect() {
  const redis = createRedisConnection(
    { mode: 'cluster', nodes: cluster.seedNodes, tls: false },
    { commandTimeoutMs: 1_000 },
  );
  await redis.connect();
  return redis;
}

test("many orgs' keys land on more than one master", async () => {
  const masters = new Set<number>();
  for (let i = 0; i < 20; i++) masters.add((await cluster.masterOf(`${orgPrefix(`org-${i}`)}:x`)).port);
  assert.ok(masters.size >= 2, `20 orgs on ${masters.size} master(s)`);
});

test('a key write waits for more replicas than a shard has: UNAVAILABLE-worthy error, saying it was written', async (t) => {
  const keyStore = new RedisKeyStore({
    redis: await connect(),
    ownsClient: true,
    writeReplicas: 2,
    writeReplicaTimeoutMs: 100,
  });
  t.after(() => keyStore.close());
  const record = newKeyRecord({
    id: `key_wait${process.pid}`,
    name: 'wait',
    owner: 'test',
    org: 'wait-org',
    tier: 'pro',
    secret: { sha256: 'a'.repeat(64), hint: 'qd_live_AAAA…' },
    nowMs: Date.now(),
  });
  await assert.rejects(
    () => keyStore.putKey(record, Date.now()),
    /written on the master, but 1 of the 2 replica\(s\) asked confirmed it within 100 ms \(WAIT\)/,
  );
  assert.equal((await keyStore.getKey(record.id))?.id, record.id);
});

test('SIGKILL of the registry shard master under load: all answered in time, Redis back, revocation kept', async (t) => {
  const killed = await cluster.masterOf(API_KEY_IDS);
  let org = '';
  for (let i = 0; org === ''; i++) {
    if ((await cluster.masterOf(`${orgPrefix(`failover-${i}`)}:x`)).port === killed.port)
      org = `failover-${i}`;
  }
  await killMasterUnderLoad(t, {
    connect,
    orgOnKilledMaster: org,
    killMaster: () => killed.kill(),
    // cluster-node-timeout 1 s: the replica is elected within about twice that.
    failoverBoundMs: 3_000,
  });
});
