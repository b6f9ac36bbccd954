// The gateway's version, from package.json (found by walking up: the file sits one level higher
// when running compiled code from dist/).
import { existsSync, readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

function findVersion (): string {
  let dir = dirname(fileURLToPath(import.meta.url))
  for (let i = 0; i < 4; i++) {
    const file = join(dir, 'package.json')
    if (existsSync(file)) return (JSON.parse(readFileSync(file, 'utf8')) as { version: string }).version
    dir = dirname(dir)
  }
  return '0.0.0'
}

export const VERSION = findVersion()
