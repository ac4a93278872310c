/** One thing wrong with an Envoy rate limit configuration file, located as precisely as the file allows. */
export interface EnvoyConfigProblem {
  /** The file as the operator named it, e.g. `config/envoy/messaging.yaml`. */
  source: string;
  /** 1-based; undefined when the problem is not at a place in the text (the file cannot be read). */
  line: number | undefined;
  column: number | undefined;
  /** Dotted path of the offending key, e.g. `descriptors[0].rate_limit.unit`; empty for the whole file. */
  path: string;
  reason: string;
}

function describe(problem: EnvoyConfigProblem): string {
  const at =
    problem.line === undefined ? problem.source : `${problem.source}:${problem.line}:${problem.column}`;
  return problem.path === '' ? `${at} ${problem.reason}` : `${at} ${problem.path}: ${problem.reason}`;
}

/** A configuration directory that cannot be used; the message lists every problem found, one a line. */
export class EnvoyConfigError extends Error {
  readonly problems: readonly EnvoyConfigProblem[];

  constructor(
    problems: readonly [EnvoyConfigProblem, ...EnvoyConfigProblem[]],
    options?: { cause?: unknown },
  ) {
    super(problems.map(describe).join('\n'), options);
    this.name = 'EnvoyConfigError';
    this.problems = problems;
  }
}
