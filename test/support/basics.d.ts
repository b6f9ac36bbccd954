/** Anything with tap's teardown, so support code needs no tap import. */
export interface Teardownable { teardown (fn: () => unknown): void }

export function freePort (host?: string): Promise<number>
export function tempDir (t: Teardownable | null, prefix?: string): string
export function sleep (ms: number): Promise<void>
export function until (fn: () => boolean | Promise<boolean>, timeoutMs?: number, everyMs?: number): Promise<boolean>
