/** One instruction, continuation lines joined: `COPY --from=build /app/dist/src dist/src`. */
export interface Instruction {
  keyword: string;
  args: string;
  line: number;
}

/** A build stage: its base image, its name (`AS name`) and its instructions after FROM. */
export interface Stage {
  from: string;
  name: string | undefined;
  instructions: Instruction[];
}

/**
 * Parses a Dockerfile into stages. Enough of the syntax for the project's own file: comments, line
 * continuations, `FROM image [AS name]`; no parser directives beyond `# syntax`, no heredocs.
 */
export function parseDockerfile(text: string): Stage[] {
  const stages: Stage[] = [];
  const lines = text.split('\n');
  for (let index = 0; index < lines.length; index++) {
    const first = index + 1;
    let line = (lines[index] as string).trim();
    if (line === '' || line.startsWith('#')) continue;
    while (line.endsWith('\\') && index + 1 < lines.length) {
      index++;
      const next = (lines[index] as string).trim();
      line = line.slice(0, -1).trimEnd() + (next.startsWith('#') ? '' : ` ${next}`);
    }
    const match = /^(\S+)\s*(.*)$/.exec(line);
    if (!match) continue;
    const keyword = (match[1] as string).toUpperCase();
    const args = (match[2] as string).trim();
    if (keyword === 'FROM') {
      const from = /^(\S+)(?:\s+AS\s+(\S+))?$/i.exec(args);
      if (!from) throw new Error(`line ${first}: FROM ${args}`);
      stages.push({ from: from[1] as string, name: from[2], instructions: [] });
      continue;
    }
    const stage = stages.at(-1);
    if (!stage) throw new Error(`line ${first}: ${keyword} before FROM`);
    stage.instructions.push({ keyword, args, line: first });
  }
  return stages;
}

/** `COPY [--from=x] [--chown=…] src… dest`, in shell form or JSON form. */
export interface Copy {
  from: string | undefined;
  sources: string[];
  destination: string;
}

export function parseCopy(args: string): Copy {
  const words = args.split(/\s+/);
  const flags = words.filter((word) => word.startsWith('--'));
  const rest = words.slice(flags.length).join(' ');
  const paths = rest.startsWith('[') ? (JSON.parse(rest) as string[]) : rest.split(/\s+/);
  if (paths.length < 2) throw new Error(`COPY needs a source and a destination: ${args}`);
  const from = flags.find((flag) => flag.startsWith('--from='))?.slice('--from='.length);
  return { from, sources: paths.slice(0, -1), destination: paths.at(-1) as string };
}

/** The values of `ENV` instructions (`KEY=value` pairs, unquoted). */
export function envOf(stage: Stage): Record<string, string> {
  const env: Record<string, string> = {};
  for (const { keyword, args } of stage.instructions) {
    if (keyword !== 'ENV') continue;
    for (const pair of args.split(/\s+/)) {
      const equals = pair.indexOf('=');
      if (equals > 0) env[pair.slice(0, equals)] = pair.slice(equals + 1);
    }
  }
  return env;
}

/** The last value of a keyword in a stage (`USER`, `WORKDIR`, `ENTRYPOINT`…), as written. */
export function lastOf(stage: Stage, keyword: string): string | undefined {
  return stage.instructions.filter((instruction) => instruction.keyword === keyword).at(-1)?.args;
}

/**
 * Whether a .dockerignore excludes a context path. Patterns as Docker reads them: relative to the context
 * root, `*` within a path segment, `**` across segments, `!` to re-include; a directory pattern excludes
 * everything below it.
 */
export function dockerIgnores(patterns: readonly string[], path: string): boolean {
  const clean = path.replace(/^\.?\//, '').replace(/\/$/, '');
  let ignored = false;
  for (const raw of patterns) {
    const pattern = raw.trim();
    if (pattern === '' || pattern.startsWith('#')) continue;
    const negated = pattern.startsWith('!');
    const body = (negated ? pattern.slice(1) : pattern).replace(/^\.?\//, '').replace(/\/$/, '');
    const source = body
      .split('**')
      .map((part) =>
        part
          .replace(/[.+^${}()|[\]\\]/g, '\\$&')
          .replace(/\*/g, '[^/]*')
          .replace(/\?/g, '[^/]'),
      )
      .join('.*');
    if (new RegExp(`^${source}(/.*)?$`).test(clean)) ignored = !negated;
  }
  return ignored;
}
