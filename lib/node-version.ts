// The Node.js versions the gateway runs on: what every runtime dependency's `engines` allows
// (fastify-metrics >=22.19, opossum ^22 || ^24 || ^26) and what node:sqlite needs (22.13, the
// DatabaseSync `timeout` option 22.16). package.json's `engines` says the same (a test checks).
// This file must stay importable by any old Node: plain ES2023, no imports.

/** The supported ranges: [major, lowest minor] of each major line. */
export const SUPPORTED_NODE: ReadonlyArray<readonly [number, number]> = [[22, 19], [24, 0], [26, 0]]

/** `^22.19.0 || ^24.0.0 || ^26.0.0`, as package.json's engines writes it. */
export const SUPPORTED_NODE_RANGE = SUPPORTED_NODE.map(([major, minor]) => `^${major}.${minor}.0`).join(' || ')

/** Whether `version` (e.g. "24.21.0", as in process.versions.node) is in a supported range. */
export function nodeSupported (version: string): boolean {
  const [major, minor] = version.split('.').map(Number)
  return SUPPORTED_NODE.some(([m, lowest]) => major === m && minor >= lowest)
}

/** The one line a direct start on another Node prints before exiting. */
export function unsupportedNodeMessage (version: string, execPath: string): string {
  return `fastify-api-gateway needs Node.js ${SUPPORTED_NODE_RANGE} (node:sqlite, fastify-metrics); ` +
    `this is Node.js ${version} (${execPath}). Use \`npm start\`, which runs the Node 24 the project pins.`
}
