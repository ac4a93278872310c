/**
 * Reads a V8 .cpuprofile (node --cpu-prof): self time by function and by where the code lives (a package,
 * quotad's own src/ folder, Node's internals, GC), as shares of the samples taken while not idle.
 */

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}

interface ProfileNode {
  id: number;
  callFrame: CallFrame;
}

export interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

export interface ProfileEntry {
  name: string;
  where: string;
  selfPercent: number;
  selfMs: number;
}

export interface ProfileSummary {
  totalMs: number;
  idlePercent: number;
  top: ProfileEntry[];
  byPlace: ProfileEntry[];
}

const SPECIAL = new Set(['(idle)', '(program)', '(garbage collector)', '(root)']);

function place(frame: CallFrame, repoRoot: string): string {
  if (SPECIAL.has(frame.functionName)) return frame.functionName;
  const url = frame.url;
  if (!url && /\$(toObject|fromObject|encode|decode|verify)$/.test(frame.functionName)) {
    return 'protobufjs (generated code)';
  }
  if (!url) return '(native / V8 builtins)';
  if (url.startsWith('node:')) return 'Node internals (node:*)';
  const modules = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (modules) return modules[1] as string;
  const path = url.replace(/^file:\/\//, '').replace(repoRoot, '');
  const own = /^dist\/(src|test|bench)\/([^/]+)/.exec(path);
  if (own) return `quotad ${own[1]}/${own[2]}${own[2]?.endsWith('.js') ? '' : '/'}`;
  return path;
}

function shortUrl(url: string, repoRoot: string): string {
  return url
    .replace(/^file:\/\//, '')
    .replace(repoRoot, '')
    .replace(/^.*node_modules\//, '')
    .replace(/^dist\//, '');
}

export function summarizeProfile(profile: CpuProfile, repoRoot: string): ProfileSummary {
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const selfUs = new Map<number, number>();
  profile.samples.forEach((id, i) => {
    selfUs.set(id, (selfUs.get(id) ?? 0) + (profile.timeDeltas[i + 1] ?? profile.timeDeltas[i] ?? 0));
  });
  let totalUs = 0;
  let idleUs = 0;
  const functions = new Map<string, { name: string; where: string; us: number }>();
  const places = new Map<string, number>();
  for (const [id, us] of selfUs) {
    const frame = (byId.get(id) as ProfileNode).callFrame;
    totalUs += us;
    if (frame.functionName === '(idle)') {
      idleUs += us;
      continue;
    }
    const where = place(frame, repoRoot);
    places.set(where, (places.get(where) ?? 0) + us);
    const name = frame.functionName || '(anonymous)';
    const location = frame.url ? `${shortUrl(frame.url, repoRoot)}:${frame.lineNumber + 1}` : '';
    const key = `${name} ${location}`;
    const entry = functions.get(key) ?? { name, where: location || where, us: 0 };
    entry.us += us;
    functions.set(key, entry);
  }
  const busyUs = totalUs - idleUs;
  const entry = (name: string, where: string, us: number): ProfileEntry => ({
    name,
    where,
    selfMs: us / 1000,
    selfPercent: (100 * us) / busyUs,
  });
  return {
    totalMs: totalUs / 1000,
    idlePercent: (100 * idleUs) / totalUs,
    top: [...functions.values()]
      .sort((a, b) => b.us - a.us)
      .slice(0, 25)
      .map((f) => entry(f.name, f.where, f.us)),
    byPlace: [...places]
      .sort((a, b) => b[1] - a[1])
      .slice(0, 20)
      .map(([where, us]) => entry(where, '', us)),
  };
}
