// Each connection's telemetry, recorded exactly once when it ends: one access-log line, the Istio TCP
// metrics for its reporter, and flow events (open when established, close or deny when done).
import type { Logger } from 'pino';
import { formatAddress, type SocketAddress } from '../hbone/headers.js';
import type { Workload } from '../model/types.js';
import type { CopyProgress, CopyResult } from '../proxy/copy.js';
import type { ResponseFlag } from '../proxy/response-flags.js';
import type { FlowBus, FlowEvent } from './flows.js';
import { UNKNOWN, workloadLabels, type Metrics, type TcpLabels, type TcpSeries } from './metrics.js';

export type Direction = 'outbound' | 'inbound';

export interface Telemetry {
  readonly node: string;
  readonly logger: Logger;
  readonly metrics: Metrics | undefined;
  readonly flows: FlowBus | undefined;
}

export interface ConnectionFields {
  readonly direction: Direction;
  /** Who reports: by default "source" for outbound and "destination" for inbound. */
  readonly reporter?: 'waypoint';
  readonly src: SocketAddress;
  readonly srcWorkload?: Workload | undefined;
  readonly srcIdentity?: string | undefined;
  dst: SocketAddress;
  dstWorkload?: Workload | undefined;
  dstIdentity?: string | undefined;
  /** "namespace/name" of the service the client addressed. */
  dstService?: string | undefined;
  hboneAddr?: SocketAddress | undefined;
  /** Carried over mutual TLS (HBONE). */
  mtls?: boolean;
}

export interface ConnectionOutcome {
  /** Bytes the client sent to the server, and the server sent back. */
  readonly clientToServer: number;
  readonly serverToClient: number;
  readonly error?: Error | undefined;
  /** Short reason code for failed or denied connections (e.g. "DENIED", "UPSTREAM_CONNECT"). */
  readonly flag?: ResponseFlag | undefined;
}

const principal = (identity: string | undefined): string | undefined => identity?.replace(/^spiffe:\/\//, '');

export class ConnectionRecord {
  readonly fields: ConnectionFields;
  readonly #t: Telemetry;
  readonly #startedAt = process.hrtime.bigint();
  #recorded = false;
  #opened = false;
  readonly #onRecorded: (() => void)[] = [];

  constructor(telemetry: Telemetry, fields: ConnectionFields) {
    this.#t = telemetry;
    this.fields = fields;
  }

  get recorded(): boolean {
    return this.#recorded;
  }

  /** Runs fn once, when the connection's result is recorded (a limiter's slot, an endpoint's load are given back there). */
  onRecorded(fn: () => void): void {
    this.#onRecorded.push(fn);
  }

  /** The connection is established: counted as opened, shown as a flow. */
  opened(): void {
    if (this.#opened) return;
    this.#opened = true;
    this.#series(undefined)?.opened.inc();
    if (this.#t.flows?.watched === true) this.#t.flows.publish(this.#flow('open', { clientToServer: 0, serverToClient: 0 }));
  }

  /** Records a byte copy's end: success, or the error that cut it. */
  track(copy: Promise<CopyResult>, progress: CopyProgress): void {
    copy.then(
      (r) => this.record({ clientToServer: r.aToB, serverToClient: r.bToA }),
      (err: Error) => this.record({ clientToServer: progress.aToB, serverToClient: progress.bToA, error: err, flag: 'CONNECTION_TERMINATED' }),
    );
  }

  record(outcome: ConnectionOutcome): void {
    if (this.#recorded) return;
    this.#recorded = true;
    for (const fn of this.#onRecorded) fn();
    const f = this.fields;
    const durationMs = Number(process.hrtime.bigint() - this.#startedAt) / 1e6;
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
      ...(f.reporter === undefined ? {} : { reporter: f.reporter }),
      bytes_sent: outcome.clientToServer,
      bytes_recv: outcome.serverToClient,
      duration: durationMs,
    };
    if (outcome.error === undefined) this.#t.logger.info(line, 'connection complete');
    else this.#t.logger.warn({ ...line, error: outcome.error.message, response_flags: outcome.flag ?? 'CONNECTION_FAILURE' }, 'connection failed');

    const series = this.#series(outcome.error === undefined ? undefined : (outcome.flag ?? 'CONNECTION_FAILURE'));
    if (series !== undefined) {
      if (this.#opened) {
        series.closed.inc();
        series.received.inc(outcome.clientToServer);
        series.sent.inc(outcome.serverToClient);
      }
      if (outcome.error !== undefined) series.failed.inc();
    }
    if (this.#t.flows?.watched === true) this.#t.flows.publish(this.#flow(outcome.flag === 'DENIED' ? 'deny' : 'close', outcome, durationMs));
  }

  /** This connection's series: its labels are made once per label set, not on every count. */
  #series(flag: ResponseFlag | undefined): TcpSeries | undefined {
    const f = this.fields;
    const key = `${f.direction}|${f.reporter ?? ''}|${workloadKey(f.srcWorkload)}|${f.srcIdentity ?? ''}|${workloadKey(f.dstWorkload)}|${f.dstIdentity ?? ''}|${f.dstService ?? ''}|${f.mtls === true}|${flag ?? ''}`;
    return this.#t.metrics?.tcp(key, () => connectionLabels(f, flag));
  }

  #flow(type: FlowEvent['type'], o: ConnectionOutcome, durationMs = 0): FlowEvent {
    const f = this.fields;
    return {
      type,
      time: new Date().toISOString(),
      node: this.#t.node,
      direction: f.direction,
      src: { addr: formatAddress(f.src), workload: f.srcWorkload?.name, namespace: f.srcWorkload?.namespace, identity: f.srcIdentity },
      dst: { addr: formatAddress(f.dst), workload: f.dstWorkload?.name, namespace: f.dstWorkload?.namespace, identity: f.dstIdentity, service: f.dstService },
      verdict: o.flag === 'DENIED' ? 'denied' : 'allowed',
      bytesSent: o.clientToServer,
      bytesRecv: o.serverToClient,
      durationMs,
      ...(o.error === undefined ? {} : { error: o.error.message }),
      ...(o.flag === undefined ? {} : { flag: o.flag }),
    };
  }
}

/** Workload objects are replaced, never changed, when the state changes: one key per object. */
const workloadKeys = new WeakMap<Workload, string>();
let nextWorkloadKey = 0;
function workloadKey(w: Workload | undefined): string {
  if (w === undefined) return '';
  let k = workloadKeys.get(w);
  if (k === undefined) {
    k = String(nextWorkloadKey++);
    workloadKeys.set(w, k);
  }
  return k;
}

/** Istio's labels for a connection (or a request on it), from who reports it and its two ends. */
export function connectionLabels(f: Omit<ConnectionFields, 'src' | 'dst'>, flag: ResponseFlag | undefined): TcpLabels {
  const [svcNamespace, svcName] = f.dstService?.split('/') ?? [];
  return {
    reporter: f.reporter ?? (f.direction === 'outbound' ? 'source' : 'destination'),
    ...workloadLabels('source', f.srcWorkload, principal(f.srcIdentity)),
    ...workloadLabels('destination', f.dstWorkload, principal(f.dstIdentity)),
    destination_service: svcName === undefined ? UNKNOWN : `${svcName}.${svcNamespace ?? ''}.svc.cluster.local`,
    destination_service_namespace: svcNamespace ?? UNKNOWN,
    destination_service_name: svcName ?? UNKNOWN,
    request_protocol: 'tcp',
    response_flags: flag ?? '-',
    connection_security_policy: f.mtls === true ? 'mutual_tls' : UNKNOWN,
  } as TcpLabels;
}
