// The process: configuration → buildApp → listen, graceful shutdown on SIGTERM/SIGINT (docs/operations.md),
// and WORKERS=n worker processes sharing the port through node:cluster (docs/operations.md#scaling-out).
import cluster from 'node:cluster'
import { buildApp } from './app.js'
import { ConfigError, configErrorLines, loadConfig, type Config } from '../lib/config.js'
import { listenWithStartupLine } from './startup-line.js'

function readConfig (): Config {
  try {
    return loadConfig()
  } catch (err) {
    if (err instanceof ConfigError) {
      for (const line of configErrorLines(err)) process.stderr.write(line + '\n')
      process.exit(1)
    }
    throw err
  }
}

async function runGateway (config: Config): Promise<void> {
  const app = await buildApp(config)
  // A fault nothing handled (a library's promise rejected without a handler, for one) still ends
  // the process, as Node intends: its state is unknown. It is logged first, as a JSON line like
  // every other, so the log says why the gateway exited (docs/operations.md#logs).
  process.on('uncaughtExceptionMonitor', (err, origin) => {
    app.log.fatal({ err, event: 'process_crashed', origin }, `gateway process crashed (${origin}): ${err.message}`)
  })

  let stopping = false
  const stop = (signal: string): void => {
    if (stopping) {
      // A second signal means "now": skip the drain.
      app.log.warn({ event: 'shutdown_forced', signal }, 'second signal, exiting without draining')
      process.exit(1)
    }
    stopping = true
    // /health turns 503 now; for SHUTDOWN_DELAY_MS the listener still accepts and serves, so load
    // balancers see the 503 and stop sending before anything is refused (docs/operations.md).
    app.lifecycle.startDraining()
    app.log.info({ event: 'shutdown_started', signal, inflight: app.requestEnds.inFlight, delay_ms: config.shutdownDelayMs }, 'shutting down: /health answers 503')
    const drain = (): void => {
      app.log.info({ event: 'shutdown_draining', inflight: app.requestEnds.inFlight }, 'no longer accepting; draining in-flight requests')
      const deadline = setTimeout(() => {
        app.log.error({ event: 'shutdown_timeout', aborted: app.requestEnds.inFlight }, 'drain timed out; closing remaining connections')
        app.server.closeAllConnections()
        process.exit(1)
      }, config.shutdownTimeoutMs)
      deadline.unref()
      app.close().then(() => {
        app.log.info({ event: 'shutdown_complete', inflight: app.requestEnds.inFlight }, 'gateway stopped')
        process.exit(0)
      }, (err: unknown) => {
        app.log.error({ err, event: 'shutdown_failed' }, 'error while shutting down')
        process.exit(1)
      })
    }
    if (config.shutdownDelayMs > 0) setTimeout(drain, config.shutdownDelayMs)
    else drain()
  }
  process.on('SIGTERM', () => stop('SIGTERM'))
  process.on('SIGINT', () => stop('SIGINT'))
  // SERVICES_SOURCE=file: re-read ROUTES_FILE, keeping the running table if it is invalid (docs/admin-api.md#managing-services).
  process.on('SIGHUP', () => { app.services.reloadFile() })

  try {
    await listenWithStartupLine(app, config)
  } catch (err) {
    app.log.error({ err, event: 'listen_failed' }, `cannot listen on ${config.host}:${config.port}`)
    await app.close().catch(() => {})
    process.exit(1)
  }
}

function runPrimary (config: Config): void {
  let stopping = false
  const workers = new Set<number>()
  const fork = (): void => {
    const worker = cluster.fork()
    workers.add(worker.id)
    worker.on('exit', (code) => {
      workers.delete(worker.id)
      if (stopping) {
        if (workers.size === 0) process.exit(0)
      } else {
        process.stderr.write(`worker ${worker.process.pid} exited with code ${code}; starting another\n`)
        setTimeout(fork, 1000).unref()
      }
    })
  }
  for (let i = 0; i < config.workers; i++) fork()
  const stop = (signal: NodeJS.Signals): void => {
    if (stopping) process.exit(1)
    stopping = true
    for (const w of Object.values(cluster.workers ?? {})) w?.process.kill(signal)
    setTimeout(() => process.exit(1), config.shutdownDelayMs + config.shutdownTimeoutMs + 2000).unref()
  }
  process.on('SIGTERM', () => stop('SIGTERM'))
  process.on('SIGINT', () => stop('SIGINT'))
  process.on('SIGHUP', () => {
    for (const w of Object.values(cluster.workers ?? {})) w?.process.kill('SIGHUP')
  })
}

const config = readConfig()
if (config.workers > 1 && cluster.isPrimary) runPrimary(config)
else await runGateway(config)
