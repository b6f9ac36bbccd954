// Fastify gives every request a logger bound to its id: pino's child(), an object and a serialized
// binding per request. Most requests log nothing but their access line, which names the id itself
// (plugins/access-log.ts), so the request's logger makes that child on the first line it writes.
// A request that logs nothing else pays for one small object. Lines come out exactly as the
// child's would: pino's own child writes them.
import type { FastifyBaseLogger } from 'fastify'
import type { Bindings, ChildLoggerOptions } from 'pino'

type Level = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace'

/** Whether `logger` writes lines at `level`: pino's isLevelEnabled, and true for a logger without one. */
export function levelEnabled (logger: FastifyBaseLogger, level: string): boolean {
  return (logger as FastifyBaseLogger & { isLevelEnabled?: (level: string) => boolean }).isLevelEnabled?.(level) ?? true
}

/** A request's logger whose pino child is made when it first writes a line. */
export class RequestLogger implements FastifyBaseLogger {
  readonly #parent: FastifyBaseLogger
  readonly #bindings: Bindings
  #child: FastifyBaseLogger | null = null

  constructor (parent: FastifyBaseLogger, bindings: Bindings) {
    this.#parent = parent
    this.#bindings = bindings
  }

  /** Whether the child exists yet (for tests: a request that logged nothing never made one). */
  get materialized (): boolean { return this.#child !== null }

  #logger (): FastifyBaseLogger {
    return (this.#child ??= this.#parent.child(this.#bindings))
  }

  // A disabled level makes no child: pino's own methods for it are no-ops.
  #write (level: Level, args: unknown[]): void {
    if (this.#child === null && !levelEnabled(this.#parent, level)) return
    ;(this.#logger()[level] as (...a: unknown[]) => void)(...args)
  }

  get level (): string { return (this.#child ?? this.#parent).level }
  set level (level: string) { this.#logger().level = level }

  // Methods on the prototype: nothing per request but the object itself.
  fatal (...args: unknown[]): void { this.#write('fatal', args) }
  error (...args: unknown[]): void { this.#write('error', args) }
  warn (...args: unknown[]): void { this.#write('warn', args) }
  info (...args: unknown[]): void { this.#write('info', args) }
  debug (...args: unknown[]): void { this.#write('debug', args) }
  trace (...args: unknown[]): void { this.#write('trace', args) }
  silent (): void {}

  child (bindings: Bindings, options?: ChildLoggerOptions): FastifyBaseLogger {
    return this.#logger().child(bindings, options)
  }

  isLevelEnabled (level: string): boolean {
    return levelEnabled(this.#child ?? this.#parent, level)
  }
}

/**
 * Fastify's `childLoggerFactory`: a RequestLogger, or pino's child at once when the route sets
 * its own level or serializers (no route of the gateway does).
 */
export function lazyRequestLogger (logger: FastifyBaseLogger, bindings: Bindings, options: ChildLoggerOptions): FastifyBaseLogger {
  if (options.level !== undefined || options.serializers !== undefined) return logger.child(bindings, options)
  return new RequestLogger(logger, bindings)
}
