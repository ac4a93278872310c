/** What a benchmark reads from Redis: commands by name (INFO commandstats) and memory (INFO memory). */
import type { Redis } from 'ioredis';

/** Calls by command, from INFO commandstats. */
export function commandStats(info: string): Record<string, number> {
  const stats: Record<string, number> = {};
  for (const match of info.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm))
    stats[match[1] as string] = Number(match[2]);
  return stats;
}

export function diff(after: Record<string, number>, before: Record<string, number>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [name, count] of Object.entries(after)) {
    const d = count - (before[name] ?? 0);
    if (d > 0 && name !== 'info') out[name] = d;
  }
  return out;
}

export async function infoField(redis: Redis, section: string, field: string): Promise<string> {
  const info = await redis.info(section);
  const match = new RegExp(`^${field}:(.*)$`, 'm').exec(info);
  if (!match) throw new Error(`no ${field} in INFO ${section}`);
  return (match[1] as string).trim();
}

export async function usedMemory(redis: Redis): Promise<number> {
  return Number(await infoField(redis, 'memory', 'used_memory'));
}
