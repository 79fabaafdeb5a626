// The per-connection half of the daemon: listeners, the HBONE pool and server, the proxies, limits and
// endpoint choice. It runs in the daemon's own thread (--workers 1) or once per worker thread, fed the
// State and the certificates by the control plane (src/app.ts).
import type net from 'node:net';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import { PolicyEngine } from './authz/engine.js';
import type { Authorizer } from './authz/hook.js';
import type { Config } from './config/config.js';
import type { ListenerKind } from './datapath/capture-program.js';
import { INBOUND_PLAIN_PORT, OUTBOUND_PORT } from './datapath/datapath.js';
import { sendBufferReserver } from './datapath/send-buffer.js';
import { SocketSplicer } from './datapath/socket-splicer.js';
import { listenerFd } from './datapath/transparent-sockets.js';
import { CLIENT_MAX_STREAMS_PER_CONNECTION, HBONE_SEND_BUFFER_BYTES, type HboneTimeouts } from './hbone/constants.js';
import { HbonePool } from './hbone/pool.js';
import { HboneServer } from './hbone/server.js';
import { formatHostPort, normalIp } from './model/address.js';
import type { Certificates } from './identity/cert-manager.js';
import type { State } from './model/state.js';
import { EndpointPicker } from './proxy/endpoint-picker.js';
import { InboundProxy } from './proxy/inbound.js';
import type { ProxyInputs } from './proxy/inputs.js';
import { ConnectionLimiter } from './proxy/limits.js';
import { OutboundProxy } from './proxy/outbound.js';
import type { SocketFactory } from './proxy/sockets.js';
import { handleSocksConnection } from './proxy/socks5.js';
import type { Telemetry } from './telemetry/access-log.js';
import { listenOnceFree } from './takeover.js';

export interface DataplaneOptions {
  readonly config: Config;
  readonly state: State;
  readonly certs: Certificates;
  readonly sockets: SocketFactory;
  readonly telemetry: Telemetry;
  readonly timeouts: HboneTimeouts;
  /** A logger per component (the daemon keeps them all, to change their level). */
  readonly child: (component: string) => Logger;
  readonly authorizer?: Authorizer;
  /** With worker threads: the daemon-wide open-connection counts for --max-connections, and this worker's slot. */
  readonly sharedConnections?: { buffer: SharedArrayBuffer; worker: number };
}

/** A transparent listener's descriptor and which of the daemon's listeners it is. */
export interface CaptureListener {
  readonly kind: ListenerKind;
  readonly fd: number;
}

export interface DataplaneStats {
  readonly pool: { connections: number; streams: number };
  readonly openConnections: number;
  /** Open connections per endpoint (workload uid), for config_dump. */
  readonly endpointLoad: Record<string, number>;
  /** Connections whose bytes the kernel carries now (null: the splice is off). */
  readonly spliced: number | null;
}

export class Dataplane {
  readonly pool: HbonePool;
  readonly hbone: HboneServer;
  readonly inbound: InboundProxy;
  readonly outbound: OutboundProxy;
  readonly limits: ConnectionLimiter;
  readonly endpoints = new EndpointPicker();
  readonly pi: ProxyInputs;
  readonly #config: Config;
  readonly #logger: Logger;
  readonly #captureListeners: net.Server[] = [];
  readonly #hboneListeners = new Map<string, net.Server>();
  readonly #accepted = new Set<net.Socket>();
  #socks: net.Server | undefined;
  #reconciling: Promise<void> = Promise.resolve();
  #closed = false;
  readonly #splice: SocketSplicer | undefined;
  readonly #reserveHboneSendBuffer: (s: net.Socket) => void;

  constructor(o: DataplaneOptions) {
    const { config, sockets, timeouts } = o;
    this.#config = config;
    this.#logger = o.child('dataplane');
    this.#reserveHboneSendBuffer = sendBufferReserver(HBONE_SEND_BUFFER_BYTES, this.#logger);
    this.#splice = config.splice ? this.#loadSplice() : undefined;
    this.limits = new ConnectionLimiter({ maxConnections: config.maxConnections, maxConnectionsPerSource: config.maxConnectionsPerSource }, o.sharedConnections);
    this.pool = new HbonePool({
      certs: o.certs,
      dial: async (dst, srcIp, signal) => {
        const socket = await sockets.connect(dst, srcIp, signal);
        this.#reserveHboneSendBuffer(socket);
        return socket;
      },
      logger: o.child('pool'),
      timeouts,
      maxStreamsPerConnection: Math.min(CLIENT_MAX_STREAMS_PER_CONNECTION, config.maxHboneStreams),
    });
    this.pi = Object.freeze({
      nodeName: config.nodeName,
      trustDomain: config.trustDomain,
      hbonePort: config.hbonePort,
      timeouts: { ...timeouts, upstreamConnectMs: config.upstreamConnectMs },
      state: o.state,
      certs: o.certs,
      pool: this.pool,
      sockets,
      authorizer: o.authorizer ?? new PolicyEngine({ state: o.state, rootNamespace: config.rootNamespace, logger: o.child('authz') }),
      logger: o.child('proxy'),
      telemetry: o.telemetry,
      limits: this.limits,
      endpoints: this.endpoints,
      splice: this.#splice,
    });
    this.inbound = new InboundProxy(this.pi);
    this.outbound = new OutboundProxy(this.pi, this.inbound);
    this.hbone = new HboneServer({
      certs: o.certs,
      trustDomain: config.trustDomain,
      logger: o.child('hbone'),
      timeouts,
      maxConcurrentStreams: config.maxHboneStreams,
      identityFor: (ip) => this.inbound.localWorkload(ip)?.identity,
      onRequest: (req) => this.inbound.handleHbone(req),
    });
  }

  /**
   * The transparent listeners (each in its port's reuseport group, with every other worker's and daemon's);
   * returns their descriptors, for the datapath's listener map.
   */
  async listenCapture(): Promise<CaptureListener[]> {
    const out: CaptureListener[] = [];
    const listen = async (port: number, kind: ListenerKind, handle: (s: net.Socket) => void): Promise<void> => {
      const server = await this.pi.sockets.listen({ host: '0.0.0.0', port, pauseOnConnect: true }, (s) => {
        this.#track(s);
        handle(s);
      });
      this.#captureListeners.push(server);
      const fd = listenerFd(server);
      if (fd !== undefined) out.push({ kind, fd });
    };
    // With IP_TRANSPARENT the accepted socket's local address is the original destination.
    const origDst = (s: net.Socket): { ip: string; port: number } => ({ ip: normalIp(s.localAddress), port: s.localPort ?? 0 });
    const src = (s: net.Socket): { ip: string; port: number } => ({ ip: normalIp(s.remoteAddress), port: s.remotePort ?? 0 });
    await listen(OUTBOUND_PORT, 'outbound', (s) => this.outbound.handle(s, src(s), origDst(s)));
    await listen(INBOUND_PLAIN_PORT, 'inboundPlain', (s) => this.inbound.handlePlaintext(s, origDst(s)));
    await listen(this.#config.hbonePort, 'hbone', (s) => this.#acceptHbone(s));
    return out;
  }

  /** SOCKS5 into the outbound path; after a takeover retried while the old daemon still holds the port. */
  async listenSocks(retryWhileInUse: boolean): Promise<AddressInfo | undefined> {
    const socks = this.#config.socks5;
    if (socks === undefined) return undefined;
    const listen = (): Promise<net.Server> =>
      this.pi.sockets.listen({ host: socks.host, port: socks.port }, (s) => {
        this.#track(s);
        handleSocksConnection(this.pi, this.outbound, s);
      });
    this.#socks = retryWhileInUse ? await listenOnceFree('socks5', listen) : await listen();
    return this.#socks.address() as AddressInfo;
  }

  get socksAddress(): AddressInfo | undefined {
    return this.#socks?.address() as AddressInfo | undefined;
  }

  /** After a State change: re-check open connections; without eBPF, serve HBONE on each local captured pod's IP. */
  onStateChange(localCapturedIps: ReadonlySet<string>): void {
    // The policy engine translates a new snapshot's policies on first use, whichever listener runs first.
    this.inbound.reauthorize();
    if (this.#config.capture !== 'ebpf') this.#reconciling = this.#reconciling.then(() => this.#reconcileHboneListeners(localCapturedIps));
  }

  /** Resolves once the HBONE listeners match the last State (without eBPF). */
  get reconciled(): Promise<void> {
    return this.#reconciling;
  }

  stats(): DataplaneStats {
    return { pool: this.pool.stats, openConnections: this.limits.open, endpointLoad: this.endpoints.loads(), spliced: this.#splice?.spliced ?? null };
  }

  /** Stops accepting at once: queued connections of the transparent listeners move to the rest of their groups. */
  closeListeners(): void {
    for (const s of this.#captureListeners) s.close();
    this.#socks?.close();
  }

  /** The kernel splice of plain TCP connections; without it the daemon copies them. */
  #loadSplice(): SocketSplicer | undefined {
    try {
      return SocketSplicer.open();
    } catch (err) {
      this.#logger.warn({ err: (err as Error).message }, 'socket splice unavailable: plain TCP connections are copied by the daemon');
      return undefined;
    }
  }

  /** Closes listeners, sends GOAWAY, waits for open connections up to the deadline, cuts the rest; returns how many were cut. */
  async drain(deadlineMs: number): Promise<number> {
    if (this.#closed) return 0;
    this.#closed = true;
    this.closeListeners();
    await this.#reconciling;
    for (const s of this.#hboneListeners.values()) s.close();
    this.#hboneListeners.clear();
    this.hbone.close();
    this.pool.close();
    const deadline = Date.now() + deadlineMs;
    while (this.#accepted.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    const cut = this.#accepted.size;
    for (const s of this.#accepted) s.destroy();
    this.hbone.destroy();
    this.pool.destroy();
    this.inbound.destroy();
    this.#splice?.close();
    return cut;
  }

  /**
   * A crash: every pod connection gets a reset (never a FIN it could take for a complete reply), and every
   * HBONE connection is cut so that its peers reset theirs.
   */
  resetAll(): void {
    this.#closed = true;
    this.closeListeners();
    for (const s of this.#accepted) s.resetAndDestroy();
    this.inbound.destroy();
    this.hbone.destroy();
    this.pool.destroy();
  }

  get openSockets(): number {
    return this.#accepted.size;
  }

  /** An accepted HBONE connection, with a send buffer that never makes its session stop reading. */
  #acceptHbone(s: net.Socket): void {
    this.#reserveHboneSendBuffer(s);
    void this.hbone.accept(s);
  }

  #track(s: net.Socket): void {
    this.#accepted.add(s);
    s.on('close', () => this.#accepted.delete(s));
  }

  async #reconcileHboneListeners(ips: ReadonlySet<string>): Promise<void> {
    if (this.#closed) return;
    for (const [ip, server] of this.#hboneListeners) {
      if (!ips.has(ip)) {
        server.close();
        this.#hboneListeners.delete(ip);
      }
    }
    for (const ip of ips) {
      if (this.#hboneListeners.has(ip)) continue;
      try {
        const server = await this.pi.sockets.listen({ host: ip, port: this.#config.hbonePort, pauseOnConnect: true }, (s) => {
          this.#track(s);
          this.#acceptHbone(s);
        });
        this.#hboneListeners.set(ip, server);
        this.#logger.debug({ address: `${formatHostPort(ip, this.#config.hbonePort)}` }, 'hbone listening');
      } catch (err) {
        this.#logger.error({ err: (err as Error).message, ip }, 'cannot serve hbone for workload');
      }
    }
  }
}
