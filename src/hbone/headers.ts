// CONNECT request headers as ztunnel sends them, and parsing of what arrives.
import { randomBytes } from 'node:crypto';
import { isIP } from 'node:net';
import { formatHostPort, normalIp } from '../model/address.js';

export interface SocketAddress {
  readonly ip: string;
  readonly port: number;
}

/** "ip:port", or RFC 3986 "[v6]:port". */
export function formatAddress(a: SocketAddress): string {
  return formatHostPort(a.ip, a.port);
}

/** Parses "ip:port" or "[v6]:port"; undefined for anything else (host names are not accepted). */
export function parseAuthority(authority: string | undefined): SocketAddress | undefined {
  if (authority === undefined) return undefined;
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([0-9.]+)):(\d{1,5})$/.exec(authority);
  if (m === null) return undefined;
  const text = m[1] ?? m[2] ?? '';
  const port = Number(m[3]);
  const family = isIP(text);
  if (family === 0 || (m[1] !== undefined && family !== 6) || port < 1 || port > 65535) return undefined;
  // One spelling per address: [::FFFF:10.0.0.1] and [FD00::0001] name what 10.0.0.1 and fd00::1 do.
  return { ip: normalIp(text), port };
}

export interface BaggageFields {
  readonly namespace?: string;
  readonly workloadName?: string;
  readonly canonicalService?: string;
  readonly canonicalRevision?: string;
}

export function buildBaggage(b: BaggageFields): string {
  const parts: string[] = [];
  if (b.namespace !== undefined) parts.push(`k8s.namespace.name=${b.namespace}`);
  if (b.workloadName !== undefined) parts.push(`k8s.pod.name=${b.workloadName}`);
  if (b.canonicalService !== undefined) parts.push(`service.name=${b.canonicalService}`);
  if (b.canonicalRevision !== undefined) parts.push(`service.version=${b.canonicalRevision}`);
  return parts.join(',');
}

/** The peer's baggage entries; an entry without a name is skipped (fuzzing found "  =x" kept as ""). */
export function parseBaggage(header: string | undefined): Record<string, string> {
  const entries: [string, string][] = [];
  for (const part of (header ?? '').split(',')) {
    const eq = part.indexOf('=');
    const key = part.slice(0, Math.max(eq, 0)).trim();
    if (key !== '') entries.push([key, part.slice(eq + 1).trim()]);
  }
  // Own properties only: a peer's "__proto__=x" is an entry, never the object's prototype.
  return Object.fromEntries(entries);
}

// Trace ids need uniqueness, not secrecy: draw them from a pool refilled 4 KiB at a time, since one CSPRNG
// call per connection cost ~30 µs of its time (bench/README.md).
const ID_BYTES = 24;
let idPool = Buffer.alloc(0);
let idOffset = 0;

/** W3C traceparent with a fresh trace and span id, not sampled. */
export function newTraceparent(): string {
  if (idOffset + ID_BYTES > idPool.length) {
    idPool = randomBytes(ID_BYTES * 170);
    idOffset = 0;
  }
  const hex = idPool.toString('hex', idOffset, idOffset + ID_BYTES);
  idOffset += ID_BYTES;
  return `00-${hex.slice(0, 32)}-${hex.slice(32)}-00`;
}

export function forwardedFor(src: SocketAddress): string {
  return `for="${formatAddress(src)}"`;
}
