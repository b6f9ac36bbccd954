#!/usr/bin/env -S node --max-semi-space-size=16
// The `api-gateway` command (docs/cli.md), as `npx api-gateway …` runs it. npx puts the project's
// node_modules/.bin first on PATH, so `node` here is the Node 24 the project pins (the npm package
// `node`); `--max-semi-space-size=16` is the flag `npm start` gives the gateway. This launcher is
// plain JavaScript any Node can parse: it checks the version before the compiled CLI (which
// imports node:sqlite through the gateway) is loaded, as src/server.ts does for `npm start`.
import { existsSync } from 'node:fs'

const entry = new URL('../dist/src/cli/index.js', import.meta.url)
if (!existsSync(entry)) {
  process.stderr.write('api-gateway: the compiled CLI (dist/src/cli/index.js) is missing; run `npm run build` first\n')
  process.exit(1)
}
const { nodeSupported, SUPPORTED_NODE_RANGE } = await import(new URL('../dist/lib/node-version.js', import.meta.url).href)
if (!nodeSupported(process.versions.node)) {
  process.stderr.write(`api-gateway needs Node.js ${SUPPORTED_NODE_RANGE}; this is Node.js ${process.versions.node} (${process.execPath}). ` +
    'Run it as `npx api-gateway`, which uses the Node the project pins.\n')
  process.exit(1)
}
await import(entry.href)
