// `api-gateway check` (docs/cli.md): the configuration start-up would build, from the same
// environment, `.env` and ROUTES_FILE, through the same loadConfig; on a problem, the same
// `config error: …` lines on stderr and exit status 1. Nothing is bound, opened or connected.
import { ConfigError, configErrorLines, loadConfig } from '../../lib/config.js'
import { describeStore } from '../startup-line.js'
import { parseCommand, printJson, type CliIo } from './io.js'

export function check (args: string[], io: CliIo): number {
  const { values } = parseCommand(args, { json: { type: 'boolean' } }, [])
  let config
  try {
    config = loadConfig(io.env, { cwd: io.cwd })
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err
    for (const line of configErrorLines(err)) io.stderr.write(line + '\n')
    if (values.json === true) printJson(io, { ok: false, problems: err.problems })
    return 1
  }
  const admin = config.adminListener === null ? 'on the public listener' : `on ${config.adminListener.host}:${config.adminListener.port}`
  const summary = {
    ok: true,
    listen: `${config.host}:${config.port}`,
    store: describeStore(config),
    services: config.services.map((s) => s.name),
    services_source: config.servicesSource,
    routes_file: config.routesFile,
    admin_auth: config.admin.authEnabled,
    admin_listener: config.adminListener === null ? null : `${config.adminListener.host}:${config.adminListener.port}`
  }
  if (values.json === true) {
    printJson(io, summary)
    return 0
  }
  io.stdout.write(`configuration ok: listen ${summary.listen}, store ${summary.store}, ` +
    `${config.services.length} service(s) (${config.servicesSource}: ${config.routesFile ?? 'default services'}), ` +
    `admin ${admin}, admin auth ${config.admin.authEnabled ? 'on' : 'OFF'}\n`)
  return 0
}
