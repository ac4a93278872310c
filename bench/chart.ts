/**
 * bench/latency-vs-load.svg: p50 and p99 latency (log scale) against offered load, one colour per gRPC
 * scenario (solid p50, dashed p99), from the open-loop points of a run. Plain SVG, no dependency.
 */
import type { Results } from './result-types.js';

const WIDTH = 960;
const HEIGHT = 560;
const M = { left: 78, right: 270, top: 56, bottom: 66 };
const PLOT_W = WIDTH - M.left - M.right;
const PLOT_H = HEIGHT - M.top - M.bottom;

const COLOURS: Record<string, string> = {
  transport: '#6b6b6b',
  redis: '#d62728',
  memory: '#1f77b4',
  rlf: '#2ca02c',
  batch: '#9467bd',
};

const LABELS: Record<string, string> = {
  transport: 'no-op gRPC server (ceiling)',
  redis: 'quotad, Redis store',
  memory: 'quotad, memory store',
  rlf: 'rate-limiter-flexible',
  batch: 'quotad batched',
};

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

/** 1, 2 or 5 times a power of ten, about `count` steps over [0, max]. */
function niceStep(max: number, count: number): number {
  const raw = max / count;
  const power = 10 ** Math.floor(Math.log10(raw));
  for (const m of [1, 2, 5, 10]) if (m * power >= raw) return m * power;
  return 10 * power;
}

function formatMs(ms: number): string {
  if (ms >= 1) return `${ms}`;
  return `${Number(ms.toPrecision(1))}`;
}

function formatCount(n: number): string {
  return n >= 1000 ? `${n / 1000}k` : `${n}`;
}

export function renderChart(results: Results): string {
  const series = results.grpc.filter((s) => s.open.length > 0);
  const points = series.flatMap((s) => s.open);
  const parts: string[] = [];
  parts.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${HEIGHT}" viewBox="0 0 ${WIDTH} ${HEIGHT}" font-family="Helvetica, Arial, sans-serif" font-size="12">`,
    `<rect width="${WIDTH}" height="${HEIGHT}" fill="white"/>`,
    `<text x="${M.left}" y="24" font-size="16" font-weight="bold">Latency against offered load (open loop, from each operation's intended send time)</text>`,
    `<text x="${M.left}" y="42" fill="#444">One operation = CheckQuota + its RecordUsage; ${esc(String(results.machine.cpu))}; ${esc(results.startedAt.slice(0, 10))}, commit ${esc(String(results.machine.commit))}</text>`,
  );
  if (points.length === 0) {
    parts.push(`<text x="${M.left}" y="${M.top + 40}">No open-loop points in this run.</text></svg>`);
    return `${parts.join('\n')}\n`;
  }
  const maxX = Math.max(...points.map((p) => p.offeredPerSecond ?? 0)) * 1.05;
  const latencies = points.flatMap((p) => [p.p50Ms, p.p99Ms]).filter((v) => v > 0 && Number.isFinite(v));
  const lo = Math.floor(Math.log10(Math.min(...latencies, 5)));
  const hi = Math.ceil(Math.log10(Math.max(...latencies, 5) * 1.01));
  const x = (v: number) => M.left + (v / maxX) * PLOT_W;
  const y = (ms: number) => M.top + PLOT_H - ((Math.log10(Math.max(ms, 10 ** lo)) - lo) / (hi - lo)) * PLOT_H;

  // grid and axes
  parts.push(`<g stroke="#e4e4e4" stroke-width="1">`);
  for (let e = lo; e < hi; e++) {
    for (const m of [2, 3, 5, 7])
      parts.push(
        `<line x1="${M.left}" x2="${M.left + PLOT_W}" y1="${y(m * 10 ** e).toFixed(1)}" y2="${y(m * 10 ** e).toFixed(1)}" stroke="#f1f1f1"/>`,
      );
  }
  for (let e = lo; e <= hi; e++)
    parts.push(
      `<line x1="${M.left}" x2="${M.left + PLOT_W}" y1="${y(10 ** e).toFixed(1)}" y2="${y(10 ** e).toFixed(1)}"/>`,
    );
  const step = niceStep(maxX, 8);
  for (let v = 0; v <= maxX; v += step)
    parts.push(
      `<line x1="${x(v).toFixed(1)}" x2="${x(v).toFixed(1)}" y1="${M.top}" y2="${M.top + PLOT_H}"/>`,
    );
  parts.push(`</g>`);
  parts.push(
    `<rect x="${M.left}" y="${M.top}" width="${PLOT_W}" height="${PLOT_H}" fill="none" stroke="#333"/>`,
  );
  for (let e = lo; e <= hi; e++) {
    parts.push(
      `<text x="${M.left - 8}" y="${(y(10 ** e) + 4).toFixed(1)}" text-anchor="end">${formatMs(10 ** e)}</text>`,
    );
    if (e < hi)
      for (const m of [2, 5])
        parts.push(
          `<text x="${M.left - 8}" y="${(y(m * 10 ** e) + 4).toFixed(1)}" text-anchor="end" fill="#888" font-size="10">${formatMs(m * 10 ** e)}</text>`,
        );
  }
  for (let v = 0; v <= maxX; v += step)
    parts.push(
      `<text x="${x(v).toFixed(1)}" y="${M.top + PLOT_H + 18}" text-anchor="middle">${formatCount(v)}</text>`,
    );
  parts.push(
    `<text x="${M.left + PLOT_W / 2}" y="${HEIGHT - 18}" text-anchor="middle" font-size="13">offered load (operations per second)</text>`,
    `<text transform="translate(22 ${M.top + PLOT_H / 2}) rotate(-90)" text-anchor="middle" font-size="13">latency (ms, log scale)</text>`,
  );
  // the p99 target
  if (5 > 10 ** lo && 5 < 10 ** hi) {
    parts.push(
      `<line x1="${M.left}" x2="${M.left + PLOT_W}" y1="${y(5).toFixed(1)}" y2="${y(5).toFixed(1)}" stroke="#e08000" stroke-width="1.2" stroke-dasharray="2 3"/>`,
      `<text x="${M.left + PLOT_W - 4}" y="${(y(5) - 5).toFixed(1)}" text-anchor="end" fill="#e08000" font-size="11">target: p99 ≤ 5 ms at 50 % load</text>`,
    );
  }
  // series
  for (const s of series) {
    const colour = COLOURS[s.id] ?? '#000';
    const sorted = [...s.open].sort((a, b) => (a.offeredPerSecond ?? 0) - (b.offeredPerSecond ?? 0));
    for (const [key, dash] of [
      ['p50Ms', ''],
      ['p99Ms', ' stroke-dasharray="7 4"'],
    ] as const) {
      const path = sorted
        .map(
          (p, i) => `${i === 0 ? 'M' : 'L'}${x(p.offeredPerSecond ?? 0).toFixed(1)},${y(p[key]).toFixed(1)}`,
        )
        .join(' ');
      parts.push(`<path d="${path}" fill="none" stroke="${colour}" stroke-width="2"${dash}/>`);
      for (const p of sorted) {
        const cx = x(p.offeredPerSecond ?? 0).toFixed(1);
        const cy = y(p[key]).toFixed(1);
        parts.push(
          key === 'p50Ms'
            ? `<circle cx="${cx}" cy="${cy}" r="3.5" fill="${colour}"/>`
            : `<rect x="${(Number(cx) - 3.5).toFixed(1)}" y="${(Number(cy) - 3.5).toFixed(1)}" width="7" height="7" fill="white" stroke="${colour}" stroke-width="1.5"/>`,
        );
      }
    }
    // mark the 50 % point
    const half = sorted.find((p) => p.fraction === 0.5);
    if (half)
      parts.push(
        `<circle cx="${x(half.offeredPerSecond ?? 0).toFixed(1)}" cy="${y(half.p50Ms).toFixed(1)}" r="7" fill="none" stroke="${colour}" stroke-width="1"/>`,
      );
  }
  // legend
  const lx = M.left + PLOT_W + 18;
  let ly = M.top + 8;
  parts.push(`<text x="${lx}" y="${ly}" font-weight="bold">Scenario</text>`);
  ly += 20;
  for (const s of series) {
    const colour = COLOURS[s.id] ?? '#000';
    const max = Math.round(s.closed?.operationsPerSecond ?? 0).toLocaleString('en-US');
    parts.push(
      `<line x1="${lx}" x2="${lx + 26}" y1="${ly - 4}" y2="${ly - 4}" stroke="${colour}" stroke-width="3"/>`,
      `<text x="${lx + 34}" y="${ly}">${esc(LABELS[s.id] ?? s.title)}</text>`,
      `<text x="${lx + 34}" y="${ly + 14}" fill="#666" font-size="11">max ${max} ops/s (64 in flight)</text>`,
    );
    ly += 36;
  }
  ly += 6;
  parts.push(
    `<line x1="${lx}" x2="${lx + 26}" y1="${ly - 4}" y2="${ly - 4}" stroke="#333" stroke-width="2"/><circle cx="${lx + 13}" cy="${ly - 4}" r="3.5" fill="#333"/>`,
    `<text x="${lx + 34}" y="${ly}">p50</text>`,
  );
  ly += 20;
  parts.push(
    `<line x1="${lx}" x2="${lx + 26}" y1="${ly - 4}" y2="${ly - 4}" stroke="#333" stroke-width="2" stroke-dasharray="7 4"/><rect x="${lx + 9.5}" y="${ly - 7.5}" width="7" height="7" fill="white" stroke="#333" stroke-width="1.5"/>`,
    `<text x="${lx + 34}" y="${ly}">p99</text>`,
  );
  ly += 20;
  parts.push(
    `<circle cx="${lx + 13}" cy="${ly - 4}" r="7" fill="none" stroke="#333"/>`,
    `<text x="${lx + 34}" y="${ly}">50 % of max (headline)</text>`,
  );
  ly += 26;
  const note = [
    `Points at ${results.settings.fractions} of each`,
    `scenario's own closed-loop max;`,
    `${results.settings.seconds} s measured per point.`,
    `Load generator, server and Redis`,
    `share ${results.machine.nproc} vCPUs.`,
  ];
  for (const line of note) {
    parts.push(`<text x="${lx}" y="${ly}" fill="#666" font-size="11">${esc(line)}</text>`);
    ly += 14;
  }
  parts.push('</svg>');
  return `${parts.join('\n')}\n`;
}
