// URL rules shared by the environment and the routes file: what counts as an http(s) URL, and a
// backend origin (the request path is appended to it).
import { z } from 'zod'

export const httpUrl = () => z.string().trim().refine(isHttpUrl, 'must be an http:// or https:// URL')
/** A backend is an origin: the request path is appended to it unchanged (or without the prefix). */
export const backendUrl = () => httpUrl().refine(isOrigin, 'must be an origin like http://host:port, without a path or query')

export function isHttpUrl (value: string): boolean {
  try {
    const u = new URL(value)
    return (u.protocol === 'http:' || u.protocol === 'https:') && u.hostname !== ''
  } catch {
    return false
  }
}

function isOrigin (value: string): boolean {
  try {
    const u = new URL(value)
    return u.pathname === '/' && u.search === '' && u.hash === '' && u.username === '' && u.password === ''
  } catch {
    return false
  }
}
