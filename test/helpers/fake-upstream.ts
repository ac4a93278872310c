import {
  startDemoUpstream,
  type DemoUpstream,
  type StreamedSoFar,
  type UpstreamCall,
  type UpstreamScript,
  type UpstreamUsage,
} from '../../src/demo/upstream.js';

/** A client that left before its response completed, and what it had been sent by then. */
export interface ClientGone {
  call: UpstreamCall;
  streamed: StreamedSoFar;
}

/** Every usage object the upstream sent, summed; `calls` counts the objects. */
export interface ReportedUsage extends UpstreamUsage {
  calls: number;
}

/**
 * An OpenAI-compatible upstream for tests: the demo upstream on a free port, with scripted failures,
 * stalls and latency, and a record of the calls it took and the usage it reported.
 */
export class FakeUpstream {
  /** Every accepted call, in arrival order. */
  readonly calls: UpstreamCall[] = [];
  private readonly scripts: UpstreamScript[] = [];
  private latencyMs = 0;
  private held: Promise<void> | undefined;
  private readonly usageByCall = new Map<string, UpstreamUsage>();
  private readonly unclaimedGone: ClientGone[] = [];
  private readonly goneWaiters: ((event: ClientGone) => void)[] = [];
  private readonly callWaiters: (() => void)[] = [];
  private server: DemoUpstream | undefined;

  private constructor() {}

  static async start(options: { apiKey?: string } = {}): Promise<FakeUpstream> {
    const fake = new FakeUpstream();
    fake.server = await startDemoUpstream({
      apiKey: options.apiKey,
      script: () =>
        fake.scripts.shift() ??
        (fake.held ? { kind: 'hold', until: fake.held } : undefined) ??
        (fake.latencyMs > 0 ? { kind: 'latency', ms: fake.latencyMs } : undefined),
      observer: {
        onCall: (call) => {
          fake.calls.push(call);
          for (const wake of fake.callWaiters.splice(0)) wake();
        },
        onUsage: (call, usage) => fake.usageByCall.set(call.id, usage),
        onClientGone: (call, streamed) => fake.clientGone({ call, streamed }),
      },
    });
    return fake;
  }

  /** The base URL for an OpenAI client, ending in `/v1`. */
  get url(): string {
    return this.started().url;
  }

  close(): Promise<void> {
    return this.started().close();
  }

  /** The next `count` calls fail with `status` and an OpenAI-shaped error body. */
  failNext(
    status: number,
    count = 1,
    body: { message?: string; type?: string; code?: string | null } = {},
  ): void {
    for (let i = 0; i < count; i += 1) this.scripts.push({ kind: 'error', status, ...body });
  }

  /** The next call streams its role chunk and `afterChunks` content chunks, then goes silent. */
  stallNext(afterChunks: number): void {
    this.scripts.push({ kind: 'stall', afterChunks });
  }

  /**
   * The next call streams its role chunk and `afterChunks` content chunks, then waits until the returned
   * function is called, and streams the rest.
   */
  pauseNext(afterChunks: number): () => void {
    let resume = () => {};
    const until = new Promise<void>((resolve) => (resume = resolve));
    this.scripts.push({ kind: 'pause', afterChunks, until });
    return resume;
  }

  /** Resolves on the next call the upstream accepts. */
  nextCall(): Promise<void> {
    return new Promise((resolve) => this.callWaiters.push(resolve));
  }

  /** The next call streams its role chunk and `afterChunks` content chunks, then drops the connection. */
  cutNext(afterChunks: number): void {
    this.scripts.push({ kind: 'cut', afterChunks });
  }

  /** Holds every later call without a queued script until the returned function is called. */
  hold(): () => void {
    let release = () => {};
    this.held = new Promise<void>((resolve) => (release = resolve));
    return () => {
      this.held = undefined;
      release();
    };
  }

  /** Every later call without a queued script is answered after `ms` milliseconds; 0 turns it off. */
  setLatency(ms: number): void {
    this.latencyMs = ms;
  }

  /** The sum of every usage object sent to clients so far. */
  reported(): ReportedUsage {
    const total: ReportedUsage = { prompt_tokens: 0, completion_tokens: 0, total_tokens: 0, calls: 0 };
    for (const usage of this.usageByCall.values()) {
      total.prompt_tokens += usage.prompt_tokens;
      total.completion_tokens += usage.completion_tokens;
      total.total_tokens += usage.total_tokens;
      total.calls += 1;
    }
    return total;
  }

  /** The usage object sent for one call, if one was. */
  reportedFor(callId: string): UpstreamUsage | undefined {
    return this.usageByCall.get(callId);
  }

  /** Resolves on the next client that leaves early, or at once with one that already left unclaimed. */
  waitForClientGone(): Promise<ClientGone> {
    const already = this.unclaimedGone.shift();
    if (already) return Promise.resolve(already);
    return new Promise((resolve) => this.goneWaiters.push(resolve));
  }

  private clientGone(event: ClientGone): void {
    const waiter = this.goneWaiters.shift();
    if (waiter) waiter(event);
    else this.unclaimedGone.push(event);
  }

  private started(): DemoUpstream {
    if (!this.server) throw new Error('FakeUpstream is not started: use FakeUpstream.start()');
    return this.server;
  }
}
