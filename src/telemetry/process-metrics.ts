import { collectDefaultMetrics, type Registry } from 'prom-client';

/**
 * prom-client's default gauges that end in `_total`, which Prometheus reserves for counters (`promtool
 * check metrics` flags each). Each is the sum over `type` of the gauge of the same name without `_total`,
 * which stays: `sum(nodejs_active_handles)` gives what they gave.
 */
const MISNAMED_DEFAULTS = [
  'nodejs_active_handles_total',
  'nodejs_active_requests_total',
  'nodejs_active_resources_total',
] as const;

/** Node.js and process metrics (CPU, memory, event loop lag, GC, handles) on `registry`, promtool-clean. */
export function collectProcessMetrics(registry: Registry): void {
  collectDefaultMetrics({ register: registry });
  for (const name of MISNAMED_DEFAULTS) registry.removeSingleMetric(name);
}
