// The inbound side: every path into a local pod (HBONE, plaintext capture, same-node shortcut) is decided
// once (buildInboundRequest: the target, loops, the authorizer), then connected from the client's IP.
import http2 from 'node:http2';
import type net from 'node:net';
import type { AuthzDecision, AuthzRequest } from '../authz/hook.js';
import type { HboneRequest } from '../hbone/server.js';
import { formatAddress, type SocketAddress } from '../hbone/headers.js';
import { normalIp } from '../model/address.js';
import { withDeadline } from '../model/deadline.js';
import type { Workload } from '../model/types.js';
import { ConnectionRecord } from '../telemetry/access-log.js';
import { copyBidirectional, type CopyProgress } from './copy.js';
import { ProxyError } from './errors.js';
import type { ProxyInputs } from './inputs.js';
import { buildInboundRequest, localWorkload, type InboundRequest } from './inbound-request.js';
import { refusalFor, responseFlag } from './response-flags.js';
import { copyConnection } from './splice-copy.js';

export interface InboundOpen {
  readonly upstream: net.Socket;
  readonly workload: Workload;
  readonly decision: AuthzDecision;
}

/**
 * Takes a slot for a connection from src, held until its result is recorded; at a limit, the error
 * (flag CONNECTION_LIMIT) for the caller to record. Every entry of the daemon goes through here.
 */
export function takeConnectionSlot(pi: ProxyInputs, record: ConnectionRecord, src: SocketAddress): ProxyError | undefined {
  const admission = pi.limits.admit(src.ip);
  if (!admission.admitted) return new ProxyError('PROXY_LIMIT', `refused: ${admission.reason}`);
  record.onRecorded(admission.release);
  return undefined;
}

export class InboundProxy {
  readonly #pi: ProxyInputs;
  /** Open upstream connections and the request they were authorized for, for re-evaluation. */
  readonly #open = new Map<net.Socket, AuthzRequest>();

  constructor(pi: ProxyInputs) {
    this.#pi = pi;
  }

  /** The captured local workload at ip, if any. */
  localWorkload(ip: string): Workload | undefined {
    return localWorkload(this.#pi.state, this.#pi.nodeName, ip);
  }

  /** Decides, then connects to the local pod from the client's own IP (the same-node hand-over's entry). */
  async open(src: SocketAddress, srcIdentity: string | undefined, dst: SocketAddress, cancel?: AbortSignal): Promise<InboundOpen> {
    return this.#connect(buildInboundRequest(this.#pi, src, srcIdentity, dst), cancel);
  }

  /** Connects an allowed request from the client's own IP; a refused one rejects with its error, its reason logged. */
  async #connect(decided: InboundRequest, cancel?: AbortSignal): Promise<InboundOpen> {
    if (decided.kind === 'refuse') {
      this.#logRefusal(decided);
      throw decided.error;
    }
    const { sockets, timeouts } = this.#pi;
    const { authz, workload, decision } = decided;
    const upstream = await withDeadline(timeouts.upstreamConnectMs, cancel, (signal) => sockets.connect(authz.dst, authz.src.ip, signal));
    this.#open.set(upstream, authz);
    upstream.on('close', () => this.#open.delete(upstream));
    return { upstream, workload, decision };
  }

  #logRefusal(r: Extract<InboundRequest, { kind: 'refuse' }>): void {
    if (r.error.code === 'PROXY_UNKNOWN_TARGET') return; // the access log's NO_ROUTE says it
    const where = { src: formatAddress(r.src), srcIdentity: r.srcIdentity ?? null, dst: formatAddress(r.dst) };
    if (r.decision === undefined) this.#pi.logger.warn({ ...where, reason: r.error.message }, 'connection refused: it would loop');
    else this.#pi.logger.warn({ ...where, policy: r.decision.policy ?? null, reason: r.decision.reason }, 'connection denied by policy');
  }

  /** Serves one HBONE CONNECT stream: 200 and bytes, or 401/503. */
  handleHbone(req: HboneRequest): void {
    const decided = buildInboundRequest(this.#pi, req.src, req.peerIdentity, req.dst);
    const record = new ConnectionRecord(this.#pi.telemetry, {
      direction: 'inbound',
      src: req.src,
      srcWorkload: this.#pi.state.workloadByIp(req.src.ip),
      srcIdentity: req.peerIdentity,
      dst: req.dst,
      dstWorkload: decided.workload,
      dstIdentity: req.localIdentity,
      hboneAddr: req.dst,
      mtls: true,
    });
    const progress: CopyProgress = { aToB: 0, bToA: 0 };
    if (!this.#admit(record, req.src)) {
      if (!req.stream.destroyed) req.stream.respond({ ':status': 503 }, { endStream: true });
      return;
    }
    // A stream the client resets while its upstream is being connected cancels that connect: thousands of
    // CONNECTs sent and reset at once (rapid reset) must not become thousands of connections to the pod.
    const cancel = new AbortController();
    const onGone = (): void => cancel.abort(new Error('the client reset the stream while its upstream was connecting'));
    req.stream.on('close', onGone);
    this.#connect(decided, cancel.signal).then(
      ({ upstream }) => {
        req.stream.off('close', onGone);
        if (req.stream.destroyed || req.stream.closed) {
          upstream.destroy();
          record.record({ clientToServer: 0, serverToClient: 0, error: new Error('client went away'), flag: 'DOWNSTREAM_RESET' });
          return;
        }
        req.stream.respond({ ':status': 200 });
        record.opened();
        record.track(copyBidirectional(req.stream, upstream, progress), progress);
      },
      (err: Error) => {
        req.stream.off('close', onGone);
        const refusal = refusalFor(err);
        record.record({ clientToServer: 0, serverToClient: 0, error: err, flag: cancel.signal.aborted ? 'DOWNSTREAM_RESET' : refusal.flag });
        if (!req.stream.destroyed && !req.stream.headersSent) {
          req.stream.respond({ ':status': refusal.status }, { endStream: true });
        } else {
          req.stream.close(http2.constants.NGHTTP2_CANCEL);
        }
      },
    );
  }

  /** Plaintext from outside the mesh, captured on its way to a local pod (port 15006). */
  handlePlaintext(client: net.Socket, origDst: SocketAddress): void {
    client.on('error', () => undefined);
    const src = { ip: normalIp(client.remoteAddress), port: client.remotePort ?? 0 };
    const decided = buildInboundRequest(this.#pi, src, undefined, origDst);
    const record = new ConnectionRecord(this.#pi.telemetry, {
      direction: 'inbound',
      src,
      srcWorkload: this.#pi.state.workloadByIp(src.ip),
      dst: origDst,
      dstWorkload: decided.workload,
    });
    const progress: CopyProgress = { aToB: 0, bToA: 0 };
    if (!this.#admit(record, src)) {
      client.resetAndDestroy();
      return;
    }
    this.#connect(decided).then(
      ({ upstream, workload }) => {
        record.fields.dstIdentity = workload.identity;
        record.opened();
        // The copy resumes the client (paused since it was accepted).
        record.track(copyConnection(this.#pi.splice, client, upstream, progress), progress);
      },
      (err: Error) => {
        record.record({ clientToServer: 0, serverToClient: 0, error: err, flag: responseFlag(err) });
        client.resetAndDestroy();
      },
    );
  }

  /** A connection slot for src, or false with the refusal recorded. */
  #admit(record: ConnectionRecord, src: SocketAddress): boolean {
    const refused = takeConnectionSlot(this.#pi, record, src);
    if (refused === undefined) return true;
    record.record({ clientToServer: 0, serverToClient: 0, error: refused, flag: 'CONNECTION_LIMIT' });
    return false;
  }

  /** After a policy change: closes every open connection the policies no longer allow. */
  reauthorize(): number {
    const { authorizer, state, logger } = this.#pi;
    let closed = 0;
    for (const [upstream, req] of this.#open) {
      const dstWorkload = state.workloadByIp(req.dst.ip) ?? req.dstWorkload;
      const decision = authorizer.authorize({ ...req, dstWorkload });
      if (decision.allow) continue;
      logger.warn(
        { src: formatAddress(req.src), srcIdentity: req.srcIdentity ?? null, dst: formatAddress(req.dst), policy: decision.policy ?? null, reason: decision.reason },
        'open connection closed: no longer allowed by policy',
      );
      upstream.destroy(new ProxyError('PROXY_DENIED', `closed after a policy change: ${decision.reason}`));
      closed += 1;
    }
    return closed;
  }

  destroy(): void {
    for (const s of this.#open.keys()) s.destroy();
  }
}
