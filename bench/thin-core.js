// The benchmark's second baseline, the "thin core": bare Fastify (logger off) and one catch-all
// route handler on undici's Pool, written by hand — no @fastify/reply-from, no
// @fastify/http-proxy. It forwards `/bench/*` to the same path on the backend (method, path and
// query, headers minus hop-by-hop ones, streamed body) and streams the answer back: the ceiling of
// a Fastify-based proxy. Usage: `node bench/thin-core.js <backend-url> [port]` (or BACKEND_URL= /
// PORT=). Prints the port it listens on (one line, digits only) once listening.
import Fastify from 'fastify'
import { Pool } from 'undici'

const upstream = process.argv[2] ?? process.env.BACKEND_URL
if (!upstream) {
  process.stderr.write('usage: node bench/thin-core.js <backend-url> [port]\n')
  process.exit(1)
}
const pool = new Pool(upstream, { keepAliveTimeout: 60_000 })
const host = new URL(upstream).host
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade', 'host'])

const app = Fastify({ logger: false })
// No body parsing: a request body reaches the handler as the raw stream, whatever its type.
app.removeAllContentTypeParsers()
app.addContentTypeParser('*', (request, payload, done) => done(null, payload))

async function forward (request, reply) {
  const headers = { host }
  for (const name in request.headers) if (!HOP_BY_HOP.has(name)) headers[name] = request.headers[name]
  const hasBody = request.method !== 'GET' && request.method !== 'HEAD'
  let res
  try {
    res = await pool.request({ method: request.method, path: request.url, headers, body: hasBody ? request.body : undefined })
  } catch {
    return reply.code(502).send({ error: 'Bad Gateway' })
  }
  reply.code(res.statusCode)
  for (const name in res.headers) if (!HOP_BY_HOP.has(name)) reply.header(name, res.headers[name])
  return reply.send(res.body)
}
app.all('/bench', forward)
app.all('/bench/*', forward)

const port = Number(process.argv[3] ?? process.env.PORT ?? 0)
await app.listen({ port, host: process.env.HOST ?? '127.0.0.1' })
process.stdout.write(`${app.server.address().port}\n`)

for (const signal of ['SIGTERM', 'SIGINT']) {
  process.once(signal, () => { app.close().then(() => pool.close()).then(() => process.exit(0)) })
}
