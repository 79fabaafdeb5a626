// IP addresses in one canonical text form, so that every map keyed by an address (the State's indexes,
// the eBPF maps, policy matching) sees one spelling: IPv4 dotted quads, IPv6 in RFC 5952 form, and an
// IPv4-mapped IPv6 address (::ffff:a.b.c.d, as a dual-stack socket reports IPv4 peers) as the IPv4 address.
import ipaddr from 'ipaddr.js';

export type IpFamily = 4 | 6;

// A dotted quad already in canonical form (no leading zeros). Every connection's addresses pass through
// canonicalIp several times, and nearly all are this or its IPv4-mapped spelling: a match is its own
// answer, without ipaddr.js's parse (about 3% of a daemon's time per new connection).
const CANONICAL_QUAD = /^(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)$/;
const MAPPED_PREFIX = '::ffff:';

/** The canonical form of an IP address, or undefined when text is not one (host names, CIDRs, zones). */
export function canonicalIp(text: string | undefined): string | undefined {
  if (text === undefined || text.includes('%')) return undefined;
  if (CANONICAL_QUAD.test(text)) return text;
  if (text.startsWith(MAPPED_PREFIX)) {
    const quad = text.slice(MAPPED_PREFIX.length);
    if (CANONICAL_QUAD.test(quad)) return quad;
  }
  if (!ipaddr.IPv6.isValid(text) && !ipaddr.IPv4.isValidFourPartDecimal(text)) return undefined;
  // process() turns IPv4-mapped IPv6 into IPv4; IPv6.toString() is RFC 5952 (lower case, longest zero run).
  return ipaddr.process(text).toString();
}

/** canonicalIp for addresses the kernel or a trusted source gave us; unparsable text is kept as it is. */
export function normalIp(text: string | undefined): string {
  return canonicalIp(text) ?? text ?? '';
}

/** 4 or 6, for canonical addresses (anything with a colon is IPv6). */
export function ipFamily(ip: string): IpFamily {
  return ip.includes(':') ? 6 : 4;
}

/** The first of ips in family, if any. */
export function ipOfFamily(ips: readonly string[], family: IpFamily): string | undefined {
  return ips.find((ip) => ipFamily(ip) === family);
}

/** "ip:port", or "[ip]:port" for IPv6 (RFC 3986). */
export function formatHostPort(ip: string, port: number): string {
  return ipFamily(ip) === 6 ? `[${ip}]:${port}` : `${ip}:${port}`;
}

/** The 16 bytes the eBPF maps key addresses by: IPv6 as is, IPv4 as IPv4-mapped (::ffff:a.b.c.d). */
export function addressKey(ip: string): Buffer | undefined {
  const c = canonicalIp(ip);
  if (c === undefined) return undefined;
  if (ipFamily(c) === 4) {
    const key = Buffer.alloc(16);
    key[10] = 0xff;
    key[11] = 0xff;
    c.split('.').forEach((octet, i) => (key[12 + i] = Number(octet)));
    return key;
  }
  const addr = ipaddr.parse(c);
  return Buffer.from(addr.kind() === 'ipv4' ? (addr as ipaddr.IPv4).toIPv4MappedAddress().toByteArray() : addr.toByteArray());
}

/** The address an eBPF map key (16 bytes) stands for, in canonical form. */
export function addressFromKey(key: Buffer): string {
  return normalIp(ipaddr.fromByteArray([...key]).toString());
}
