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
    // A refusal (NOPERM) or an abort (the connection dropped before the answer) carries the
    // command; an error without one only comes when the connection is closed for good.
    if ((err as { command?: unknown }).command !== undefined && subscriber.listenerCount('error') > 0) subscriber.emit('error', err)
  }
}
