// Connections to the daemon's own ports are refused on every entry (outbound capture, SOCKS5, HBONE
// CONNECT, inbound plaintext, same-node hand-over): a daemon that dials itself loops until it runs out
// of descriptors. With capture, a daemon port on any captured pod's IP is the daemon's own transparent
// listener; without it, HBONE is served on each local pod's IP:15008.
import { formatAddress, type SocketAddress } from '../hbone/headers.js';
import type { State } from '../model/state.js';

/** Ports of the daemon itself. */
const DAEMON_PORTS: ReadonlySet<number> = new Set([15001, 15006, 15008]);

/** Why dst is the daemon (this node's or a peer's), or undefined when it is not. */
export function recursionReason(state: State, nodeName: string, dst: SocketAddress): string | undefined {
  if (!DAEMON_PORTS.has(dst.port)) return undefined;
  if (state.node(nodeName)?.ips.includes(dst.ip) === true) return `destination ${formatAddress(dst)} is the daemon itself`;
  const w = state.workloadByIp(dst.ip);
  if (w !== undefined && w.captured) return `destination ${formatAddress(dst)} is the daemon port of captured pod ${w.namespace}/${w.name}`;
  return undefined;
}
