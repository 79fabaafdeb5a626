// Node network namespace settings the capture needs (DESIGN §6), applied at start and removed at stop:
// assigned packets carry fwmark 0x400 and must be routed to the local stack, early demux must be off
// (the daemon's source-spoofed sockets would swallow a pod's own packets), and forwarding stays on.
// tcp_tw_reuse=1: the daemon's upstream sockets leave from the client pod's IP and close first, so every
// short connection also leaves a TIME_WAIT here, per (client IP, server) pair; past ~14,000 of them
// connect() to that server slowed from ~2,300 to ~450/s (bench/README.md). Reuse is safe with TCP
// timestamps (RFC 6191) and applies to outgoing connections only. tcp_migrate_req=1: a transparent
// listener that closes (the old daemon in an upgrade) hands its queued connections to the rest of its
// reuseport group instead of resetting them.
// The values found before the first daemon changed them are kept in /run, per network namespace, so that
// a daemon that takes over (or starts after a crash) restores those, not its predecessor's.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { DatapathError } from './errors.js';

export const ASSIGN_MARK = 0x400;
const RULE_PREF = '9000';
const TABLE = '100';
const SYSCTLS = {
  '/proc/sys/net/ipv4/tcp_early_demux': '0',
  '/proc/sys/net/ipv4/ip_forward': '1',
  '/proc/sys/net/ipv4/tcp_tw_reuse': '1',
  '/proc/sys/net/ipv4/tcp_migrate_req': '1',
} as const;

export const NODE_CONFIG_DIR = process.env['ZTUNNEL_RUN_DIR'] ?? '/run/ztunnel-ts';

/** Where the original values for this network namespace are kept (its inode names it). */
export function originalsFile(netnsPath = '/proc/self/ns/net'): string {
  return join(NODE_CONFIG_DIR, `node-config.${statSync(netnsPath).ino}.json`);
}

function ip(args: string[]): string {
  try {
    return execFileSync('ip', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new DatapathError('DATAPATH_NODE_CONFIG', `ip ${args.join(' ')}: ${(e.stderr ?? e.message).trim()}`);
  }
}

/** Assigned packets (fwmark) of one family go to the local stack: an ip rule and a local default route. */
function localDelivery(family: '-4' | '-6'): void {
  const added = !ip([family, 'rule', 'show', 'pref', RULE_PREF]).includes('fwmark');
  if (added) ip([family, 'rule', 'add', 'fwmark', `0x${ASSIGN_MARK.toString(16)}/0xfff`, 'lookup', TABLE, 'pref', RULE_PREF]);
  try {
    ip([family, 'route', 'replace', 'local', family === '-4' ? '0.0.0.0/0' : '::/0', 'dev', 'lo', 'table', TABLE]);
  } catch (err) {
    // Half a setup is none: the rule goes again (IPv6 disabled on lo refuses the route, not the rule).
    if (added) ip([family, 'rule', 'del', 'pref', RULE_PREF]);
    throw err;
  }
}

export class NodeConfig {
  readonly #previous = new Map<string, string>();
  #applied = false;
  #ipv6 = false;

  /** Applies the settings; says whether IPv6 is captured too, and if not, why. */
  apply(): { ipv6: string } {
    const file = originalsFile();
    const kept = existsSync(file) ? (JSON.parse(readFileSync(file, 'utf8')) as Record<string, string>) : undefined;
    for (const path of Object.keys(SYSCTLS)) this.#previous.set(path, kept?.[path] ?? readFileSync(path, 'utf8').trim());
    if (kept === undefined) {
      mkdirSync(NODE_CONFIG_DIR, { recursive: true, mode: 0o700 });
      writeFileSync(file, JSON.stringify(Object.fromEntries(this.#previous)));
    }
    for (const [path, value] of Object.entries(SYSCTLS)) writeFileSync(path, value);
    localDelivery('-4');
    this.#applied = true;
    // IPv6 is optional: a node with IPv6 disabled (or a kernel without it) captures IPv4 only and is ready.
    try {
      localDelivery('-6');
      this.#ipv6 = true;
    } catch (err) {
      this.#ipv6 = false;
      return { ipv6: `not captured: ${(err as Error).message}` };
    }
    return { ipv6: 'captured' };
  }

  /** Whether the IPv6 rule and route are in place (the node has IPv6). */
  get ipv6(): boolean {
    return this.#ipv6;
  }

  remove(): void {
    if (!this.#applied) return;
    this.#applied = false;
    try {
      ip(['-4', 'rule', 'del', 'pref', RULE_PREF]);
      ip(['-4', 'route', 'del', 'local', '0.0.0.0/0', 'dev', 'lo', 'table', TABLE]);
      if (this.#ipv6) {
        ip(['-6', 'rule', 'del', 'pref', RULE_PREF]);
        ip(['-6', 'route', 'del', 'local', '::/0', 'dev', 'lo', 'table', TABLE]);
      }
    } finally {
      for (const [path, value] of this.#previous) writeFileSync(path, value);
      rmSync(originalsFile(), { force: true });
    }
  }

  /** Leaves everything in place for the daemon that took over (it restores the originals at its clean stop). */
  release(): void {
    this.#applied = false;
  }
}

/** The interface the node routes an IP through: a pod's host-side veth. */
export function interfaceFor(address: string): string | undefined {
  try {
    const routes = JSON.parse(ip(['-j', 'route', 'get', address])) as { dev?: string; type?: string }[];
    const dev = routes[0]?.dev;
    return dev === undefined || dev === 'lo' ? undefined : dev;
  } catch {
    return undefined;
  }
}
