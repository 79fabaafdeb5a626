// One access-log line per finished connection, written exactly once.
import type { Logger } from 'pino';
import { formatAddress, type SocketAddress } from '../hbone/headers.js';
import type { Workload } from '../model/types.js';

export type Direction = 'outbound' | 'inbound';

export interface ConnectionFields {
  readonly direction: Direction;
  readonly src: SocketAddress;
  readonly srcWorkload?: Workload | undefined;
  readonly srcIdentity?: string | undefined;
  dst: SocketAddress;
  dstWorkload?: Workload | undefined;
  dstIdentity?: string | undefined;
  dstService?: string | undefined;
  hboneAddr?: SocketAddress | undefined;
}

export interface ConnectionOutcome {
  readonly bytesSent: number;
  readonly bytesRecv: number;
  readonly error?: Error | undefined;
  /** Short reason code for failed or denied connections (e.g. "DENIED", "UPSTREAM_CONNECT"). */
  readonly flag?: string | undefined;
}

export class ConnectionRecord {
  readonly fields: ConnectionFields;
  readonly #logger: Logger;
  readonly #startedAt = process.hrtime.bigint();
  #recorded = false;

  constructor(logger: Logger, fields: ConnectionFields) {
    this.#logger = logger;
    this.fields = fields;
  }

  get recorded(): boolean {
    return this.#recorded;
  }

  record(outcome: ConnectionOutcome): void {
    if (this.#recorded) return;
    this.#recorded = true;
    const f = this.fields;
    const line = {
      'src.addr': formatAddress(f.src),
      'src.workload': f.srcWorkload?.name,
      'src.namespace': f.srcWorkload?.namespace,
      'src.identity': f.srcIdentity,
      'dst.addr': formatAddress(f.dst),
      'dst.hbone_addr': f.hboneAddr === undefined ? undefined : formatAddress(f.hboneAddr),
      'dst.service': f.dstService,
      'dst.workload': f.dstWorkload?.name,
      'dst.namespace': f.dstWorkload?.namespace,
      'dst.identity': f.dstIdentity,
      direction: f.direction,
      bytes_sent: outcome.bytesSent,
      bytes_recv: outcome.bytesRecv,
      duration_ms: Number(process.hrtime.bigint() - this.#startedAt) / 1e6,
    };
    if (outcome.error === undefined) this.#logger.info(line, 'connection complete');
    else this.#logger.warn({ ...line, error: outcome.error.message, flag: outcome.flag }, 'connection failed');
  }
}
