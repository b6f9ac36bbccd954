// Per-service IP rules (docs/policies.md#ip-rules): `ipAllow` / `ipDeny` CIDR lists compiled once
// into node's net.BlockList, matched against the client IP as the rate limiter resolves it
// (request.ip, after TRUST_PROXY). Deny wins; with an allow list, only listed addresses pass.
import { BlockList, isIP } from 'node:net'

/** `address/bits` or a bare address (a /32 or /128), IPv4 or IPv6, with the prefix in range. */
export function parseCidr (value: string): { address: string, prefix: number, family: 'ipv4' | 'ipv6' } | null {
  const slash = value.indexOf('/')
  const address = slash === -1 ? value : value.slice(0, slash)
  const family = isIP(address)
  if (family === 0) return null
  const max = family === 4 ? 32 : 128
  if (slash === -1) return { address, prefix: max, family: family === 4 ? 'ipv4' : 'ipv6' }
  const bits = value.slice(slash + 1)
  if (!/^\d{1,3}$/.test(bits) || Number(bits) > max) return null
  return { address, prefix: Number(bits), family: family === 4 ? 'ipv4' : 'ipv6' }
}

function blockList (cidrs: readonly string[]): BlockList {
  const list = new BlockList()
  for (const cidr of cidrs) {
    const c = parseCidr(cidr)
    if (c === null) throw new Error(`not a CIDR: ${cidr}`)
    list.addSubnet(c.address, c.prefix, c.family)
  }
  return list
}

/** An IPv4 address as Node reports it on a dual-stack socket (`::ffff:1.2.3.4`), as plain IPv4. */
function plain (ip: string): { address: string, family: 'ipv4' | 'ipv6' } {
  if (ip.startsWith('::ffff:') && isIP(ip.slice(7)) === 4) return { address: ip.slice(7), family: 'ipv4' }
  return { address: ip, family: isIP(ip) === 6 ? 'ipv6' : 'ipv4' }
}

/**
 * The check for one service: `(ip) => true` when the address may call it. Null when the service
 * has no rules, so the proxy does no work at all for it. An address that is not an IP (never
 * from a socket) is refused when any rule exists.
 */
export function compileIpRules (allow: readonly string[] | undefined, deny: readonly string[] | undefined): ((ip: string) => boolean) | null {
  const hasAllow = allow !== undefined && allow.length > 0
  const hasDeny = deny !== undefined && deny.length > 0
  if (!hasAllow && !hasDeny) return null
  const allowed = hasAllow ? blockList(allow) : null
  const denied = hasDeny ? blockList(deny) : null
  return (ip: string): boolean => {
    if (isIP(ip) === 0) return false
    const { address, family } = plain(ip)
    if (denied !== null && denied.check(address, family)) return false
    return allowed === null || allowed.check(address, family)
  }
}
