// One way to subscribe a change channel (API keys, services, cache purges) on the store's
// subscriber connection, so a refusal is handled in one place: ioredis reports a SUBSCRIBE that
// Redis refused after a reconnect on the connection's 'error' event, and a refusal of the first
// SUBSCRIBE goes there too. The store's subscriber watch logs it and asks again until allowed
// (watchSubscriber in ./index.ts, docs/operations.md#redis).
import type { Cluster, Redis } from 'ioredis'

/** Resolves once `channel` is subscribed, or at once when Redis refused it; never rejects. */
export async function subscribeChannel (subscriber: Redis | Cluster, channel: string): Promise<void> {
  try {
    await subscriber.subscribe(channel)
  } catch (err) {
    // Only Redis's own refusals carry the command; a connection closed with the command queued
    // is reported by ioredis already, and the subscription is redone after the reconnect.
    if ((err as { command?: unknown }).command !== undefined && subscriber.listenerCount('error') > 0) subscriber.emit('error', err)
  }
}
