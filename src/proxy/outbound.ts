// The outbound side: a captured connection from a local pod is routed (decision first, then I/O) to
// HBONE on the destination's node, the in-process inbound side, or plain TCP.
import type net from 'node:net';
import type { Duplex } from 'node:stream';
import { buildBaggage, forwardedFor, formatAddress, newTraceparent, type SocketAddress } from '../hbone/headers.js';
import { withDeadline } from '../model/deadline.js';
import type { Workload } from '../model/types.js';
import { ConnectionRecord } from '../telemetry/access-log.js';
import type { CopyProgress } from './copy.js';
import { ProxyError } from './errors.js';
import { takeConnectionSlot, type InboundProxy } from './inbound.js';
import { localWorkload } from './inbound-request.js';
import type { ProxyInputs } from './inputs.js';
import { buildOutboundRequest, outerSource, type OutboundRequest } from './outbound-request.js';
import { responseFlag, type ResponseFlag } from './response-flags.js';
import { copyConnection } from './splice-copy.js';

export interface OutboundHooks {
  /** Called once the far side accepted; SOCKS5 sends its success reply here. */
  readonly onEstablished?: () => void;
  /** Called instead when the connection could not be made. */
  readonly onFailed?: (err: Error, flag: ResponseFlag) => void;
  /** Refuse sources that are not captured local workloads (SOCKS5) instead of passing them through. */
  readonly strictSource?: boolean;
}

export class OutboundProxy {
  readonly #pi: ProxyInputs;
  readonly #inbound: InboundProxy;

  constructor(pi: ProxyInputs, inbound: InboundProxy) {
    this.#pi = pi;
    this.#inbound = inbound;
  }

  /** The captured local workload sending from ip, if any. */
  sourceWorkload(ip: string): Workload | undefined {
    return localWorkload(this.#pi.state, this.#pi.nodeName, ip);
  }

  handle(client: net.Socket, src: SocketAddress, dst: SocketAddress, hooks: OutboundHooks = {}): void {
    client.on('error', () => undefined);
    const source = this.sourceWorkload(src.ip);
    const record = new ConnectionRecord(this.#pi.telemetry, {
      direction: 'outbound',
      src,
      srcWorkload: source,
      srcIdentity: source?.identity,
      dst,
    });
    const fail = (err: Error, flag: ResponseFlag): void => {
      record.record({ clientToServer: 0, serverToClient: 0, error: err, flag });
      if (hooks.onFailed !== undefined) hooks.onFailed(err, flag);
      else client.resetAndDestroy();
    };
    const refused = takeConnectionSlot(this.#pi, record, src);
    if (refused !== undefined) return fail(refused, 'CONNECTION_LIMIT');
    let req: OutboundRequest;
    if (source === undefined) {
      if (hooks.strictSource === true) {
        return fail(new ProxyError('PROXY_UNKNOWN_SOURCE', `${src.ip} is not a captured workload on node ${this.#pi.nodeName}`), 'UNKNOWN_SOURCE');
      }
      req = { kind: 'tcp', target: dst, dstWorkload: this.#pi.state.workloadByIp(dst.ip), service: undefined };
    } else {
      req = buildOutboundRequest(this.#pi, source, dst);
    }
    if (req.kind === 'reject') return fail(new ProxyError('PROXY_NO_ENDPOINTS', req.reason), req.flag);
    record.fields.dst = req.target;
    record.fields.dstWorkload = req.dstWorkload;
    record.fields.dstIdentity = req.kind === 'tcp' ? undefined : req.dstWorkload.identity;
    record.fields.dstService = req.service?.uid;
    // Counted against the endpoint (or waypoint pod) until it ends, for the next choice's power of two.
    if (req.dstWorkload !== undefined) record.onRecorded(this.#pi.endpoints.opened(req.dstWorkload.uid));
    if (req.kind === 'hbone') {
      record.fields.hboneAddr = req.nextHop;
      record.fields.mtls = true;
    }

    this.#open(req, source, src).then(
      (upstream) => {
        hooks.onEstablished?.();
        const progress: CopyProgress = { aToB: 0, bToA: 0 };
        record.opened();
        // The copy resumes the client (paused since it was accepted).
        record.track(copyConnection(this.#pi.splice, client, upstream, progress), progress);
      },
      (err: Error) => fail(err, responseFlag(err)),
    );
  }

  async #open(req: Exclude<OutboundRequest, { kind: 'reject' }>, source: Workload | undefined, src: SocketAddress): Promise<Duplex> {
    const { pool, sockets, timeouts } = this.#pi;
    switch (req.kind) {
      case 'tcp':
        return withDeadline(timeouts.upstreamConnectMs, undefined, (signal) => sockets.connect(req.target, src.ip, signal));
      case 'local':
        return (await this.#inbound.open(src, source?.identity, req.target)).upstream;
      case 'hbone': {
        const s = source as Workload;
        return pool.connect({
          key: { srcIdentity: s.identity, dstIdentities: req.dstIdentities, nextHop: req.nextHop, srcIp: outerSource(src.ip, s.ips, req.nextHop.ip) },
          authority: formatAddress(req.target),
          headers: {
            forwarded: forwardedFor(src),
            baggage: buildBaggage({
              namespace: s.namespace,
              workloadName: s.name,
              canonicalService: s.labels['service.istio.io/canonical-name'] ?? s.labels['app'] ?? s.name,
              canonicalRevision: s.labels['service.istio.io/canonical-revision'] ?? s.labels['version'] ?? 'latest',
            }),
            traceparent: newTraceparent(),
          },
        });
      }
    }
  }
}
