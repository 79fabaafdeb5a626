// IP addresses in one canonical text form, so that every map keyed by an address (the State's indexes,
// the eBPF maps, policy matching) sees one spelling: IPv4 dotted quads, IPv6 in RFC 5952 form, and an
// IPv4-mapped IPv6 address (::ffff:a.b.c.d, as a dual-stack socket reports IPv4 peers) as the IPv4 address.
import ipaddr from 'ipaddr.js';

export type IpFamily = 4 | 6;

/** The canonical form of an IP address, or undefined when text is not one (host names, CIDRs, zones). */
export function canonicalIp(text: string | undefined): string | undefined {
  if (text === undefined || text.includes('%')) return undefined;
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
  const addr = ipaddr.parse(c);
  return Buffer.from(addr.kind() === 'ipv4' ? (addr as ipaddr.IPv4).toIPv4MappedAddress().toByteArray() : addr.toByteArray());
}

/** The address an eBPF map key (16 bytes) stands for, in canonical form. */
export function addressFromKey(key: Buffer): string {
  return normalIp(ipaddr.fromByteArray([...key]).toString());
}
