import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import ts from 'typescript';
import { parseAllDocuments } from 'yaml';
import { REPO_ROOT } from '../../harness/authority-process.js';

const execFileAsync = promisify(execFile);

/** The kustomize tree: base/ and the overlays. */
export const KUSTOMIZE_ROOT = join(REPO_ROOT, 'deploy', 'kubernetes');

/** What every rendered document has; the rest is checked against the Kubernetes schemas. */
export interface RenderedObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string> };
  [field: string]: unknown;
}

/** `kind/name` (with the namespace when set): how a problem names its object. */
export function objectName(object: RenderedObject): string {
  const namespace = object.metadata.namespace ? `${object.metadata.namespace}/` : '';
  return `${object.kind}/${namespace}${object.metadata.name}`;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function asRenderedObject(value: unknown, index: number): RenderedObject {
  const metadata = isRecord(value) ? value.metadata : undefined;
  if (
    !isRecord(value) ||
    typeof value.apiVersion !== 'string' ||
    typeof value.kind !== 'string' ||
    !isRecord(metadata) ||
    typeof metadata.name !== 'string'
  ) {
    throw new Error(`document ${index} of the rendered output has no apiVersion, kind or metadata.name`);
  }
  return value as RenderedObject;
}

/** Parses a multi-document YAML stream (kustomize's output) into objects. */
export function parseManifests(text: string): RenderedObject[] {
  return parseAllDocuments(text)
    .map((document, index) => {
      if (document.errors.length > 0) throw new Error(`document ${index}: ${document.errors[0]?.message}`);
      return document.toJS() as unknown;
    })
    .filter((value) => value !== null)
    .map(asRenderedObject);
}

/**
 * `kubectl kustomize <dir>` (a path under deploy/kubernetes), parsed. Fails with what to install when
 * kubectl is missing; kustomize's own message when the tree does not build.
 */
export async function renderKustomization(relativeDir: string): Promise<RenderedObject[]> {
  const dir = join(KUSTOMIZE_ROOT, relativeDir);
  if (!existsSync(join(dir, 'kustomization.yaml'))) throw new Error(`${dir} has no kustomization.yaml`);
  let stdout: string;
  try {
    ({ stdout } = await execFileAsync('kubectl', ['kustomize', dir], {
      maxBuffer: 16 * 1024 * 1024,
      timeout: 30_000,
    }));
  } catch (error) {
    const failed = error as NodeJS.ErrnoException & { stderr?: string };
    if (failed.code === 'ENOENT') {
      throw new Error(
        'kubectl is not on PATH: the manifest tests render with `kubectl kustomize` (kustomize v5, kubectl 1.27 or later). Run `make tools` to see how to install it.',
        { cause: error },
      );
    }
    throw new Error(`kubectl kustomize ${relativeDir} failed: ${failed.stderr ?? failed.message}`, {
      cause: error,
    });
  }
  return parseManifests(stdout);
}

/** The kustomize version kubectl embeds, e.g. `v5.5.0`. */
export async function kustomizeVersion(): Promise<string> {
  const { stdout } = await execFileAsync('kubectl', ['version', '--client', '-o', 'json']);
  const parsed = JSON.parse(stdout) as { kustomizeVersion?: string };
  return parsed.kustomizeVersion ?? 'unknown';
}

/** One object the schemas refuse, and why. */
export interface SchemaProblem {
  object: string;
  message: string;
}

/** The kubernetes-models module that holds `kind` of `apiVersion`, or undefined for an unknown group. */
function modelModule(apiVersion: string, kind: string): string | undefined {
  if (!/^[A-Z][A-Za-z0-9]*$/.test(kind)) return undefined;
  if (apiVersion === 'monitoring.coreos.com/v1') {
    return `@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/${kind}`;
  }
  if (/^(v1|[a-z0-9.-]+\/v[0-9a-z]+)$/.test(apiVersion) && !apiVersion.includes('coreos')) {
    return `kubernetes-models/${apiVersion}/${kind}`;
  }
  return undefined;
}

interface ModelClass {
  new (data: unknown): { validate(): void };
}

function isModelClass(value: unknown): value is ModelClass {
  return (
    typeof value === 'function' && typeof (value.prototype as { validate?: unknown }).validate === 'function'
  );
}

async function loadModel(module: string, kind: string): Promise<ModelClass | undefined> {
  try {
    const loaded: unknown = await import(module);
    const model = isRecord(loaded) ? loaded[kind] : undefined;
    return isModelClass(model) ? model : undefined;
  } catch {
    return undefined;
  }
}

/** An object and the kubernetes-models module that declares its kind. */
interface Modelled {
  object: RenderedObject;
  module: string;
  model: ModelClass;
}

/**
 * Types, formats, enums and required fields: each object against its JSON schema in kubernetes-models
 * (the Kubernetes OpenAPI; the Prometheus Operator CRDs). Those schemas allow unknown fields, so
 * `unknownFields` below covers what an API server's strict field validation would refuse.
 */
function schemaProblems(modelled: readonly Modelled[]): SchemaProblem[] {
  return modelled.flatMap(({ object, model }) => {
    try {
      new model(object).validate();
      return [];
    } catch (error) {
      return [{ object: objectName(object), message: (error as Error).message }];
    }
  });
}

/**
 * Unknown fields, as `kubectl apply`'s strict field validation would refuse them: each object becomes a
 * typed constant (`const o0: IDeployment = {...}`) in a TypeScript program that is never written to disk,
 * and TypeScript's excess property check reports any field the type (kubernetes-models' declaration of the
 * same schema) does not have, at any depth.
 */
function unknownFields(modelled: readonly Modelled[]): SchemaProblem[] {
  const file = join(REPO_ROOT, 'test', 'deploy', '__rendered_manifests__.ts');
  const imports: string[] = [];
  const spans: { start: number; end: number; object: RenderedObject }[] = [];
  let body = '';
  const typeNames = new Map<string, string>();
  modelled.forEach(({ object, module }, index) => {
    let typeName = typeNames.get(module);
    if (!typeName) {
      typeName = `T${typeNames.size}`;
      typeNames.set(module, typeName);
      imports.push(`import type { I${object.kind} as ${typeName} } from '${module}';\n`);
    }
    const statement = `export const o${index}: ${typeName} = ${JSON.stringify(object)};\n`;
    spans.push({ start: body.length, end: body.length + statement.length, object });
    body += statement;
  });
  const header = imports.join('');
  const source = header + body;
  const options: ts.CompilerOptions = {
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    target: ts.ScriptTarget.ES2022,
    lib: ['lib.es2023.d.ts'],
    types: [],
    strict: true,
    noEmit: true,
    skipLibCheck: true,
  };
  const host = ts.createCompilerHost(options);
  const getSourceFile = host.getSourceFile.bind(host);
  const fileExists = host.fileExists.bind(host);
  const readFile = host.readFile.bind(host);
  host.getSourceFile = (name, language, ...rest) =>
    name === file ? ts.createSourceFile(name, source, language) : getSourceFile(name, language, ...rest);
  host.fileExists = (name) => name === file || fileExists(name);
  host.readFile = (name) => (name === file ? source : readFile(name));
  const program = ts.createProgram([file], options, host);
  const sourceFile = program.getSourceFile(file);
  const diagnostics = [
    ...program.getSyntacticDiagnostics(sourceFile),
    ...program.getSemanticDiagnostics(sourceFile),
  ];
  return diagnostics.map((diagnostic) => {
    const at = (diagnostic.start ?? 0) - header.length;
    const span = spans.find(({ start, end }) => at >= start && at < end);
    return {
      object: span ? objectName(span.object) : '(imports)',
      message: ts.flattenDiagnosticMessageText(diagnostic.messageText, '\n').slice(0, 400),
    };
  });
}

/**
 * Every object against the Kubernetes (and Prometheus Operator) schemas, offline: ill-typed, missing or
 * unknown fields and unknown kinds. Empty when all is well.
 */
export async function validateObjects(objects: readonly RenderedObject[]): Promise<SchemaProblem[]> {
  const modelled: Modelled[] = [];
  const unknownKinds: SchemaProblem[] = [];
  for (const object of objects) {
    const module = modelModule(object.apiVersion, object.kind);
    const model = module ? await loadModel(module, object.kind) : undefined;
    if (module && model) modelled.push({ object, module, model });
    else
      unknownKinds.push({
        object: objectName(object),
        message: `no schema for ${object.apiVersion} ${object.kind}`,
      });
  }
  return [...unknownKinds, ...schemaProblems(modelled), ...unknownFields(modelled)];
}
