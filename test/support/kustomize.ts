// What `kustomize build` does with the features deploy/kubernetes/kustomization.yaml uses, and
// nothing more (no kustomize binary runs here): the `resources` files in order, each YAML document
// an object; each `configMapGenerator` entry turned into a ConfigMap named `<name>-<hash>`, with
// the hash kustomize computes (api/hasher/hasher.go: SHA-256 of the JSON encoding of kind, name
// and data, its first 10 hex digits with 0 1 3 a e replaced by g h k m t), and the references to
// it in pod templates renamed. A kustomization field this renderer does not know is an error, so
// the base cannot grow past what the test really renders.
import { createHash } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { basename, join } from 'node:path'
import { parse, parseAllDocuments } from 'yaml'

export type K8sObject = { apiVersion: string, kind: string, metadata: { name: string, [k: string]: unknown }, [k: string]: unknown }

const KNOWN_FIELDS = new Set(['apiVersion', 'kind', 'resources', 'configMapGenerator'])

/** Go's json.Marshal escapes these (HTML safety); JSON.stringify does not. */
function goJson (value: unknown): string {
  return JSON.stringify(value).replace(/[<>&\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`)
}

function sorted (map: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(map).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
}

/** kustomize's name-suffix hash of a ConfigMap or Secret (keys in Go's sorted map order). */
export function kustomizeHash (object: { kind: string, metadata: { name: string }, data?: Record<string, string>, type?: string }): string {
  const data = sorted(object.data ?? {})
  const encoded = object.kind === 'Secret'
    ? goJson({ data, kind: 'Secret', name: object.metadata.name, type: object.type ?? '' })
    : goJson({ data, kind: 'ConfigMap', name: object.metadata.name })
  const replace: Record<string, string> = { 0: 'g', 1: 'h', 3: 'k', a: 'm', e: 't' }
  return createHash('sha256').update(encoded).digest('hex').slice(0, 10).replace(/[013ae]/g, (c) => replace[c])
}

interface Generator { name: string, files?: string[] }

/** The objects `kustomize build dir` prints, in the order of the kustomization (generated ones last). */
export function renderKustomization (dir: string): K8sObject[] {
  const kustomization = parse(readFileSync(join(dir, 'kustomization.yaml'), 'utf8')) as Record<string, unknown>
  const unknown = Object.keys(kustomization).filter((k) => !KNOWN_FIELDS.has(k))
  if (unknown.length > 0) throw new Error(`kustomization.yaml uses ${unknown.join(', ')}, which this renderer does not implement`)
  const objects: K8sObject[] = []
  for (const file of (kustomization.resources ?? []) as string[]) {
    for (const doc of parseAllDocuments(readFileSync(join(dir, file), 'utf8'))) {
      if (doc.errors.length > 0) throw new Error(`${file}: ${doc.errors[0].message}`)
      const value = doc.toJS() as K8sObject | null
      if (value !== null) objects.push(value)
    }
  }
  const renamed = new Map<string, string>()
  for (const g of (kustomization.configMapGenerator ?? []) as Generator[]) {
    const unknownKeys = Object.keys(g).filter((k) => k !== 'name' && k !== 'files')
    if (unknownKeys.length > 0) throw new Error(`configMapGenerator ${g.name}: ${unknownKeys.join(', ')} is not implemented here`)
    const data: Record<string, string> = {}
    for (const spec of g.files ?? []) {
      // `key=path` or `path` (the key is then the file's name).
      const [key, path] = spec.includes('=') ? spec.split('=', 2) : [basename(spec), spec]
      data[key] = readFileSync(join(dir, path), 'utf8')
    }
    const configMap = { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: g.name }, data }
    const name = `${g.name}-${kustomizeHash(configMap)}`
    renamed.set(g.name, name)
    objects.push({ ...configMap, metadata: { name } })
  }
  for (const o of objects) renameConfigMapRefs(o, renamed)
  return objects
}

/** kustomize's name references from a pod template to a generated ConfigMap. */
function renameConfigMapRefs (o: K8sObject, renamed: Map<string, string>): void {
  const pod = (o.spec as { template?: { spec?: PodSpec } } | undefined)?.template?.spec
  if (pod === undefined) return
  const rename = (ref: { name?: string } | undefined) => {
    if (ref?.name !== undefined && renamed.has(ref.name)) ref.name = renamed.get(ref.name)
  }
  for (const v of pod.volumes ?? []) rename(v.configMap)
  for (const c of [...(pod.containers ?? []), ...(pod.initContainers ?? [])]) {
    for (const e of c.env ?? []) rename(e.valueFrom?.configMapKeyRef)
    for (const e of c.envFrom ?? []) rename(e.configMapRef)
  }
}

interface PodSpec {
  volumes?: Array<{ configMap?: { name?: string } }>
  containers?: ContainerSpec[]
  initContainers?: ContainerSpec[]
}
interface ContainerSpec {
  env?: Array<{ valueFrom?: { configMapKeyRef?: { name?: string } } }>
  envFrom?: Array<{ configMapRef?: { name?: string } }>
}
