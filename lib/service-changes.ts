// Pure helpers of the services admin API (docs/admin-api.md#managing-services): JSON merge patch (RFC 7396) for PATCH, and
// the field-by-field diff that dry runs report and every change logs.
import { isDeepStrictEqual } from 'node:util'

export type Json = null | boolean | number | string | Json[] | { [k: string]: Json }
export type Diff = Record<string, { from: unknown, to: unknown }>

const isObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v)

/** RFC 7396: objects merge member by member, `null` removes a member, anything else replaces. */
export function mergePatch (target: unknown, patch: unknown): unknown {
  if (!isObject(patch)) return patch
  const out: Record<string, unknown> = isObject(target) ? { ...target } : {}
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k]
    else out[k] = mergePatch(out[k], v)
  }
  return out
}

/** Top-level fields that differ, each with its old and new value (null when absent). */
export function diffDefinitions (before: object | null, after: object | null): Diff {
  const a = (before ?? {}) as Record<string, unknown>
  const b = (after ?? {}) as Record<string, unknown>
  const diff: Diff = {}
  for (const k of new Set([...Object.keys(a), ...Object.keys(b)])) {
    if (!isDeepStrictEqual(a[k], b[k])) diff[k] = { from: a[k] ?? null, to: b[k] ?? null }
  }
  return diff
}
