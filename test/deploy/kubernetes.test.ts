// deploy/kubernetes/ (docs/kubernetes.md): the kustomize base rendered as `kustomize build` would
// (test/support/kustomize.ts), every object validated offline against the Kubernetes JSON schemas
// (kubernetes-models), and the gateway's own rules checked on what a cluster would run.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { Deployment } from 'kubernetes-models/apps/v1'
import { HorizontalPodAutoscaler } from 'kubernetes-models/autoscaling/v2'
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1'
import { ConfigMap, Secret, Service } from 'kubernetes-models/v1'
import type { IContainer, IPodSpec, IServicePort } from 'kubernetes-models/v1'
import { ConfigError, KNOWN_VARIABLES, loadConfig } from '../../lib/config.js'
import { kustomizeHash, renderKustomization, type K8sObject } from '../support/kustomize.js'
import { REPO_ROOT } from '../support/gateway-process.js'

const BASE = join(REPO_ROOT, 'deploy/kubernetes')
const objects = renderKustomization(BASE)

const MODELS: Record<string, { new (data: never): { validate (): void } }> = {
  'v1/ConfigMap': ConfigMap,
  'v1/Secret': Secret,
  'v1/Service': Service,
  'apps/v1/Deployment': Deployment,
  'policy/v1/PodDisruptionBudget': PodDisruptionBudget,
  'autoscaling/v2/HorizontalPodAutoscaler': HorizontalPodAutoscaler
}

function one (kind: string, name?: string): K8sObject {
  const found = objects.filter((o) => o.kind === kind && (name === undefined || o.metadata.name === name))
  if (found.length !== 1) throw new Error(`expected one ${kind}${name === undefined ? '' : ` ${name}`}, found ${found.length}`)
  return found[0]
}

const deployment = one('Deployment') as K8sObject & { spec: { selector: { matchLabels: Record<string, string> }, replicas?: number, template: { metadata: { labels: Record<string, string> }, spec: IPodSpec } } }
const pod = deployment.spec.template.spec
const container = pod.containers[0] as IContainer
const env = new Map((container.env ?? []).map((e) => [e.name, e]))
const literal = (name: string): string => {
  const value = env.get(name)?.value
  if (value === undefined) throw new Error(`the Deployment sets no literal ${name}`)
  return value
}
const secret = one('Secret') as K8sObject & { stringData: Record<string, string> }
const configMap = one('ConfigMap') as K8sObject & { data: Record<string, string> }
const services = objects.filter((o) => o.kind === 'Service') as Array<K8sObject & { spec: { type?: string, selector: Record<string, string>, ports: IServicePort[] } }>
const containerPort = (name: string) => container.ports?.find((p) => p.name === name)?.containerPort

t.test('the renderer computes kustomize\'s name hash (a published kustomize build output)', async (t) => {
  // kustomize build of a Secret with these data printed `my-secret-b22th6mh4g` (qlik-oss/kustomize-plugins, SuperSecret README).
  t.equal(kustomizeHash({ kind: 'Secret', type: 'Opaque', metadata: { name: 'my-secret' }, data: { initial: 'd2hhdGV2ZXI=', foo: 'YmFy', baz: 'd2hhdGV2ZXI=' } }), 'b22th6mh4g')
})

t.test('the base renders the objects the gateway needs, and each one is valid against the Kubernetes schemas', async (t) => {
  t.same(objects.map((o) => `${o.kind}/${o.metadata.name}`).sort(), [
    `ConfigMap/${configMap.metadata.name}`,
    'Deployment/api-gateway',
    'HorizontalPodAutoscaler/api-gateway',
    'PodDisruptionBudget/api-gateway',
    'Secret/api-gateway-secrets',
    'Service/api-gateway',
    'Service/api-gateway-admin'
  ])
  t.match(configMap.metadata.name, /^api-gateway-routes-[a-z0-9]{10}$/, 'the routes ConfigMap is named with its content hash')
  for (const o of objects) {
    const Model = MODELS[`${o.apiVersion}/${o.kind}`]
    t.ok(Model, `${o.apiVersion} ${o.kind} has a schema here`)
    t.doesNotThrow(() => new Model(o as never).validate(), `${o.kind}/${o.metadata.name} is valid`)
  }
})

t.test('the schema check really rejects a broken object', async (t) => {
  const broken = structuredClone(deployment) as typeof deployment
  ;(broken.spec.template.spec.containers[0].ports as unknown as Array<{ containerPort: unknown }>)[0].containerPort = 'http'
  t.throws(() => new Deployment(broken as never).validate(), /containerPort must be integer/)
})

t.test('every environment variable the Deployment sets is one the gateway reads', async (t) => {
  for (const name of env.keys()) t.ok(KNOWN_VARIABLES.includes(name), `${name} is a gateway variable`)
  for (const key of Object.keys(secret.stringData)) t.ok(KNOWN_VARIABLES.includes(key), `Secret key ${key} is a gateway variable`)
  for (const e of env.values()) {
    const ref = e.valueFrom?.secretKeyRef
    if (ref === undefined) continue
    t.equal(ref.name, secret.metadata.name, `${e.name} comes from the base's Secret`)
    t.ok(Object.hasOwn(secret.stringData, ref.key), `the Secret has ${ref.key}`)
  }
  t.ok(env.get('ADMIN_PASSWORD')?.valueFrom?.secretKeyRef, 'ADMIN_PASSWORD from the Secret')
  t.ok(env.get('REDIS_URL')?.valueFrom?.secretKeyRef, 'REDIS_URL from the Secret')
  t.equal(literal('STORAGE'), 'redis')
})

t.test('the gateway accepts the configuration the pods get, and refuses it while ADMIN_PASSWORD is the placeholder', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'gw-k8s-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  // The ConfigMap mounted where ROUTES_FILE points.
  const mount = container.volumeMounts?.find((m) => m.name === pod.volumes?.find((v) => v.configMap?.name === configMap.metadata.name)?.name)
  t.ok(mount, 'the routes ConfigMap is mounted')
  const [routesKey] = Object.keys(configMap.data)
  t.equal(literal('ROUTES_FILE'), `${mount?.mountPath}/${routesKey}`, 'ROUTES_FILE is the mounted file')
  const routesFile = join(dir, routesKey)
  writeFileSync(routesFile, configMap.data[routesKey])
  const podEnv: Record<string, string> = {}
  for (const [name, e] of env) podEnv[name] = e.value ?? secret.stringData[e.valueFrom?.secretKeyRef?.key ?? '']
  podEnv.ROUTES_FILE = routesFile

  const placeholder = (() => { try { loadConfig(podEnv, { cwd: dir, dotenv: false }); return [] } catch (err) { return (err as ConfigError).problems } })()
  t.same(placeholder, ['ADMIN_PASSWORD: must be set when ADMIN_AUTH_ENABLED=true (or set ADMIN_AUTH_ENABLED=false)'], 'the only problem of the base as shipped')

  const config = loadConfig({ ...podEnv, ADMIN_PASSWORD: 'set-by-the-overlay' }, { cwd: dir, dotenv: false })
  t.equal(config.storage, 'redis')
  t.equal(config.redis.url, secret.stringData.REDIS_URL)
  t.equal(config.port, containerPort('http'), 'PORT is the container port named http')
  t.same(config.adminListener, { host: '0.0.0.0', port: containerPort('admin') }, 'the admin listener binds the pod address on the port named admin')
  t.equal(config.servicesSource, 'file')
  t.ok(config.services.length > 0)
})

t.test('shutdown: the grace period outlasts SHUTDOWN_DELAY_MS + SHUTDOWN_TIMEOUT_MS', async (t) => {
  const delay = Number(literal('SHUTDOWN_DELAY_MS'))
  const timeout = Number(literal('SHUTDOWN_TIMEOUT_MS'))
  t.ok(delay > 0, 'a delay lets endpoints stop sending before the listener closes')
  t.ok((pod.terminationGracePeriodSeconds ?? 30) * 1000 > delay + timeout,
    `grace ${pod.terminationGracePeriodSeconds} s > ${delay} + ${timeout} ms`)
})

t.test('probes: readiness on /ready and liveness on /health, on the public port', async (t) => {
  t.equal(container.readinessProbe?.httpGet?.path, '/ready')
  t.equal(container.livenessProbe?.httpGet?.path, '/health')
  t.equal(container.readinessProbe?.httpGet?.port, 'http')
  t.equal(container.livenessProbe?.httpGet?.port, 'http')
})

t.test('the pod runs as the image\'s non-root user on a read-only root filesystem, writing only to an emptyDir', async (t) => {
  const dockerfile = readFileSync(join(REPO_ROOT, 'docker/Dockerfile'), 'utf8')
  t.match(dockerfile, /^USER node$/m, 'the image runs as node (uid 1000 in the official Node image)')
  t.match(dockerfile, new RegExp(`^EXPOSE ${containerPort('http')}$`, 'm'), 'the image exposes the http port')
  t.equal(pod.securityContext?.runAsNonRoot, true)
  t.equal(pod.securityContext?.runAsUser, 1000)
  t.equal(container.securityContext?.readOnlyRootFilesystem, true)
  t.equal(container.securityContext?.allowPrivilegeEscalation, false)
  t.same(container.securityContext?.capabilities?.drop, ['ALL'])
  const writable = (container.volumeMounts ?? []).filter((m) => m.readOnly !== true)
  t.same(writable.map((m) => m.mountPath), ['/tmp'])
  for (const m of writable) t.ok(pod.volumes?.find((v) => v.name === m.name)?.emptyDir, `${m.mountPath} is an emptyDir`)
  t.ok(container.resources?.requests?.cpu, 'a CPU request (the autoscaler needs it)')
  t.ok(container.resources?.requests?.memory, 'a memory request')
})

t.test('the admin listener is reachable only through a ClusterIP Service', async (t) => {
  const adminPort = containerPort('admin')
  t.equal(Number(literal('ADMIN_PORT')), adminPort)
  const targets = (p: IServicePort) => p.targetPort === 'admin' || p.targetPort === adminPort
  const exposing = services.filter((s) => s.spec.ports.some(targets))
  t.same(exposing.map((s) => s.metadata.name), ['api-gateway-admin'])
  t.equal(exposing[0].spec.type, 'ClusterIP')
  const pub = services.find((s) => s.metadata.name === 'api-gateway')
  t.same(pub?.spec.ports.map((p) => p.targetPort), ['http'], 'the public Service carries only the http port')
  for (const s of services) t.match(deployment.spec.template.metadata.labels, s.spec.selector, `${s.metadata.name} selects the gateway's pods`)
})

t.test('two replicas at least: the autoscaler targets the Deployment, the disruption budget keeps one serving', async (t) => {
  t.match(deployment.spec.template.metadata.labels, deployment.spec.selector.matchLabels)
  const hpa = one('HorizontalPodAutoscaler') as K8sObject & { spec: { scaleTargetRef: { kind: string, name: string }, minReplicas: number, maxReplicas: number } }
  t.same(hpa.spec.scaleTargetRef, { apiVersion: 'apps/v1', kind: 'Deployment', name: deployment.metadata.name })
  t.equal(hpa.spec.minReplicas, 2)
  t.equal(deployment.spec.replicas, undefined, 'the count is the autoscaler\'s (re-applying does not reset it)')
  const pdb = one('PodDisruptionBudget') as K8sObject & { spec: { maxUnavailable: number, selector: { matchLabels: Record<string, string> } } }
  t.equal(pdb.spec.maxUnavailable, 1)
  t.match(deployment.spec.template.metadata.labels, pdb.spec.selector.matchLabels)
})
