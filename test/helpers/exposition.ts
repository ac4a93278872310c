/** One sample line of the Prometheus text format: its series name and labels. */
export interface Sample {
  name: string;
  labels: Map<string, string>;
}

/** What a `/metrics` answer exposes: each metric family's type, and every sample. */
export interface Exposition {
  /** Family name (as in `# TYPE`) to its type: counter, gauge, histogram, summary, untyped. */
  types: Map<string, string>;
  samples: Sample[];
}

const SAMPLE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+\S+(?:\s+\S+)?$/;
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;
/** The series a histogram or summary family exposes besides its name. */
const FAMILY_SUFFIXES = ['_bucket', '_sum', '_count'];

function unescape(value: string): string {
  return value.replace(/\\(.)/g, (_, char: string) => (char === 'n' ? '\n' : char));
}

/** Parses the Prometheus text exposition format (what prom-client writes). */
export function parseExposition(text: string): Exposition {
  const types = new Map<string, string>();
  const samples: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line.startsWith('# TYPE ')) {
      const [name, type] = line.slice('# TYPE '.length).split(' ');
      if (name && type) types.set(name, type);
      continue;
    }
    if (line === '' || line.startsWith('#')) continue;
    const match = SAMPLE.exec(line);
    if (!match) throw new Error(`not a sample line: ${line}`);
    const labels = new Map<string, string>();
    for (const [, name, value] of (match[2] ?? '').matchAll(LABEL)) labels.set(name!, unescape(value!));
    samples.push({ name: match[1]!, labels });
  }
  return { types, samples };
}

/**
 * Whether `name` can be queried from this exposition: a counter's or gauge's own name, or a histogram's or
 * summary's `_bucket`/`_sum`/`_count` series (never the bare family name, which holds no samples).
 */
export function seriesExists(exposition: Exposition, name: string): boolean {
  const type = exposition.types.get(name);
  if (type !== undefined) return type !== 'histogram' && type !== 'summary';
  const suffix = FAMILY_SUFFIXES.find((s) => name.endsWith(s));
  if (!suffix) return false;
  const family = exposition.types.get(name.slice(0, -suffix.length));
  return family === 'histogram' || (family === 'summary' && suffix !== '_bucket');
}

/** Every label name the samples of series `name` carry. */
export function labelNamesOf(exposition: Exposition, name: string): Set<string> {
  const names = new Set<string>();
  for (const sample of exposition.samples) {
    if (sample.name === name) for (const label of sample.labels.keys()) names.add(label);
  }
  return names;
}
