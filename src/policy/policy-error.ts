/** One thing wrong with a policy file, located as precisely as the file allows. */
export interface PolicyProblem {
  /** The file as the operator named it, e.g. `config/policy.yaml`. */
  source: string;
  /** 1-based; undefined when the problem is not at a place in the text (the file cannot be read). */
  line: number | undefined;
  column: number | undefined;
  /** Dotted path of the offending key, e.g. `tiers.free.limits[1].window`; empty for the whole file. */
  path: string;
  reason: string;
}

function describe(problem: PolicyProblem): string {
  const at =
    problem.line === undefined ? problem.source : `${problem.source}:${problem.line}:${problem.column}`;
  return problem.path === '' ? `${at} ${problem.reason}` : `${at} ${problem.path}: ${problem.reason}`;
}

/** A policy file that cannot be used; the message lists every problem found, one a line. */
export class PolicyError extends Error {
  readonly problems: readonly PolicyProblem[];

  constructor(problems: readonly [PolicyProblem, ...PolicyProblem[]], options?: { cause?: unknown }) {
    super(problems.map(describe).join('\n'), options);
    this.name = 'PolicyError';
    this.problems = problems;
  }
}
