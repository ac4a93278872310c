import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { pathToFileURL } from 'node:url';
import { parse } from 'yaml';
import { AuthorityProcess, REPO_ROOT } from '../../harness/authority-process.js';
import { labelNamesOf, parseExposition, seriesExists, type Exposition } from '../helpers/exposition.js';
import { FakeUpstream } from '../helpers/fake-upstream.js';
import { eventually } from '../../harness/eventually.js';
import { GatewayProcess, postChat } from '../../harness/gateway-process.js';
import { adminClient, quotaClient, type AdminClient, type QuotaClient } from '../../harness/grpc-clients.js';
import { PrometheusServer } from '../helpers/prometheus-server.js';
import { analysePromql } from '../helpers/promql.js';
import { TestRedisServer } from '../../harness/redis-server.js';
import { descriptor, rlsClient } from '../../harness/rls-client.js';

const RULES_FILE = 'deploy/prometheus/rules.yaml';
const RULES_TEST_FILE = 'deploy/prometheus/rules.test.yaml';
const DASHBOARD_FILE = 'deploy/grafana/quotad.json';
const RUNBOOK_FILE = 'docs/runbook.md';
const RENDER_SCRIPT = 'scripts/render-monitoring.mjs';
const RUNBOOK_URL = 'https://github.com/quotad/quotad/blob/main/docs/runbook.md';
/** The `job` names a ServiceMonitor gives the targets: the Services' names. */
const AUTHORITY_JOB = 'quotad-authority';
const GATEWAY_JOB = 'quotad-gateway';
/** Labels the scrape adds rather than the process: Prometheus (job, instance), the ServiceMonitor (namespace). */
const TARGET_LABELS = new Set(['job', 'instance', 'namespace']);
/** Label names that would mint a series per key, user, org or request. */
const PER_CALLER_LABELS = [
  'key',
  'key_id',
  'api_key',
  'user',
  'user_id',
  'subject',
  'principal',
  'org',
  'org_id',
  'tenant',
  'request_id',
];

interface Rule {
  record?: string;
  alert?: string;
  expr: string;
  for?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}

interface RuleFile {
  groups: { name: string; rules: Rule[] }[];
}

interface RuleTests {
  tests: { name: string; alert_rule_test?: { alertname: string; exp_alerts: unknown[] }[] }[];
}

interface DashboardTarget {
  datasource?: { uid?: string };
  expr: string;
}

interface DashboardPanel {
  type: string;
  title: string;
  datasource?: { type?: string; uid?: string };
  targets?: DashboardTarget[];
}

interface Dashboard {
  uid: string;
  schemaVersion: number;
  panels: DashboardPanel[];
  templating: { list: { name: string; type: string; query: unknown; datasource?: { uid?: string } }[] };
}

const read = (path: string): Promise<string> => readFile(join(REPO_ROOT, path), 'utf8');

async function ruleFile(): Promise<RuleFile> {
  return parse(await read(RULES_FILE)) as RuleFile;
}

const allRules = (file: RuleFile): Rule[] => file.groups.flatMap((group) => group.rules);
const alerts = (file: RuleFile): Rule[] => allRules(file).filter((rule) => rule.alert !== undefined);

/** How a command ended: its exit code and everything it wrote, stdout then stderr. */
async function run(
  command: string,
  args: string[],
  input?: string,
): Promise<{ code: number; output: string }> {
  const child = spawn(command, args, { cwd: REPO_ROOT, stdio: ['pipe', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  child.stdin.end(input ?? '');
  const code = await new Promise<number>((resolve, reject) => {
    child.once('error', (error) =>
      reject(new Error(`${command} did not start (is it installed? make tools): ${error.message}`)),
    );
    child.once('close', (exitCode) => resolve(exitCode ?? -1));
  });
  return { code, output: stdout + stderr };
}

/** GitHub's anchor for a Markdown heading: lower case, punctuation dropped, spaces to hyphens. */
function githubAnchor(heading: string): string {
  return heading
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{N}\s_-]/gu, '')
    .replace(/\s/g, '-');
}

/** The anchors of every heading of a Markdown file, code blocks left out. */
function anchorsOf(markdown: string): Set<string> {
  const anchors = new Set<string>();
  let fenced = false;
  for (const line of markdown.split('\n')) {
    if (/^\s*```/.test(line)) fenced = !fenced;
    const heading = fenced ? null : /^#{1,6}\s+(.+)$/.exec(line);
    if (heading) anchors.add(githubAnchor(heading[1]!));
  }
  return anchors;
}

/** The dashboard's queries with Grafana's variables put as Prometheus would see them. */
function grafanaToPromql(expr: string): string {
  return expr.replace(/\$__\w+/g, '5m').replace(/\$\{?\w+\}?/g, '.*');
}

/** Every PromQL query of the dashboard: panel targets and `label_values(...)` variables, each named. */
function dashboardQueries(dashboard: Dashboard): { where: string; expr: string; label?: string }[] {
  const queries: { where: string; expr: string; label?: string }[] = [];
  for (const panel of dashboard.panels) {
    for (const target of panel.targets ?? []) {
      queries.push({ where: `panel '${panel.title}'`, expr: grafanaToPromql(target.expr) });
    }
  }
  for (const variable of dashboard.templating.list) {
    if (variable.type !== 'query') continue;
    const query = String(variable.query);
    const labelValues = /^label_values\((.*),\s*([a-zA-Z_][a-zA-Z0-9_]*)\)$/.exec(query);
    assert.ok(labelValues, `variable ${variable.name}: expected label_values(<selector>, <label>)`);
    queries.push({
      where: `variable '${variable.name}'`,
      expr: grafanaToPromql(labelValues[1]!),
      label: labelValues[2]!,
    });
  }
  return queries;
}

/** The labels each recording rule's series carry: what its aggregations keep (`le` is consumed by quantiles). */
function recordingRuleLabels(file: RuleFile): Map<string, Set<string>> {
  const labels = new Map<string, Set<string>>();
  for (const rule of allRules(file)) {
    if (rule.record === undefined) continue;
    const kept = new Set(analysePromql(rule.expr).groupings.flatMap((grouping) => grouping.labels));
    kept.delete('le');
    labels.set(rule.record, kept);
  }
  return labels;
}

/**
 * What is wrong with one expression against the live expositions: series that are not exposed, labels
 * matched or grouped by that the series do not carry. Empty when it is sound.
 */
function problemsOf(
  where: string,
  expr: string,
  live: Exposition[],
  recorded: Map<string, Set<string>>,
  extraLabels: string[] = [],
): string[] {
  const problems: string[] = [];
  const labelsOf = (metric: string): Set<string> | undefined => {
    if (metric === 'up') return new Set(TARGET_LABELS);
    const recordedLabels = recorded.get(metric);
    if (recordedLabels) return new Set([...recordedLabels, ...TARGET_LABELS]);
    const exposition = live.find((e) => seriesExists(e, metric));
    if (!exposition) return undefined;
    return new Set([...labelNamesOf(exposition, metric), ...TARGET_LABELS]);
  };
  const { selectors, groupings } = analysePromql(expr);
  if (selectors.length === 0) problems.push(`${where}: selects no series in ${expr}`);
  for (const { metric, labels } of selectors) {
    const known = labelsOf(metric);
    if (!known) {
      problems.push(`${where}: ${metric} is not exposed by the authority or the gateway`);
      continue;
    }
    for (const label of [...labels, ...extraLabels]) {
      if (!known.has(label)) problems.push(`${where}: ${metric} has no label ${label}`);
    }
  }
  for (const { labels, metrics } of groupings) {
    for (const metric of metrics) {
      const known = labelsOf(metric);
      for (const label of labels) {
        if (known && !known.has(label))
          problems.push(`${where}: groups ${metric} by ${label}, which it lacks`);
      }
    }
  }
  return problems;
}

describe('the monitoring files', () => {
  test('promtool check rules accepts rules.yaml', async () => {
    const { code, output } = await run('promtool', ['check', 'rules', RULES_FILE]);
    assert.equal(code, 0, output);
  });

  test("promtool test rules passes rules.test.yaml's cases", async () => {
    const { code, output } = await run('promtool', ['test', 'rules', RULES_TEST_FILE]);
    assert.equal(code, 0, output);
  });

  test('rules.test.yaml shows every alert both firing and silent', async () => {
    const cases = (parse(await read(RULES_TEST_FILE)) as RuleTests).tests.flatMap(
      (group) => group.alert_rule_test ?? [],
    );
    for (const { alert } of alerts(await ruleFile())) {
      const mine = cases.filter((c) => c.alertname === alert);
      assert.ok(
        mine.some((c) => c.exp_alerts.length > 0),
        `${alert}: no case where it fires`,
      );
      assert.ok(
        mine.some((c) => c.exp_alerts.length === 0),
        `${alert}: no case where it stays silent`,
      );
    }
  });

  test('every alert has a severity, a summary, a description and a runbook link to a heading of docs/runbook.md', async () => {
    const anchors = anchorsOf(await read(RUNBOOK_FILE));
    for (const rule of alerts(await ruleFile())) {
      assert.ok(['critical', 'warning'].includes(rule.labels?.severity ?? ''), `${rule.alert}: severity`);
      assert.ok(rule.annotations?.summary, `${rule.alert}: summary`);
      assert.ok(rule.annotations?.description, `${rule.alert}: description`);
      const url = rule.annotations?.runbook_url ?? '';
      assert.ok(
        url.startsWith(`${RUNBOOK_URL}#`),
        `${rule.alert}: runbook_url ${url} is not under ${RUNBOOK_URL}`,
      );
      const anchor = url.slice(RUNBOOK_URL.length + 1);
      assert.ok(
        anchors.has(anchor),
        `${rule.alert}: docs/runbook.md has no heading with the anchor #${anchor}`,
      );
    }
  });

  test('docs/runbook.md has no alert section for an alert that rules.yaml lacks', async () => {
    const names = new Set(alerts(await ruleFile()).map((rule) => rule.alert));
    const sections = [...(await read(RUNBOOK_FILE)).matchAll(/^## (Quotad\w+)$/gm)].map((m) => m[1]);
    assert.deepEqual(
      sections.filter((section) => !names.has(section)),
      [],
    );
  });

  test("the README's alert table lists every alert of rules.yaml, linked to its runbook section", async () => {
    const rows = [
      ...(await read('README.md')).matchAll(/^\| \[`(Quotad\w+)`\]\(docs\/runbook\.md(#\w+)\)/gm),
    ];
    assert.deepEqual(
      rows.map(([, alert, anchor]) => `${alert}${anchor}`).sort(),
      alerts(await ruleFile())
        .map((rule) => `${rule.alert}${(rule.annotations?.runbook_url ?? '').slice(RUNBOOK_URL.length)}`)
        .sort(),
    );
  });

  test('the checked-in dashboard and Kubernetes wrappers are what scripts/render-monitoring.mjs renders', async () => {
    const module: unknown = await import(pathToFileURL(join(REPO_ROOT, RENDER_SCRIPT)).href);
    assert.ok(
      typeof module === 'object' &&
        module !== null &&
        'renderMonitoring' in module &&
        typeof module.renderMonitoring === 'function',
      `${RENDER_SCRIPT} exports renderMonitoring()`,
    );
    const files = (await (module.renderMonitoring as () => Promise<unknown>)()) as {
      path: string;
      content: string;
    }[];
    assert.ok(files.length > 0);
    for (const { path, content } of files) {
      const checkedIn = await read(path).catch(() => '(missing)');
      assert.ok(
        checkedIn === content,
        `${path} differs from what ${RENDER_SCRIPT} renders from its sources: run npm run render-monitoring and commit the result`,
      );
    }
  });

  test('the PrometheusRule holds exactly the groups of rules.yaml, and the ConfigMap the dashboard', async () => {
    const rule = parse(await read('deploy/kubernetes/base/monitoring/prometheus-rule.yaml')) as {
      kind: string;
      spec: unknown;
    };
    assert.equal(rule.kind, 'PrometheusRule');
    assert.deepEqual(rule.spec, await ruleFile());
    const configMap = parse(await read('deploy/kubernetes/base/monitoring/grafana-dashboard.yaml')) as {
      metadata: { labels: Record<string, string> };
      data: Record<string, string>;
    };
    assert.equal(configMap.metadata.labels.grafana_dashboard, '1');
    assert.equal(configMap.data['quotad.json'], await read(DASHBOARD_FILE));
  });

  test('the dashboard has uid quotad, a Prometheus datasource variable, and every panel and query on it', async () => {
    const dashboard = JSON.parse(await read(DASHBOARD_FILE)) as Dashboard;
    assert.equal(dashboard.uid, 'quotad');
    assert.ok(dashboard.schemaVersion >= 39);
    const datasource = dashboard.templating.list.find((variable) => variable.name === 'datasource');
    assert.deepEqual(
      { type: datasource?.type, query: datasource?.query },
      { type: 'datasource', query: 'prometheus' },
    );
    for (const panel of dashboard.panels.filter((p) => p.type !== 'row')) {
      assert.equal(panel.datasource?.uid, '${datasource}', `panel '${panel.title}'`);
      assert.ok((panel.targets ?? []).length > 0, `panel '${panel.title}' has no query`);
      for (const target of panel.targets ?? []) {
        assert.equal(target.datasource?.uid, '${datasource}', `a query of panel '${panel.title}'`);
      }
    }
    for (const variable of dashboard.templating.list.filter((v) => v.type === 'query')) {
      assert.equal(variable.datasource?.uid, '${datasource}', `variable ${variable.name}`);
    }
  });
});

describe('quotad processes, their /metrics and a real Prometheus', { timeout: 30_000 }, () => {
  const token = randomBytes(16).toString('hex');
  const tag = randomBytes(4).toString('hex');
  /** Everything that names a caller or a request, which no label may carry. */
  const identifiers: string[] = [];
  let redis: TestRedisServer;
  let upstream: FakeUpstream;
  let authority: AuthorityProcess;
  let gateway: GatewayProcess;
  let prometheus: PrometheusServer;
  let admin: AdminClient;
  let quota: QuotaClient;
  let authorityMetrics: string;
  let gatewayMetrics: string;
  const statuses: number[] = [];

  async function chat(secret: string): Promise<number> {
    const requestId = `monitor-request-${randomUUID()}`;
    identifiers.push(requestId);
    const response = await postChat(gateway.url, secret, requestId);
    await response.arrayBuffer();
    return response.status;
  }

  /** Three keys in orgs of their own, two principals asking the authority directly, a 429 and a 502. */
  async function driveTraffic(): Promise<void> {
    const secrets: string[] = [];
    for (let n = 0; n < 3; n += 1) {
      const request = {
        name: `monitor-name-${tag}-${n}`,
        owner: `monitor-owner-${tag}-${n}`,
        org: `monitor-org-${tag}-${n}`,
        tier: 'free',
        expiresInMs: 0,
      };
      const created = await admin.createKey(request);
      const id = created.key?.id ?? '';
      secrets.push(created.secret);
      const hash = createHash('sha256').update(created.secret).digest();
      identifiers.push(request.name, request.owner, request.org, id, created.secret);
      identifiers.push(hash.toString('hex'), hash.toString('base64'));
    }
    for (const secret of secrets) statuses.push(await chat(secret), await chat(secret));
    // The free tier admits 10 requests a minute: the first key's 11th is refused.
    for (let n = 0; n < 9; n += 1) statuses.push(await chat(secrets[0]!));
    upstream.failNext(500);
    statuses.push(await chat(secrets[1]!));

    for (let n = 0; n < 2; n += 1) {
      const principal = {
        subject: `monitor-subject-${tag}-${n}`,
        org: `monitor-porg-${tag}-${n}`,
        tier: 'free',
      };
      const requestId = `monitor-check-${randomUUID()}`;
      identifiers.push(principal.subject, principal.org, requestId);
      const check = { requestId, principal, model: 'gpt-4o-mini', inputTokens: 10, maxOutputTokens: 10 };
      await quota.checkQuota(check);
      await quota.recordUsage({
        requestId,
        principal,
        model: 'gpt-4o-mini',
        inputTokens: 10,
        outputTokens: 5,
        outcome: 'COMPLETED',
      });
    }

    // Envoy's RateLimitService: within and over a limit, a shadow rule over, a reservation settled, an
    // unknown domain. The values are per-user, so no label may carry them.
    const rls = rlsClient(authority.grpcAddress);
    const user = `monitor-envoy-user-${tag}`;
    const requestId = `monitor-envoy-request-${randomUUID()}`;
    identifiers.push(user, requestId);
    const ask = (domain: string, entries: [string, string][], hits?: number) =>
      rls.shouldRateLimit({ domain, descriptors: [descriptor(entries, hits)] });
    for (let n = 0; n < 4; n += 1) await ask('rls-test', [['user', user]]);
    for (let n = 0; n < 3; n += 1) await ask('rls-test', [['shadow', user]]);
    await ask(
      'rls-test',
      [
        ['tokens', user],
        ['quotad.reserve', requestId],
      ],
      300,
    );
    await ask(
      'rls-test',
      [
        ['tokens', user],
        ['quotad.settle', requestId],
      ],
      120,
    );
    await ask(`monitor-unknown-${tag}`, [['user', user]]);
    rls.close();
  }

  before(async () => {
    [redis, upstream] = await Promise.all([TestRedisServer.start(), FakeUpstream.start()]);
    authority = await AuthorityProcess.spawn({
      REDIS_URL: redis.url,
      QUOTAD_ADMIN_TOKEN: token,
      QUOTAD_ENVOY_CONFIG: join(REPO_ROOT, 'test/fixtures/envoy/quotad'),
      LOG_LEVEL: 'info',
    });
    gateway = await GatewayProcess.spawn({
      QUOTAD_AUTHORITY: authority.grpcAddress,
      OPENAI_BASE_URL: upstream.url,
      // The first check also connects; a loaded test machine must not turn that into a 503.
      QUOTAD_AUTHORITY_TIMEOUT: '2s',
      LOG_LEVEL: 'info',
    });
    [prometheus] = await Promise.all([
      PrometheusServer.start({
        jobs: [
          { job: AUTHORITY_JOB, target: `127.0.0.1:${authority.metricsPort}` },
          { job: GATEWAY_JOB, target: `127.0.0.1:${gateway.port}` },
        ],
        ruleFiles: [join(REPO_ROOT, RULES_FILE)],
      }),
      authority.ready(),
      gateway.ready(),
    ]);
    admin = adminClient(authority.grpcAddress, token);
    quota = quotaClient(authority.grpcAddress);

    // Traffic only once both targets were scraped, so Prometheus sees the counters rise.
    await prometheus.waitFor('both targets up', async () => {
      const targets = await prometheus.targets();
      return targets.length === 2 && targets.every((target) => target.health === 'up') ? true : undefined;
    });
    await driveTraffic();
    // Settlements land off the response path; wait for every one before reading the gateway's metrics.
    const admitted = statuses.filter((status) => status === 200).length;
    gatewayMetrics = await eventually(
      async () => {
        const text = await (await fetch(`${gateway.url}/metrics`)).text();
        const settled = /^quotad_gateway_settlements_total\{result="settled"\} (\d+)$/m.exec(text);
        const pending = /^quotad_gateway_settlements_pending (\d+)$/m.exec(text);
        return Number(settled?.[1]) >= admitted && pending?.[1] === '0' ? text : undefined;
      },
      () => 'timed out waiting for every settlement',
    );
    authorityMetrics = await authority.metrics();
  });

  after(async () => {
    admin?.close();
    quota?.close();
    await prometheus?.stop();
    await gateway?.stop();
    await authority?.stop();
    await upstream?.close();
    await redis?.stop();
  });

  test('the traffic held answers 200, a 429 and a 502', () => {
    assert.deepEqual([...new Set(statuses)].sort(), [200, 429, 502]);
  });

  for (const target of ['authority', 'gateway'] as const) {
    test(`promtool check metrics finds nothing in the ${target}'s live /metrics`, async () => {
      const exposition = target === 'authority' ? authorityMetrics : gatewayMetrics;
      const { code, output } = await run('promtool', ['check', 'metrics'], exposition);
      assert.deepEqual(
        { code, findings: output.split('\n').filter((line) => line.trim()) },
        { code: 0, findings: [] },
      );
    });
  }

  test('every series the rules use is exposed, with every label they match or group by', async () => {
    const file = await ruleFile();
    const live = [parseExposition(authorityMetrics), parseExposition(gatewayMetrics)];
    const recorded = recordingRuleLabels(file);
    const problems = allRules(file).flatMap((rule) =>
      problemsOf(rule.alert ?? rule.record ?? '?', rule.expr, live, recorded),
    );
    assert.deepEqual(problems, []);
  });

  test('every series the dashboard queries is exposed, with every label it matches or groups by', async () => {
    const dashboard = JSON.parse(await read(DASHBOARD_FILE)) as Dashboard;
    const live = [parseExposition(authorityMetrics), parseExposition(gatewayMetrics)];
    const recorded = recordingRuleLabels(await ruleFile());
    const problems = dashboardQueries(dashboard).flatMap(({ where, expr, label }) =>
      problemsOf(where, expr, live, recorded, label ? [label] : []),
    );
    assert.deepEqual(problems, []);
  });

  test("the README's metric tables list exactly the quotad metrics the two processes expose", async () => {
    const documented = [...(await read('README.md')).matchAll(/^\| `(quotad_\w+)`/gm)].map((m) => m[1]);
    const exposed = [authorityMetrics, gatewayMetrics].flatMap((text) =>
      [...parseExposition(text).types.keys()].filter((name) => name.startsWith('quotad_')),
    );
    assert.deepEqual(documented.sort(), exposed.sort());
  });

  test('no label names a key, user, org or request', () => {
    const names = new Set(
      [authorityMetrics, gatewayMetrics].flatMap((text) =>
        parseExposition(text).samples.flatMap((sample) => [...sample.labels.keys()]),
      ),
    );
    assert.deepEqual(
      PER_CALLER_LABELS.filter((name) => names.has(name)),
      [],
    );
  });

  test('no label value holds a key, its hash, a key id, a name, an owner, a subject, an org or a request id', () => {
    assert.ok(identifiers.length >= 30);
    const values = [authorityMetrics, gatewayMetrics].flatMap((text) =>
      parseExposition(text).samples.flatMap((sample) => [...sample.labels.values()]),
    );
    const leaks = values.filter((value) => identifiers.some((identifier) => value.includes(identifier)));
    assert.deepEqual(leaks, []);
  });

  test('Prometheus scrapes both processes under the job names the down alerts expect', async () => {
    const file = await ruleFile();
    for (const name of ['QuotadAuthorityDown', 'QuotadGatewayDown', 'QuotadInstanceDown']) {
      const rule = alerts(file).find((r) => r.alert === name);
      assert.ok(rule, name);
      assert.deepEqual(await prometheus.query(rule.expr), [], `${name} holds while both are up`);
    }
    const up = await prometheus.query(
      'up{job=~".*quotad-authority.*"} == 1 or up{job=~".*quotad-gateway.*"} == 1',
    );
    assert.deepEqual(up.map((sample) => sample.metric.job).sort(), [AUTHORITY_JOB, GATEWAY_JOB]);
  });

  test('the decision-rate recording rule counts the decisions driven, allowed and denied', async () => {
    const rates = await prometheus.waitFor('decision rates above 0', async () => {
      const samples = await prometheus.query(
        `namespace_job_result:quotad_decisions:rate5m{job="${AUTHORITY_JOB}"} > 0`,
      );
      return samples.length === 2 ? samples : undefined;
    });
    assert.deepEqual(rates.map((sample) => sample.metric.result).sort(), ['allowed', 'denied']);
  });

  test('the gateway 5xx-ratio recording rule sees the 502 among the answers', async () => {
    const ratio = await prometheus.waitFor('a 5xx ratio above 0', async () => {
      const [sample] = await prometheus.query(
        `namespace_job:quotad_gateway_requests_5xx:ratio_rate5m{job="${GATEWAY_JOB}"} > 0`,
      );
      return sample ? Number(sample.value[1]) : undefined;
    });
    // One 502 among the answers; probes and scrapes of /metrics are not counted.
    assert.ok(ratio > 0 && ratio < 0.5, `ratio ${ratio}`);
  });

  test('Prometheus loaded every rule of rules.yaml and evaluates each with health ok', async () => {
    const expected = allRules(await ruleFile()).map((rule) => rule.alert ?? rule.record);
    const loaded = await prometheus.waitFor('every rule evaluated', async () => {
      const rules = await prometheus.rules();
      return rules.length > 0 && rules.every((rule) => rule.health !== 'unknown') ? rules : undefined;
    });
    assert.deepEqual(
      loaded
        .map((rule) => `${rule.name}: ${rule.health}${rule.lastError ? ` ${rule.lastError}` : ''}`)
        .sort(),
      expected.map((name) => `${name}: ok`).sort(),
    );
  });
});
