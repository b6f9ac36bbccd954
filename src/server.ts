// The entry point (`node dist/src/server.js`, `npm start`). It checks the Node.js version before
// anything else is loaded: static ESM imports are linked before any code runs, so on an old Node
// `import 'node:sqlite'` would fail with ERR_UNKNOWN_BUILTIN_MODULE before a check in the same
// module graph could say why. Everything else is imported dynamically, after the check.
import { nodeSupported, unsupportedNodeMessage } from '../lib/node-version.js'

if (!nodeSupported(process.versions.node)) {
  process.stderr.write(unsupportedNodeMessage(process.versions.node, process.execPath) + '\n')
  process.exit(1)
}
await import('./run.js')
