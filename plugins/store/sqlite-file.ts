// The embedded store's one SQLite file, `<DATA_DIR>/gateway.db`: keys, services and quota counts
// each open their own connection to it (WAL lets them work side by side), the same way.
import { mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { DatabaseSync } from 'node:sqlite'

/** The path of the gateway's SQLite file in `dataDir`. */
export function gatewayDbFile (dataDir: string): string {
  return join(dataDir, 'gateway.db')
}

/**
 * A connection to the gateway's file in WAL mode. `synchronous`: FULL where an acknowledged write
 * must survive kill -9 and power loss (keys, services), NORMAL where losing the last counts to a
 * power cut is acceptable (quota usage).
 */
export function openGatewayDb (dataDir: string, synchronous: 'FULL' | 'NORMAL', busyTimeoutMs = 250): DatabaseSync {
  mkdirSync(dataDir, { recursive: true })
  const db = new DatabaseSync(gatewayDbFile(dataDir), { timeout: busyTimeoutMs })
  db.exec('PRAGMA journal_mode = WAL')
  db.exec(`PRAGMA synchronous = ${synchronous}`)
  return db
}
