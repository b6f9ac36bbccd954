// The loaded configuration (lib/config.ts) as `fastify.config`. A named plugin rather than a bare
// decorate call, so every plugin that reads it can list 'config' in its dependencies and a wrong
// registration order fails at boot.
import fp from 'fastify-plugin'
import type { Config } from '../lib/config.js'

declare module 'fastify' {
  interface FastifyInstance {
    config: Config
  }
}

export interface ConfigOptions { config: Config }

export default fp<ConfigOptions>(async function config (fastify, opts) {
  fastify.decorate('config', opts.config)
}, { name: 'config', fastify: '5.x' })
