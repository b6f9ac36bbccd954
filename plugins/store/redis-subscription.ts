// One way to subscribe a change channel (API keys, services, cache purges) on the store's
// subscriber connection, so a failed SUBSCRIBE is handled in one place: ioredis reports one it
// sent itself after a reconnect on the connection's 'error' event, and a failure of the first
// SUBSCRIBE goes there too. The store's subscriber watch logs it and asks again until it succeeds
// (watchSubscriber in ./index.ts, docs/architecture.md#the-store).
import type { Cluster, Redis } from 'ioredis'

/** Resolves once `channel` is subscribed, or at once when the SUBSCRIBE failed; never rejects. */
export async function subscribeChannel (subscriber: Redis | Cluster, channel: string): Promise<void> {
  try {
    await subscriber.subscribe(channel)
  } catch (err) {
    // Any other error only comes when the connection is closed for good.
    if (isFailedSubscribe(err as Error) && subscriber.listenerCount('error') > 0) subscriber.emit('error', err)
  }
}

/**
 * A SUBSCRIBE that failed, as ioredis reports it: refused (NOPERM) or aborted (the connection
 * dropped before the answer); both errors carry the command and its channels.
 */
export function isFailedSubscribe (err: Error): err is Error & { command: { name: string, args: unknown[] } } {
  const command = (err as { command?: { name?: unknown, args?: unknown } }).command
  return command?.name === 'subscribe' && Array.isArray(command.args)
}
