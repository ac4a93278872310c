import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Cluster, Redis } from 'ioredis';
import { eventually } from './eventually.js';
import { portIsFree } from './redis-server.js';

const run = promisify(execFile);

/**
 * A free port below 55535 whose port + 10000 is free too: a Cluster node also listens on its bus port,
 * port + 10000, which must stay a valid port.
 */
export async function freeClusterPort(taken: Set<number>): Promise<number> {
  for (;;) {
    const port = 20_000 + Math.floor(Math.random() * 30_000);
    if (taken.has(port) || taken.has(port + 10_000) || taken.has(port - 10_000)) continue;
    if ((await portIsFree(port)) && (await portIsFree(port + 10_000))) {
      taken.add(port);
      return port;
    }
  }
}

/** One redis-server (or sentinel) process of a topology, killable and restartable on its port. */
export class RedisProcess {
  #child: ChildProcess | undefined;

  constructor(
    readonly port: number,
    readonly args: string[],
    readonly readyText: string,
  ) {}

  get running(): boolean {
    return this.#child !== undefined && this.#child.exitCode === null && this.#child.signalCode === null;
  }

  async start(): Promise<void> {
    const child = spawn('redis-server', this.args, { stdio: ['ignore', 'pipe', 'pipe'] });
    this.#child = child;
    let output = '';
    await new Promise<void>((resolve, reject) => {
      const onData = (chunk: Buffer) => {
        output += chunk.toString();
        if (output.includes(this.readyText)) {
          child.stdout?.off('data', onData);
          child.stdout?.resume();
          resolve();
        }
      };
      child.stdout?.on('data', onData);
      child.once('exit', (code) => reject(new Error(`redis-server exited with ${code}: ${output}`)));
      child.once('error', reject);
    });
  }

  /** SIGKILL, as a crash would. */
  async kill(): Promise<void> {
    const child = this.#child;
    if (!child || !this.running) return;
    const exited = once(child, 'exit');
    child.kill('SIGKILL');
    await exited;
    this.#child = undefined;
  }

  client(): Redis {
    return new Redis({ host: '127.0.0.1', port: this.port, maxRetriesPerRequest: 1, lazyConnect: false });
  }

  /** Runs one command on this process alone. */
  async command(...args: string[]): Promise<unknown> {
    const client = this.client();
    try {
      return await client.call(args[0] as string, ...args.slice(1));
    } finally {
      client.disconnect();
    }
  }
}

function info(text: string, field: string): string | undefined {
  return new RegExp(`^${field}:(.*)$`, 'm').exec(text)?.[1]?.trim();
}

const NODE_TIMEOUT_MS = 1_000;

/**
 * A real Redis Cluster for one test file: three masters with a replica each, on free ports below 55535,
 * made by `redis-cli --cluster create`, with a short cluster-node-timeout so a killed master's replica
 * takes over in a few seconds.
 */
export class TestRedisCluster {
  readonly nodes: RedisProcess[];
  readonly #dir: string;

  private constructor(nodes: RedisProcess[], dir: string) {
    this.nodes = nodes;
    this.#dir = dir;
  }

  static async start(masters = 3): Promise<TestRedisCluster> {
    const dir = await mkdtemp(join(tmpdir(), 'quotad-cluster-'));
    const taken = new Set<number>();
    const nodes: RedisProcess[] = [];
    for (let i = 0; i < masters * 2; i++) {
      const port = await freeClusterPort(taken);
      nodes.push(
        new RedisProcess(
          port,
          [
            '--port',
            String(port),
            '--bind',
            '127.0.0.1',
            '--dir',
            dir,
            '--save',
            '',
            '--appendonly',
            'no',
            '--cluster-enabled',
            'yes',
            '--cluster-config-file',
            `nodes-${port}.conf`,
            '--cluster-node-timeout',
            String(NODE_TIMEOUT_MS),
            '--cluster-replica-validity-factor',
            '0',
            // A replica's first sync starts at once instead of after the default 5 s diskless delay.
            '--repl-diskless-sync-delay',
            '0',
          ],
          'Ready to accept connections',
        ),
      );
    }
    await Promise.all(nodes.map((node) => node.start()));
    await run('redis-cli', [
      '--cluster',
      'create',
      ...nodes.map((node) => `127.0.0.1:${node.port}`),
      '--cluster-replicas',
      '1',
      '--cluster-yes',
    ]);
    const cluster = new TestRedisCluster(nodes, dir);
    await cluster.waitUntilHealthy();
    return cluster;
  }

  /** Seed nodes as QUOTAD_REDIS_CLUSTER takes them. */
  get seeds(): string {
    return this.nodes.map((node) => `127.0.0.1:${node.port}`).join(',');
  }

  get seedNodes(): { host: string; port: number }[] {
    return this.nodes.map((node) => ({ host: '127.0.0.1', port: node.port }));
  }

  /**
   * Every running node says the cluster is ok and every master has a replica in sync, so a write can be
   * confirmed by WAIT and a master's death is survivable.
   */
  async waitUntilHealthy(timeoutMs = 20_000): Promise<void> {
    await eventually(
      async () => {
        for (const node of this.nodes.filter((each) => each.running)) {
          const state = info(String(await node.command('CLUSTER', 'INFO')), 'cluster_state');
          if (state !== 'ok') return undefined;
          const replication = String(await node.command('INFO', 'replication'));
          const role = info(replication, 'role');
          if (role === 'master' && Number(info(replication, 'connected_slaves') ?? 0) < 1) return undefined;
          if (role === 'slave' && info(replication, 'master_link_status') !== 'up') return undefined;
        }
        return true;
      },
      () => 'the Redis Cluster did not become healthy',
      { timeoutMs, intervalMs: 50 },
    );
  }

  /** The node that serves `key` as master right now. */
  async masterOf(key: string): Promise<RedisProcess> {
    const anyNode = this.nodes.find((node) => node.running) as RedisProcess;
    const slot = Number(await anyNode.command('CLUSTER', 'KEYSLOT', key));
    const shards = (await anyNode.command('CLUSTER', 'SLOTS')) as [number, number, [string, number]][];
    const owner = shards.find(([from, to]) => slot >= from && slot <= to);
    const port = owner?.[2][1];
    const node = this.nodes.find((each) => each.port === port);
    if (!node) throw new Error(`no master for ${key}`);
    return node;
  }

  /** Ports of the nodes that are masters now. */
  async masterPorts(): Promise<number[]> {
    const anyNode = this.nodes.find((node) => node.running) as RedisProcess;
    const shards = (await anyNode.command('CLUSTER', 'SLOTS')) as [number, number, [string, number]][];
    return [...new Set(shards.map((shard) => shard[2][1]))];
  }

  /** A plain Cluster client for inspecting what the store wrote. */
  client(): Cluster {
    return new Cluster(this.seedNodes, { redisOptions: { maxRetriesPerRequest: 1 } });
  }

  async flushAll(): Promise<void> {
    for (const port of await this.masterPorts()) {
      const node = this.nodes.find((each) => each.port === port) as RedisProcess;
      await node.command('FLUSHALL');
    }
  }

  async stop(): Promise<void> {
    await Promise.all(this.nodes.map((node) => node.kill()));
    await rm(this.#dir, { recursive: true, force: true });
  }
}

const DOWN_AFTER_MS = 1_000;

/** A real Sentinel group for one test file: a master, a replica and three sentinels, name `quotad`. */
export class TestRedisSentinel {
  readonly name = 'quotad';

  private constructor(
    readonly master: RedisProcess,
    readonly replica: RedisProcess,
    readonly sentinels: RedisProcess[],
    readonly dir: string,
  ) {}

  static async start(): Promise<TestRedisSentinel> {
    const dir = await mkdtemp(join(tmpdir(), 'quotad-sentinel-'));
    const taken = new Set<number>();
    const data = async (replicaOf?: number) => {
      const port = await freeClusterPort(taken);
      const args = ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir];
      args.push('--save', '', '--appendonly', 'no', '--dbfilename', `dump-${port}.rdb`);
      args.push('--repl-diskless-sync-delay', '0');
      if (replicaOf) args.push('--replicaof', '127.0.0.1', String(replicaOf));
      return new RedisProcess(port, args, 'Ready to accept connections');
    };
    const master = await data();
    await master.start();
    const replica = await data(master.port);
    await replica.start();
    const sentinels: RedisProcess[] = [];
    for (let i = 0; i < 3; i++) {
      const port = await freeClusterPort(taken);
      const file = join(dir, `sentinel-${port}.conf`);
      await writeFile(
        file,
        [
          `port ${port}`,
          'bind 127.0.0.1',
          `dir ${dir}`,
          `sentinel monitor quotad 127.0.0.1 ${master.port} 2`,
          `sentinel down-after-milliseconds quotad ${DOWN_AFTER_MS}`,
          'sentinel failover-timeout quotad 4000',
          'sentinel parallel-syncs quotad 1',
          '',
        ].join('\n'),
      );
      sentinels.push(new RedisProcess(port, [file, '--sentinel'], '+monitor master'));
    }
    await Promise.all(sentinels.map((sentinel) => sentinel.start()));
    const group = new TestRedisSentinel(master, replica, sentinels, dir);
    await group.waitUntilHealthy();
    return group;
  }

  get seeds(): string {
    return this.sentinels.map((sentinel) => `127.0.0.1:${sentinel.port}`).join(',');
  }

  get sentinelNodes(): { host: string; port: number }[] {
    return this.sentinels.map((sentinel) => ({ host: '127.0.0.1', port: sentinel.port }));
  }

  /** The data process the sentinels name as master now. */
  async currentMaster(): Promise<RedisProcess> {
    for (const sentinel of this.sentinels.filter((each) => each.running)) {
      const reply = (await sentinel.command('SENTINEL', 'get-master-addr-by-name', this.name)) as
        [string, string] | null;
      const port = Number(reply?.[1]);
      if (port === this.master.port) return this.master;
      if (port === this.replica.port) return this.replica;
    }
    throw new Error('no sentinel names a master');
  }

  /** Every sentinel knows the other two and the replica, and the replica is in sync: a failover can happen. */
  async waitUntilHealthy(timeoutMs = 20_000): Promise<void> {
    await eventually(
      async () => {
        const master = await this.currentMaster();
        const replica = master === this.master ? this.replica : this.master;
        const replication = String(await replica.command('INFO', 'replication'));
        if (info(replication, 'master_link_status') !== 'up') return undefined;
        for (const sentinel of this.sentinels) {
          const replicas = (await sentinel.command('SENTINEL', 'replicas', this.name)) as unknown[];
          const others = (await sentinel.command('SENTINEL', 'sentinels', this.name)) as unknown[];
          if (replicas.length < 1 || others.length < 2) return undefined;
        }
        return true;
      },
      () => 'the Sentinel group did not become healthy',
      { timeoutMs, intervalMs: 50 },
    );
  }

  async stop(): Promise<void> {
    await Promise.all([...this.sentinels, this.master, this.replica].map((each) => each.kill()));
    await rm(this.dir, { recursive: true, force: true });
  }
}
