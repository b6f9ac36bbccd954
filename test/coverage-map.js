// Coverage is measured over the product's own sources (src/, plugins/, routes/), whichever test
// loads them; test helpers, fixtures and harness code are not product code.
import { readdirSync } from 'node:fs'
import { join } from 'node:path'

function walk (dir) {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? walk(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : [])
}

const sources = ['src', 'lib', 'plugins', 'routes'].flatMap(walk)

export default () => sources
