import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import type { IServiceMonitor } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor';
import type { ILabelSelector } from '@kubernetes-models/apimachinery/apis/meta/v1/LabelSelector';
import type { IHorizontalPodAutoscaler } from 'kubernetes-models/autoscaling/v2/HorizontalPodAutoscaler';
import type { INetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1/NetworkPolicy';
import type { INetworkPolicyPeer } from 'kubernetes-models/networking.k8s.io/v1/NetworkPolicyPeer';
import type { INetworkPolicyPort } from 'kubernetes-models/networking.k8s.io/v1/NetworkPolicyPort';
import type { IPodDisruptionBudget } from 'kubernetes-models/policy/v1/PodDisruptionBudget';
import type { IConfigMap } from 'kubernetes-models/v1/ConfigMap';
import type { IContainer } from 'kubernetes-models/v1/Container';
import type { INamespace } from 'kubernetes-models/v1/Namespace';
import type { IPodSpec } from 'kubernetes-models/v1/PodSpec';
import type { IProbe } from 'kubernetes-models/v1/Probe';
import type { IService } from 'kubernetes-models/v1/Service';
import { parseDuration } from '../../src/core/duration.js';
import { buildEnvoyConfig } from '../../src/envoy/load-config.js';
import { SERVE_SETTINGS } from '../../src/main/config.js';
import { GATEWAY_SETTINGS } from '../../src/main/gateway-config.js';
import { parsePolicy } from '../../src/policy/load.js';
import { REPO_ROOT } from '../../harness/authority-process.js';
import {
  KUSTOMIZE_ROOT,
  objectName,
  renderKustomization,
  validateObjects,
  type RenderedObject,
} from '../helpers/kubernetes.js';

/** Every kustomization an operator may apply or build on; the overlays are what clusters get. */
const TARGETS = [
  'base',
  'overlays/dev',
  'overlays/production',
  'overlays/production-cluster',
  'overlays/production-sentinel',
] as const;
type Target = (typeof TARGETS)[number];
const OVERLAYS = [
  'overlays/dev',
  'overlays/production',
  'overlays/production-cluster',
  'overlays/production-sentinel',
] as const;
const NAMESPACE = 'quotad';

const PACKAGE_VERSION = (
  JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string }
).version;

const renders = new Map<Target, RenderedObject[]>(
  await Promise.all(TARGETS.map(async (target) => [target, await renderKustomization(target)] as const)),
);

function rendered(target: Target): RenderedObject[] {
  return renders.get(target) ?? [];
}

/** The objects of one kind, typed as kubernetes-models declares them (the schema test checks the shapes). */
function ofKind<T>(objects: readonly RenderedObject[], kind: string): T[] {
  return objects.filter((object) => object.kind === kind) as unknown as T[];
}

type Labels = Record<string, string>;

/** A pod template and what owns it. */
interface Workload {
  name: string;
  kind: string;
  replicas: number | undefined;
  labels: Labels;
  pod: IPodSpec;
}

interface WithPodTemplate {
  kind: string;
  metadata: { name: string };
  spec: { replicas?: number; template: { metadata?: { labels?: Labels }; spec: IPodSpec } };
}

const WORKLOAD_KINDS = new Set(['Deployment', 'StatefulSet', 'DaemonSet', 'ReplicaSet']);

function workloads(objects: readonly RenderedObject[]): Workload[] {
  return (objects.filter((object) => WORKLOAD_KINDS.has(object.kind)) as unknown as WithPodTemplate[]).map(
    (object) => ({
      name: object.metadata.name,
      kind: object.kind,
      replicas: object.spec.replicas,
      labels: object.spec.template.metadata?.labels ?? {},
      pod: object.spec.template.spec,
    }),
  );
}

function containersOf(pod: IPodSpec): IContainer[] {
  return [...(pod.initContainers ?? []), ...pod.containers];
}

/** The container running `quotad serve` or `quotad gateway` (the image's entrypoint is the CLI). */
function quotadContainer(workload: Workload, command: 'serve' | 'gateway'): IContainer | undefined {
  return workload.pod.containers.find((container) => container.args?.[0] === command);
}

function workloadRunning(objects: readonly RenderedObject[], command: 'serve' | 'gateway'): Workload {
  const found = workloads(objects).filter((workload) => quotadContainer(workload, command));
  assert.equal(found.length, 1, `one workload runs quotad ${command}`);
  return found[0] as Workload;
}

function container(workload: Workload, command: 'serve' | 'gateway'): IContainer {
  const found = quotadContainer(workload, command);
  assert.ok(found, `${workload.name} runs quotad ${command}`);
  return found;
}

/** A literal environment value, or undefined when unset or taken from elsewhere. */
function envValue(container: IContainer, name: string): string | undefined {
  return container.env?.find((variable) => variable.name === name)?.value;
}

/** matchLabels only: a selector with matchExpressions fails the test instead of being half-evaluated. */
function selects(selector: ILabelSelector | undefined, labels: Labels): boolean {
  assert.equal(selector?.matchExpressions, undefined, 'these checks read matchLabels only');
  return Object.entries(selector?.matchLabels ?? {}).every(([key, value]) => labels[key] === value);
}

function selectedWorkloads(
  selector: ILabelSelector | undefined,
  objects: readonly RenderedObject[],
): string[] {
  return workloads(objects)
    .filter((workload) => selects(selector, workload.labels))
    .map((workload) => workload.name)
    .sort();
}

/** `1`, `250m`, `512Mi`, `1Gi` as a number (cores or bytes). */
function quantity(text: string | number | undefined): number {
  const match = /^(\d+(?:\.\d+)?)(m|k|M|G|Ki|Mi|Gi)?$/.exec(String(text));
  assert.ok(match, `a quantity: ${String(text)}`);
  const scale: Record<string, number> = {
    m: 1e-3,
    k: 1e3,
    M: 1e6,
    G: 1e9,
    Ki: 2 ** 10,
    Mi: 2 ** 20,
    Gi: 2 ** 30,
  };
  return Number(match[1]) * (match[2] ? (scale[match[2]] as number) : 1);
}

function durationMs(name: string, text: string | undefined): number {
  const ms = parseDuration(text ?? '');
  assert.ok(ms !== undefined, `${name} is a duration: ${String(text)}`);
  return ms;
}

/** Pod Security "restricted" (and a read-only root filesystem): what each pod breaks, empty when none. */
function restrictedViolations(pod: IPodSpec): string[] {
  const problems: string[] = [];
  const podContext = pod.securityContext ?? {};
  if (pod.hostNetwork || pod.hostPID || pod.hostIPC) problems.push('shares a host namespace');
  if (pod.automountServiceAccountToken !== false) problems.push('automountServiceAccountToken is not false');
  const allowedVolumes = new Set([
    'configMap',
    'csi',
    'downwardAPI',
    'emptyDir',
    'ephemeral',
    'persistentVolumeClaim',
    'projected',
    'secret',
  ]);
  for (const volume of pod.volumes ?? []) {
    const types = Object.keys(volume).filter((key) => key !== 'name');
    if (!types.every((type) => allowedVolumes.has(type)))
      problems.push(`volume ${volume.name}: ${types.join()}`);
  }
  for (const each of containersOf(pod)) {
    const context = each.securityContext ?? {};
    const where = `container ${each.name}`;
    if ((context.runAsNonRoot ?? podContext.runAsNonRoot) !== true) problems.push(`${where}: runAsNonRoot`);
    const user = context.runAsUser ?? podContext.runAsUser;
    if (typeof user !== 'number' || user === 0) problems.push(`${where}: runAsUser is not a non-zero number`);
    if (context.allowPrivilegeEscalation !== false) problems.push(`${where}: allowPrivilegeEscalation`);
    if (context.privileged) problems.push(`${where}: privileged`);
    if (!(context.capabilities?.drop ?? []).includes('ALL'))
      problems.push(`${where}: capabilities not dropped`);
    if ((context.capabilities?.add ?? []).some((added) => added !== 'NET_BIND_SERVICE')) {
      problems.push(`${where}: adds capabilities`);
    }
    const seccomp = (context.seccompProfile ?? podContext.seccompProfile)?.type;
    if (seccomp !== 'RuntimeDefault' && seccomp !== 'Localhost') problems.push(`${where}: seccompProfile`);
    if (context.readOnlyRootFilesystem !== true) problems.push(`${where}: root filesystem is writable`);
    if ((each.ports ?? []).some((port) => port.hostPort !== undefined)) problems.push(`${where}: hostPort`);
  }
  return problems;
}

/** Where a probe connects: a port number or name; undefined for an exec probe. */
function probePort(probe: IProbe): number | string | undefined {
  return probe.grpc?.port ?? probe.httpGet?.port ?? probe.tcpSocket?.port;
}

function probeProblems(each: IContainer): string[] {
  const problems: string[] = [];
  const declared = new Set<number | string>(
    (each.ports ?? []).flatMap((port) =>
      port.name ? [port.name, port.containerPort] : [port.containerPort],
    ),
  );
  const probes = { readinessProbe: each.readinessProbe, livenessProbe: each.livenessProbe };
  for (const [kind, probe] of Object.entries(probes)) {
    if (!probe) {
      problems.push(`${each.name}: no ${kind}`);
      continue;
    }
    const port = probePort(probe);
    if (port === undefined && !probe.exec) problems.push(`${each.name}: ${kind} has no port`);
    if (port !== undefined && !declared.has(port)) {
      problems.push(`${each.name}: ${kind} port ${port} is not a declared port`);
    }
  }
  return problems;
}

/** `repo/name:tag`, `host:5000/name:tag@sha256:…`: pinned when it has a digest, or a tag that is not latest. */
function imageTag(image: string): { tag: string | undefined; digest: string | undefined } {
  const [name = '', digest] = image.split('@');
  const colon = name.lastIndexOf(':');
  return { tag: colon > name.lastIndexOf('/') ? name.slice(colon + 1) : undefined, digest };
}

/** Whether a NetworkPolicy rule's ports admit `port`/`protocol` (no ports: every port). */
function allowsPort(
  ports: INetworkPolicyPort[] | undefined,
  port: number,
  protocol: 'TCP' | 'UDP',
  name?: string,
): boolean {
  if (!ports || ports.length === 0) return true;
  return ports.some(
    (each) =>
      (each.protocol ?? 'TCP') === protocol &&
      (each.port === undefined || each.port === port || (name !== undefined && each.port === name)),
  );
}

function policiesFor(workload: Workload, objects: readonly RenderedObject[]): INetworkPolicy[] {
  return ofKind<INetworkPolicy>(objects, 'NetworkPolicy').filter((policy) =>
    selects(policy.spec?.podSelector, workload.labels),
  );
}

/** The `from` peers of every ingress rule that lets traffic reach `port` of the workload's pods. */
function ingressPeers(
  workload: Workload,
  objects: readonly RenderedObject[],
  port: number,
  name?: string,
): (INetworkPolicyPeer[] | undefined)[] {
  return policiesFor(workload, objects)
    .filter((policy) => policy.spec?.policyTypes?.includes('Ingress'))
    .flatMap((policy) => policy.spec?.ingress ?? [])
    .filter((rule) => allowsPort(rule.ports, port, 'TCP', name))
    .map((rule) => rule.from);
}

function egressPeers(
  workload: Workload,
  objects: readonly RenderedObject[],
  port: number,
  protocol: 'TCP' | 'UDP',
): (INetworkPolicyPeer[] | undefined)[] {
  return policiesFor(workload, objects)
    .filter((policy) => policy.spec?.policyTypes?.includes('Egress'))
    .flatMap((policy) => policy.spec?.egress ?? [])
    .filter((rule) => allowsPort(rule.ports, port, protocol))
    .map((rule) => rule.to);
}

/** The workloads in the namespace that a list of peers admits; `everyone` when it admits anything more. */
function admittedBy(peers: INetworkPolicyPeer[] | undefined, objects: readonly RenderedObject[]): string[] {
  if (!peers || peers.length === 0) return ['everyone'];
  return peers.flatMap((peer) =>
    peer.ipBlock || peer.namespaceSelector || !peer.podSelector
      ? ['everyone']
      : selectedWorkloads(peer.podSelector, objects),
  );
}

/** The Service behind `dns:///host:port`: host is the Service's name (or name.namespace.svc…). */
function serviceOfTarget(
  target: string,
  objects: readonly RenderedObject[],
): { service: IService; port: number } | undefined {
  const match = /^dns:\/\/\/([a-z0-9.-]+):(\d+)$/.exec(target);
  if (!match) return undefined;
  const [name = '', ...domain] = (match[1] as string).split('.');
  const service = ofKind<IService>(objects, 'Service').find((each) => each.metadata?.name === name);
  if (!service) return undefined;
  const namespace = service.metadata?.namespace;
  const qualified = domain.length === 0 || (namespace !== undefined && domain[0] === namespace);
  return qualified ? { service, port: Number(match[2]) } : undefined;
}

const CLUSTER_SCOPED = new Set([
  'Namespace',
  'ClusterRole',
  'ClusterRoleBinding',
  'PriorityClass',
  'StorageClass',
]);

for (const target of TARGETS) {
  describe(`kustomize ${target}`, () => {
    const objects = rendered(target);

    test('renders objects, every one valid against the Kubernetes and Prometheus Operator schemas', async () => {
      assert.ok(objects.length > 0);
      assert.deepEqual(await validateObjects(objects), []);
    });

    test('every object carries the common labels', () => {
      const unlabelled = objects
        .filter(
          (object) =>
            object.metadata.labels?.['app.kubernetes.io/part-of'] !== 'quotad' ||
            !object.metadata.labels['app.kubernetes.io/name'],
        )
        .map(objectName);
      assert.deepEqual(unlabelled, []);
    });

    test(target === 'base' ? 'names no namespace' : `puts everything in namespace ${NAMESPACE}`, () => {
      const namespaced = objects.filter((object) => !CLUSTER_SCOPED.has(object.kind));
      const expected = target === 'base' ? undefined : NAMESPACE;
      assert.deepEqual(
        namespaced.filter((object) => object.metadata.namespace !== expected).map(objectName),
        [],
      );
    });

    test('every pod meets Pod Security "restricted", with a read-only root filesystem', () => {
      const found = workloads(objects).map((workload) => ({
        workload: workload.name,
        problems: restrictedViolations(workload.pod),
      }));
      assert.ok(found.length >= 2);
      assert.deepEqual(
        found.filter(({ problems }) => problems.length > 0),
        [],
      );
    });

    test('every container has readiness and liveness probes on ports it declares', () => {
      const problems = workloads(objects).flatMap((workload) =>
        containersOf(workload.pod).flatMap(probeProblems),
      );
      assert.deepEqual(problems, []);
    });

    test('the authority is probed by gRPC health on its gRPC port, the gateway on /healthz and /readyz', () => {
      const authority = container(workloadRunning(objects, 'serve'), 'serve');
      const grpcPort = authority.ports?.find((port) => port.name === 'grpc')?.containerPort;
      assert.equal(grpcPort, 8081);
      assert.deepEqual(authority.readinessProbe?.grpc, { port: grpcPort });
      assert.deepEqual(authority.livenessProbe?.grpc, { port: grpcPort });
      assert.equal(envValue(authority, 'QUOTAD_GRPC_ADDR'), `0.0.0.0:${grpcPort}`);

      const gateway = container(workloadRunning(objects, 'gateway'), 'gateway');
      assert.deepEqual(gateway.livenessProbe?.httpGet, { path: '/healthz', port: 'http' });
      assert.deepEqual(gateway.readinessProbe?.httpGet, { path: '/readyz', port: 'http' });
      const httpPort = gateway.ports?.find((port) => port.name === 'http')?.containerPort;
      assert.equal(envValue(gateway, 'QUOTAD_GATEWAY_ADDR'), `0.0.0.0:${httpPort}`);
    });

    test('every container requests and limits cpu and memory, requests within limits', () => {
      const problems = workloads(objects).flatMap((workload) =>
        containersOf(workload.pod).flatMap((each) =>
          ['cpu', 'memory'].flatMap((resource) => {
            const request = each.resources?.requests?.[resource];
            const limit = each.resources?.limits?.[resource];
            if (request === undefined || limit === undefined) return [`${each.name}: ${resource} unset`];
            return quantity(request) <= quantity(limit)
              ? []
              : [`${each.name}: ${resource} request over limit`];
          }),
        ),
      );
      assert.deepEqual(problems, []);
    });

    test(`every image is pinned; quotad's to this version, ${PACKAGE_VERSION}`, () => {
      const images = workloads(objects).flatMap((workload) =>
        containersOf(workload.pod).map((each) => ({ image: each.image ?? '', quotad: each.args?.[0] })),
      );
      const unpinned = images.filter(({ image }) => {
        const { tag, digest } = imageTag(image);
        return !digest && (tag === undefined || tag === 'latest');
      });
      assert.deepEqual(unpinned, []);
      const quotad = images.filter(({ quotad }) => quotad === 'serve' || quotad === 'gateway');
      assert.equal(quotad.length, 2);
      for (const { image } of quotad) {
        const { tag, digest } = imageTag(image);
        assert.ok(
          digest || tag === PACKAGE_VERSION,
          `${image} is tagged ${PACKAGE_VERSION} or pinned by digest`,
        );
      }
    });

    test('the authority reads its policy from the ConfigMap mounted as a directory (never a subPath)', () => {
      const authority = workloadRunning(objects, 'serve');
      const policyPath = envValue(container(authority, 'serve'), 'QUOTAD_POLICY') ?? '';
      const mount = container(authority, 'serve').volumeMounts?.find((each) =>
        policyPath.startsWith(`${each.mountPath}/`),
      );
      assert.ok(mount, `a volume is mounted above ${policyPath}`);
      const volume = authority.pod.volumes?.find((each) => each.name === mount.name);
      const configMap = ofKind<IConfigMap>(objects, 'ConfigMap').find(
        (each) => each.metadata?.name === volume?.configMap?.name,
      );
      assert.ok(
        configMap?.data?.[policyPath.slice(mount.mountPath.length + 1)],
        `${policyPath} is in the ConfigMap`,
      );
      const subPaths = workloads(objects).flatMap((workload) =>
        containersOf(workload.pod).flatMap((each) =>
          (each.volumeMounts ?? [])
            .filter((m) => m.subPath || m.subPathExpr)
            .map((m) => `${each.name}:${m.name}`),
        ),
      );
      assert.deepEqual(subPaths, []);
    });

    test("the policy in the ConfigMap is valid, and its replicas are the authority Deployment's", () => {
      const authority = workloadRunning(objects, 'serve');
      const policyPath = envValue(container(authority, 'serve'), 'QUOTAD_POLICY') ?? '';
      const fileName = policyPath.slice(policyPath.lastIndexOf('/') + 1);
      const configMaps = ofKind<IConfigMap>(objects, 'ConfigMap').filter((each) => each.data?.[fileName]);
      assert.equal(configMaps.length, 1);
      const text = configMaps[0]?.data?.[fileName] as string;
      const policy = parsePolicy(text, `${target}: ConfigMap ${configMaps[0]?.metadata?.name}`);
      assert.equal(policy.replicas, authority.replicas);
    });

    test('the authority reads its Envoy config from a ConfigMap mounted as a directory, and every file loads', () => {
      const authority = workloadRunning(objects, 'serve');
      const directory = envValue(container(authority, 'serve'), SERVE_SETTINGS.envoyConfig.env) ?? '';
      const mount = container(authority, 'serve').volumeMounts?.find((each) => each.mountPath === directory);
      assert.ok(mount, `a volume is mounted at ${directory}`);
      const volume = authority.pod.volumes?.find((each) => each.name === mount.name);
      const configMap = ofKind<IConfigMap>(objects, 'ConfigMap').find(
        (each) => each.metadata?.name === volume?.configMap?.name,
      );
      const files = Object.entries(configMap?.data ?? {}).map(([name, text]) => ({ name, text }));
      assert.ok(files.length > 0, `${volume?.configMap?.name} holds files`);
      assert.ok(buildEnvoyConfig(files).domains.size >= 1);
    });

    test('each quotad pod shuts down inside its grace period: preStop + shutdown delay + grace', () => {
      for (const command of ['serve', 'gateway'] as const) {
        const workload = workloadRunning(objects, command);
        const each = container(workload, command);
        const settings = command === 'serve' ? SERVE_SETTINGS : GATEWAY_SETTINGS;
        const preStopSeconds = each.lifecycle?.preStop?.sleep?.seconds;
        assert.ok(
          preStopSeconds !== undefined && preStopSeconds > 0,
          `${workload.name} pauses before SIGTERM`,
        );
        const graceText = envValue(each, settings.shutdownGrace.env);
        assert.ok(graceText, `${workload.name} sets ${settings.shutdownGrace.env}`);
        const delayText = command === 'serve' ? envValue(each, SERVE_SETTINGS.shutdownDelay.env) : '0s';
        assert.ok(delayText, `${workload.name} sets ${SERVE_SETTINGS.shutdownDelay.env}`);
        const neededMs =
          preStopSeconds * 1000 + durationMs('delay', delayText) + durationMs('grace', graceText);
        const periodMs = (workload.pod.terminationGracePeriodSeconds ?? 30) * 1000;
        assert.ok(periodMs > neededMs, `${workload.name}: ${periodMs}ms > ${neededMs}ms`);
      }
    });

    test('every replicated workload spreads over nodes, one constraint per topology key, and has a disruption budget', () => {
      const autoscaled = new Set(
        ofKind<IHorizontalPodAutoscaler>(objects, 'HorizontalPodAutoscaler').map(
          (hpa) => hpa.spec?.scaleTargetRef.name,
        ),
      );
      const replicated = workloads(objects).filter(
        (workload) => (workload.replicas ?? 1) > 1 || autoscaled.has(workload.name),
      );
      assert.ok(replicated.length >= 2);
      for (const workload of replicated) {
        const constraints = workload.pod.topologySpreadConstraints ?? [];
        const keys = constraints.map((constraint) => constraint.topologyKey);
        assert.deepEqual(keys, [...new Set(keys)], `${workload.name}: one constraint per key`);
        assert.ok(keys.includes('kubernetes.io/hostname'), `${workload.name} spreads over nodes`);
        for (const constraint of constraints) assert.ok(selects(constraint.labelSelector, workload.labels));
        const budgets = ofKind<IPodDisruptionBudget>(objects, 'PodDisruptionBudget').filter(
          (budget) => selectedWorkloads(budget.spec?.selector, objects).join() === workload.name,
        );
        assert.equal(budgets.length, 1, `${workload.name} has its own PodDisruptionBudget`);
      }
    });

    test("the gateway's replica count belongs to its HPA (at least 2), the authority runs 3", () => {
      const gateway = workloadRunning(objects, 'gateway');
      assert.equal(gateway.replicas, undefined);
      const hpas = ofKind<IHorizontalPodAutoscaler>(objects, 'HorizontalPodAutoscaler').filter(
        (hpa) =>
          hpa.spec?.scaleTargetRef.kind === 'Deployment' && hpa.spec.scaleTargetRef.name === gateway.name,
      );
      assert.equal(hpas.length, 1);
      assert.ok((hpas[0]?.spec?.minReplicas ?? 1) >= 2);
      assert.equal(workloadRunning(objects, 'serve').replicas, 3);
    });

    test('NetworkPolicies deny by default', () => {
      const denyAll = ofKind<INetworkPolicy>(objects, 'NetworkPolicy').filter(
        (policy) =>
          Object.keys(policy.spec?.podSelector?.matchLabels ?? {}).length === 0 &&
          !policy.spec?.podSelector?.matchExpressions &&
          policy.spec?.policyTypes?.includes('Ingress') &&
          policy.spec.policyTypes.includes('Egress') &&
          !policy.spec.ingress &&
          !policy.spec.egress,
      );
      assert.equal(denyAll.length, 1);
    });

    test("only gateway pods reach the authority's gRPC port; metrics only from the monitoring namespace", () => {
      const authority = workloadRunning(objects, 'serve');
      const gateway = workloadRunning(objects, 'gateway');
      const grpc = ingressPeers(authority, objects, 8081, 'grpc');
      assert.ok(grpc.length > 0);
      assert.deepEqual([...new Set(grpc.flatMap((peers) => admittedBy(peers, objects)))], [gateway.name]);

      const metrics = ingressPeers(authority, objects, 9464, 'metrics');
      assert.ok(metrics.length > 0);
      for (const peers of metrics) {
        assert.deepEqual(peers, [
          { namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'monitoring' } } },
        ]);
      }
    });

    test('gateways take clients on 8080 from anywhere', () => {
      const gateway = workloadRunning(objects, 'gateway');
      const peers = ingressPeers(gateway, objects, 8080, 'http');
      assert.ok(peers.some((each) => admittedBy(each, objects).includes('everyone')));
    });

    test('egress: both reach DNS; the authority Redis; the gateway the authority and HTTPS upstreams', () => {
      const authority = workloadRunning(objects, 'serve');
      const gateway = workloadRunning(objects, 'gateway');
      for (const workload of [authority, gateway]) {
        assert.ok(egressPeers(workload, objects, 53, 'UDP').length > 0, `${workload.name} resolves names`);
      }
      assert.ok(egressPeers(authority, objects, 6379, 'TCP').length > 0);
      assert.ok(egressPeers(gateway, objects, 443, 'TCP').length > 0);
      const toAuthority = egressPeers(gateway, objects, 8081, 'TCP');
      assert.ok(toAuthority.some((peers) => admittedBy(peers, objects).includes(authority.name)));
    });

    test("the gateway's QUOTAD_AUTHORITY is the authority's headless Service and gRPC port", () => {
      const authority = workloadRunning(objects, 'serve');
      const gateway = container(workloadRunning(objects, 'gateway'), 'gateway');
      const targetText = envValue(gateway, 'QUOTAD_AUTHORITY') ?? '';
      const found = serviceOfTarget(targetText, objects);
      assert.ok(found, `${targetText} names a Service of this namespace`);
      const { service, port } = found;
      assert.equal(service.spec?.clusterIP, 'None');
      assert.deepEqual(selectedWorkloads({ matchLabels: service.spec?.selector ?? {} }, objects), [
        authority.name,
      ]);
      const servicePort = service.spec?.ports?.find((each) => each.port === port);
      const grpcPort = container(authority, 'serve').ports?.find(
        (each) => each.name === servicePort?.targetPort || each.containerPort === servicePort?.targetPort,
      );
      assert.equal(grpcPort?.containerPort, 8081);
    });

    test('ServiceMonitors scrape /metrics of the authority (9464) and the gateway (8080)', () => {
      const scraped = ofKind<IServiceMonitor>(objects, 'ServiceMonitor').flatMap((monitor) => {
        assert.equal(monitor.spec.namespaceSelector, undefined, 'same namespace');
        const services = ofKind<IService>(objects, 'Service').filter((service) =>
          selects(monitor.spec.selector as ILabelSelector, service.metadata?.labels ?? {}),
        );
        return services.flatMap((service) =>
          monitor.spec.endpoints.flatMap((endpoint) => {
            assert.equal(endpoint.path, '/metrics');
            const port = service.spec?.ports?.find((each) => each.name === endpoint.port);
            return workloads(objects)
              .filter((workload) => selects({ matchLabels: service.spec?.selector ?? {} }, workload.labels))
              .flatMap((workload) =>
                containersOf(workload.pod).flatMap((each) =>
                  (each.ports ?? [])
                    .filter((p) => p.name === port?.targetPort || p.containerPort === port?.targetPort)
                    .map((p) => `${workload.name}:${p.containerPort}`),
                ),
              );
          }),
        );
      });
      const authority = workloadRunning(objects, 'serve').name;
      const gateway = workloadRunning(objects, 'gateway').name;
      assert.deepEqual([...new Set(scraped)].sort(), [`${authority}:9464`, `${gateway}:8080`].sort());
    });

    test('Secrets are referenced by name, never rendered, and no secret-looking variable is a literal', () => {
      const withValues = objects.filter(
        (object) =>
          object.kind === 'Secret' && (object.data !== undefined || object.stringData !== undefined),
      );
      assert.deepEqual(withValues.map(objectName), []);
      const literals = workloads(objects).flatMap((workload) =>
        containersOf(workload.pod).flatMap((each) =>
          (each.env ?? [])
            .filter(
              (variable) =>
                variable.value !== undefined &&
                (/(TOKEN|SECRET|PASSWORD|API_KEY)$/.test(variable.name) ||
                  /:\/\/[^/\s:@]*:[^/\s@]+@/.test(variable.value)),
            )
            .map((variable) => `${workload.name}: ${variable.name}`),
        ),
      );
      assert.deepEqual(literals, []);
    });

    if (target !== 'base') {
      test('its Namespace enforces Pod Security "restricted"', () => {
        const namespaces = ofKind<INamespace>(objects, 'Namespace');
        assert.deepEqual(
          namespaces.map((namespace) => namespace.metadata?.name),
          [NAMESPACE],
        );
        assert.equal(namespaces[0]?.metadata?.labels?.['pod-security.kubernetes.io/enforce'], 'restricted');
      });
    }
  });
}

describe('the policy', () => {
  test('the base policy is config/policy.yaml with the authority replicas', () => {
    const base = readFileSync(join(KUSTOMIZE_ROOT, 'base', 'policy.yaml'), 'utf8');
    const shipped = readFileSync(join(REPO_ROOT, 'config', 'policy.yaml'), 'utf8');
    const basePolicy = parsePolicy(base, 'deploy/kubernetes/base/policy.yaml');
    const shippedPolicy = parsePolicy(shipped, 'config/policy.yaml');
    assert.deepEqual({ ...basePolicy, replicas: shippedPolicy.replicas }, shippedPolicy);
  });
});

describe('overlays', () => {
  test("dev: the authority's REDIS_URL is the dev Redis, which only the authority may reach", () => {
    const objects = rendered('overlays/dev');
    const authority = workloadRunning(objects, 'serve');
    const url = new URL(envValue(container(authority, 'serve'), 'REDIS_URL') ?? '');
    assert.equal(url.protocol, 'redis:');
    const service = ofKind<IService>(objects, 'Service').find((each) => each.metadata?.name === url.hostname);
    assert.ok(service, `a Service ${url.hostname}`);
    assert.ok(service.spec?.ports?.some((each) => each.port === Number(url.port)));
    const redis = workloads(objects).filter((workload) =>
      selects({ matchLabels: service.spec?.selector ?? {} }, workload.labels),
    );
    assert.equal(redis.length, 1);
    const peers = ingressPeers(redis[0] as Workload, objects, 6379, 'redis');
    assert.ok(peers.length > 0);
    assert.deepEqual([...new Set(peers.flatMap((each) => admittedBy(each, objects)))], [authority.name]);
  });

  test('production: REDIS_URL comes from the Secret quotad-redis, and the upstream key is required', () => {
    const objects = rendered('overlays/production');
    const authority = container(workloadRunning(objects, 'serve'), 'serve');
    const redis = authority.env?.find((variable) => variable.name === 'REDIS_URL');
    assert.deepEqual(redis?.valueFrom, { secretKeyRef: { name: 'quotad-redis', key: 'url' } });
    const gateway = container(workloadRunning(objects, 'gateway'), 'gateway');
    const key = gateway.env?.find((variable) => variable.name === 'OPENAI_API_KEY');
    assert.equal(key?.valueFrom?.secretKeyRef?.optional, false);
  });

  for (const [overlay, expected] of [
    ['overlays/production-cluster', { QUOTAD_REDIS_CLUSTER: 'cluster', QUOTAD_REDIS_PASSWORD: 'password' }],
    [
      'overlays/production-sentinel',
      {
        QUOTAD_REDIS_SENTINELS: 'sentinels',
        QUOTAD_REDIS_SENTINEL_NAME: 'sentinel-name',
        QUOTAD_REDIS_PASSWORD: 'password',
      },
    ],
  ] as const) {
    test(`${overlay}: the authority reaches Redis one way only, from the Secret quotad-redis`, () => {
      const authority = container(workloadRunning(rendered(overlay), 'serve'), 'serve');
      const redisVariables = Object.fromEntries(
        (authority.env ?? [])
          .filter((variable) =>
            /^(REDIS_URL|QUOTAD_REDIS_(CLUSTER|SENTINELS|SENTINEL_NAME|PASSWORD))$/.test(variable.name),
          )
          .map((variable) => {
            assert.equal(variable.valueFrom?.secretKeyRef?.name, 'quotad-redis', variable.name);
            return [variable.name, variable.valueFrom?.secretKeyRef?.key];
          }),
      );
      assert.deepEqual(redisVariables, expected);
    });
  }
});

test("grpc-js resolves dns:/// targets with getaddrinfo, so the gateway's short Service name resolves in its namespace", () => {
  // The short name in QUOTAD_AUTHORITY depends on the pod's DNS search path, which getaddrinfo
  // (dns.lookup) applies and c-ares (dns.resolve*, grpc-js's GRPC_NODE_USE_ALTERNATIVE_RESOLVER) does not.
  const resolver = readFileSync(
    join(REPO_ROOT, 'node_modules', '@grpc', 'grpc-js', 'build', 'src', 'resolver-dns.js'),
    'utf8',
  );
  assert.match(resolver, /promises\.lookup\(hostname, \{ all: true \}\)/);
  for (const target of TARGETS) {
    const gateway = container(workloadRunning(rendered(target), 'gateway'), 'gateway');
    assert.equal(
      gateway.env?.some((variable) => variable.name === 'GRPC_NODE_USE_ALTERNATIVE_RESOLVER'),
      false,
    );
  }
});

test('the validator refuses ill-typed and unknown fields and unknown kinds, naming each object', async () => {
  const deployment = (
    name: string,
    container: Record<string, unknown>,
    spec: Record<string, unknown> = {},
  ) => ({
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name },
    spec: {
      selector: { matchLabels: { app: name } },
      template: {
        metadata: { labels: { app: name } },
        spec: { containers: [{ name: 'c', image: 'i:1', ...container }] },
      },
      ...spec,
    },
  });
  const problems = await validateObjects([
    deployment('valid', { ports: [{ containerPort: 80 }] }),
    deployment('ill-typed', {}, { replicas: 'three' }),
    deployment('unknown-field', { porst: [{ containerPort: 80 }] }),
    deployment('missing-field', { image: undefined, name: undefined }),
    {
      apiVersion: 'monitoring.coreos.com/v1',
      kind: 'ServiceMonitor',
      metadata: { name: 'unknown-endpoint-field' },
      spec: { selector: {}, endpoints: [{ port: 'metrics', pth: '/metrics' }] },
    },
    { apiVersion: 'example.com/v1', kind: 'Widget', metadata: { name: 'unknown-kind' } },
  ]);
  assert.deepEqual([...new Set(problems.map((problem) => problem.object))].sort(), [
    'Deployment/ill-typed',
    'Deployment/missing-field',
    'Deployment/unknown-field',
    'ServiceMonitor/unknown-endpoint-field',
    'Widget/unknown-kind',
  ]);
});

test("the README's deploy commands name paths, Secrets, namespaces, objects and images that exist", () => {
  const readme = readFileSync(join(REPO_ROOT, 'README.md'), 'utf8');
  const start = readme.indexOf('\n## Deploy\n');
  assert.ok(start >= 0, 'README has a Deploy section');
  const section = readme.slice(start, readme.indexOf('\n## ', start + 1));
  const commands = [...section.matchAll(/```sh\n([\s\S]*?)```/g)]
    .flatMap((block) => (block[1] as string).replace(/\\\n\s*/g, ' ').split('\n'))
    .filter(Boolean);
  const overlays = OVERLAYS.map(rendered);
  const all = overlays.flat();
  const references = new Set(
    workloads(all).flatMap((workload) =>
      containersOf(workload.pod).flatMap((each) =>
        (each.env ?? []).flatMap((variable) => {
          const ref = variable.valueFrom?.secretKeyRef;
          return ref ? [`${ref.name}/${ref.key}`] : [];
        }),
      ),
    ),
  );
  const images = new Set(
    workloads(all).flatMap((workload) => containersOf(workload.pod).map((each) => each.image)),
  );
  const kinds: Record<string, string> = {
    deployment: 'Deployment',
    statefulset: 'StatefulSet',
    service: 'Service',
    configmap: 'ConfigMap',
    hpa: 'HorizontalPodAutoscaler',
  };
  const problems: string[] = [];
  const seen = { kustomizations: 0, secrets: 0, namespaces: 0, objects: 0, images: 0 };
  for (const command of commands) {
    for (const [, path] of command.matchAll(/ -k (\S+)/g)) {
      seen.kustomizations++;
      if (!existsSync(join(REPO_ROOT, path as string, 'kustomization.yaml')))
        problems.push(`no kustomization ${path}`);
    }
    for (const [, path] of command.matchAll(/ -f (deploy\/\S+)/g)) {
      if (!existsSync(join(REPO_ROOT, path as string))) problems.push(`no file ${path}`);
    }
    for (const [, name, key] of command.matchAll(/create secret generic (\S+) --from-literal=([\w.-]+)=/g)) {
      seen.secrets++;
      if (!references.has(`${name}/${key}`)) problems.push(`no Secret reference ${name}/${key}`);
    }
    for (const [, namespace] of command.matchAll(/(?:-n |create namespace )(\S+)/g)) {
      seen.namespaces++;
      const used = overlays.every((objects) =>
        objects.some((object) => object.metadata.namespace === namespace),
      );
      if (!used) problems.push(`namespace ${namespace} is not every overlay's`);
    }
    for (const [, kind, name] of command.matchAll(
      /\b(deployment|statefulset|service|configmap|hpa)\/([a-z0-9-]+)/g,
    )) {
      seen.objects++;
      const exists = all.some(
        (object) => object.kind === kinds[kind as string] && object.metadata.name === name,
      );
      if (!exists) problems.push(`no ${kind}/${name}`);
    }
    for (const [, image] of command.matchAll(/(?:docker build .* -t |docker-image )(\S+)/g)) {
      seen.images++;
      if (!images.has(image)) problems.push(`no workload runs ${image}`);
    }
  }
  assert.deepEqual(problems, []);
  assert.ok(
    Object.values(seen).every((count) => count > 0),
    `every kind of reference checked: ${JSON.stringify(seen)}`,
  );
});
