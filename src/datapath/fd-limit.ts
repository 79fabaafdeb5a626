// The descriptor limit: each proxied connection holds two or three sockets, and a daemon that runs out
// refuses everything. At start the soft limit is raised to the hard one (what `ulimit -n` permits), as
// ztunnel and Envoy do, and both are reported in config_dump.
import { DatapathError } from './errors.js';
import { c, errno } from './ffi.js';

const RLIMIT_NOFILE = 7;

export interface FdLimit {
  readonly soft: number;
  readonly hard: number;
  /** The soft limit before the daemon raised it. */
  readonly was: number;
}

function read(): { soft: bigint; hard: bigint } {
  const buf = Buffer.alloc(16); // struct rlimit { rlim_t cur, max }
  if ((c.getrlimit(RLIMIT_NOFILE, buf) as number) !== 0) throw new DatapathError('DATAPATH_RLIMIT', 'getrlimit(RLIMIT_NOFILE)', -errno());
  return { soft: buf.readBigUInt64LE(0), hard: buf.readBigUInt64LE(8) };
}

export function raiseFdLimit(): FdLimit {
  const before = read();
  if (before.soft < before.hard) {
    const buf = Buffer.alloc(16);
    buf.writeBigUInt64LE(before.hard, 0);
    buf.writeBigUInt64LE(before.hard, 8);
    if ((c.setrlimit(RLIMIT_NOFILE, buf) as number) !== 0) throw new DatapathError('DATAPATH_RLIMIT', 'setrlimit(RLIMIT_NOFILE)', -errno());
  }
  const after = read();
  return { soft: Number(after.soft), hard: Number(after.hard), was: Number(before.soft) };
}
