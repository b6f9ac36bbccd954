// The benchmark's baseline: bare Fastify + @fastify/http-proxy in front of the backend, logger
// off, every option at its default. It forwards `/bench/*` to the same path on the backend, as the
// gateway's bench service does. Usage: `node bench/baseline.js <backend-url> [port]` (or
// BACKEND_URL= / PORT=). Prints the port it listens on (one line, digits only) once listening.
import Fastify from 'fastify'
import proxy from '@fastify/http-proxy'

const upstream = process.argv[2] ?? process.env.BACKEND_URL
if (!upstream) {
  process.stderr.write('usage: node bench/baseline.js <backend-url> [port]\n')
  process.exit(1)
}

const app = Fastify({ logger: false })
await app.register(proxy, { upstream, prefix: '/bench', rewritePrefix: '/bench' })

const port = Number(process.argv[3] ?? process.env.PORT ?? 0)
await app.listen({ port, host: process.env.HOST ?? '127.0.0.1' })
process.stdout.write(`${app.server.address().port}\n`)

for (const signal of ['SIGTERM', 'SIGINT']) {
  process.once(signal, () => { app.close().then(() => process.exit(0)) })
}
