import type { RedisNode, RedisTarget } from '../store/redis/connection.js';
import { ConfigError, parseHostPort, SERVE_SETTINGS, settingName, type Setting } from './config.js';

/** The password of Cluster nodes or of the Sentinel-managed master: environment only, as a flag would show in `ps`. */
export const REDIS_PASSWORD_ENV = 'QUOTAD_REDIS_PASSWORD';

interface NodeList {
  nodes: RedisNode[];
  tls: boolean;
  username?: string;
  password?: string;
}

/** `host:port,…`, each optionally `redis://` or `rediss://` with user and password; all alike in TLS. */
function nodeList(name: string, text: string): NodeList {
  const entries = text
    .split(',')
    .map((entry) => entry.trim())
    .filter((entry) => entry !== '');
  if (entries.length === 0) throw new ConfigError(`${name}: expected host:port,host:port,…, got '${text}'`);
  const list: NodeList = { nodes: [], tls: false };
  const schemes = new Set<string>();
  for (const entry of entries) {
    const scheme = /^(rediss?):\/\//.exec(entry)?.[1];
    schemes.add(scheme === 'rediss' ? 'rediss' : 'redis');
    if (scheme === undefined) {
      list.nodes.push(parseHostPort(name, entry));
      continue;
    }
    if (!URL.canParse(entry)) throw new ConfigError(`${name}: '${entry}' is not a redis:// address`);
    const url = new URL(entry);
    list.nodes.push(parseHostPort(name, `${url.hostname}:${url.port || '6379'}`));
    if (url.username) list.username = decodeURIComponent(url.username);
    if (url.password) list.password = decodeURIComponent(url.password);
  }
  if (schemes.size > 1) {
    throw new ConfigError(`${name}: mixes redis:// and rediss://; use TLS for every node or for none`);
  }
  list.tls = schemes.has('rediss');
  return list;
}

/**
 * Which Redis `quotad serve` shares its store through: REDIS_URL, a Cluster or a Sentinel group, or
 * none (the in-process store). Two at once is a usage error naming both.
 */
export function parseRedisTarget(
  read: (setting: Setting) => string | undefined,
  env: NodeJS.ProcessEnv,
): RedisTarget | undefined {
  const s = SERVE_SETTINGS;
  const redisUrl = s.redisUrl;
  const url = read(redisUrl);
  const cluster = read(s.redisCluster);
  const sentinels = read(s.redisSentinels);
  const sentinelName = read(s.redisSentinelName);
  const given = [
    [redisUrl, url],
    [s.redisCluster, cluster],
    [s.redisSentinels, sentinels],
  ].filter(([, value]) => value !== undefined) as [Setting, string][];
  if (given.length > 1) {
    throw new ConfigError(
      `${given.map(([setting]) => settingName(setting)).join(' and ')}: set only one way to reach Redis`,
    );
  }
  if (sentinelName !== undefined && sentinels === undefined) {
    throw new ConfigError(`${settingName(s.redisSentinelName)}: needs ${settingName(s.redisSentinels)}`);
  }
  const password = env[REDIS_PASSWORD_ENV] || undefined;
  const auth = (list: NodeList) => {
    const pass = list.password ?? password;
    return { ...(list.username ? { username: list.username } : {}), ...(pass ? { password: pass } : {}) };
  };
  if (cluster !== undefined) {
    const list = nodeList(settingName(s.redisCluster), cluster);
    return { mode: 'cluster', nodes: list.nodes, tls: list.tls, ...auth(list) };
  }
  if (sentinels !== undefined) {
    if (sentinelName === undefined || sentinelName.trim() === '') {
      throw new ConfigError(`${settingName(s.redisSentinels)}: needs ${settingName(s.redisSentinelName)}`);
    }
    const list = nodeList(settingName(s.redisSentinels), sentinels);
    // The sentinels' own address list carries no password: QUOTAD_REDIS_PASSWORD is the master's.
    return {
      mode: 'sentinel',
      sentinels: list.nodes,
      name: sentinelName.trim(),
      tls: list.tls,
      ...(password ? { password } : {}),
    };
  }
  return url === undefined ? undefined : { mode: 'standalone', url };
}

/** `--redis-wait-replicas`: a count, or auto (1 where replicas are part of the deployment, else 0). */
export function waitReplicasSetting(
  read: (setting: Setting) => string | undefined,
  env: NodeJS.ProcessEnv,
): number {
  const setting = SERVE_SETTINGS.redisWaitReplicas;
  const text = (read(setting) ?? 'auto').trim();
  if (text === 'auto') {
    const mode = parseRedisTarget(read, env)?.mode;
    return mode === 'cluster' || mode === 'sentinel' ? 1 : 0;
  }
  if (!/^\d{1,2}$/.test(text)) {
    throw new ConfigError(`${settingName(setting)}: expected auto or a number of replicas, got '${text}'`);
  }
  return Number(text);
}
