// The inbound side: every path into a local pod (HBONE, plaintext capture, same-node shortcut) goes
// through open(), which checks the target, asks the authorizer, and connects from the client's IP.
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
import { recursionReason } from './recursion.js';
import { copyConnection } from './splice-copy.js';

export interface InboundOpen {
  readonly upstream: net.Socket;
  readonly workload: Workload;
  readonly decision: AuthzDecision;
}

/** HTTP status for each refusal, applied only at the HBONE edge. */
function statusFor(err: unknown): number {
  if (err instanceof ProxyError) {
    if (err.code === 'PROXY_DENIED') return 401;
    if (err.code === 'PROXY_RECURSION') return 400;
    if (err.code === 'PROXY_UNKNOWN_TARGET' || err.code === 'PROXY_UPSTREAM_CONNECT') return 503;
  }
  return 503;
}

export function flagFor(err: unknown): string {
  if (err instanceof ProxyError) {
    switch (err.code) {
      case 'PROXY_DENIED':
        return 'DENIED';
      case 'PROXY_UNKNOWN_TARGET':
        return 'NO_ROUTE';
      case 'PROXY_UPSTREAM_CONNECT':
        return 'UPSTREAM_CONNECT';
      case 'PROXY_RECURSION':
        return 'RECURSION';
      default:
        return err.code;
    }
  }
  return 'CONNECTION_FAILURE';
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
    const w = this.#pi.state.workloadByIp(ip);
    return w !== undefined && w.node === this.#pi.nodeName && w.captured ? w : undefined;
  }

  /** Checks, authorizes and connects to a local pod from the client's own IP; cancel aborts the connect. */
  async open(src: SocketAddress, srcIdentity: string | undefined, dst: SocketAddress, cancel?: AbortSignal): Promise<InboundOpen> {
    const { authorizer, sockets, timeouts, logger } = this.#pi;
    const workload = this.localWorkload(dst.ip);
    if (workload === undefined) {
      throw new ProxyError('PROXY_UNKNOWN_TARGET', `no captured workload at ${dst.ip} on node ${this.#pi.nodeName}`);
    }
    const loop = recursionReason(this.#pi.state, this.#pi.nodeName, dst);
    if (loop !== undefined) {
      logger.warn({ src: formatAddress(src), srcIdentity: srcIdentity ?? null, dst: formatAddress(dst), reason: loop }, 'connection refused: it would loop');
      throw new ProxyError('PROXY_RECURSION', loop);
    }
    const request: AuthzRequest = { src, dst, srcIdentity, dstWorkload: workload };
    const decision = authorizer.authorize(request);
    if (!decision.allow) {
      logger.warn(
        { src: formatAddress(src), srcIdentity: srcIdentity ?? null, dst: formatAddress(dst), policy: decision.policy ?? null, reason: decision.reason },
        'connection denied by policy',
      );
      throw new ProxyError('PROXY_DENIED', `denied: ${decision.reason}`);
    }
    const upstream = await withDeadline(timeouts.upstreamConnectMs, cancel, (signal) => sockets.connect(dst, src.ip, signal));
    this.#open.set(upstream, request);
    upstream.on('close', () => this.#open.delete(upstream));
    return { upstream, workload, decision };
  }

  /** Serves one HBONE CONNECT stream: 200 and bytes, or 401/503. */
  handleHbone(req: HboneRequest): void {
    const record = new ConnectionRecord(this.#pi.telemetry, {
      direction: 'inbound',
      src: req.src,
      srcWorkload: this.#pi.state.workloadByIp(req.src.ip),
      srcIdentity: req.peerIdentity,
      dst: req.dst,
      dstWorkload: this.localWorkload(req.dst.ip),
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
    this.open(req.src, req.peerIdentity, req.dst, cancel.signal).then(
      ({ upstream, workload }) => {
        req.stream.off('close', onGone);
        record.fields.dstWorkload = workload;
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
        record.record({ clientToServer: 0, serverToClient: 0, error: err, flag: cancel.signal.aborted ? 'DOWNSTREAM_RESET' : flagFor(err) });
        if (!req.stream.destroyed && !req.stream.headersSent) {
          req.stream.respond({ ':status': statusFor(err) }, { endStream: true });
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
    const record = new ConnectionRecord(this.#pi.telemetry, {
      direction: 'inbound',
      src,
      srcWorkload: this.#pi.state.workloadByIp(src.ip),
      dst: origDst,
      dstWorkload: this.localWorkload(origDst.ip),
    });
    const progress: CopyProgress = { aToB: 0, bToA: 0 };
    if (!this.#admit(record, src)) {
      client.resetAndDestroy();
      return;
    }
    this.open(src, undefined, origDst).then(
      ({ upstream, workload }) => {
        record.fields.dstWorkload = workload;
        record.fields.dstIdentity = workload.identity;
        record.opened();
        // The copy resumes the client (paused since it was accepted).
        record.track(copyConnection(this.#pi.splice, client, upstream, progress), progress);
      },
      (err: Error) => {
        record.record({ clientToServer: 0, serverToClient: 0, error: err, flag: flagFor(err) });
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
