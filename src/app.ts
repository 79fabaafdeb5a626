// Wires one daemon together: state source, certificates, HBONE pool and server, proxies, listeners.
// Components are started in dependency order and closed in reverse.
import type net from 'node:net';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import { PolicyEngine } from './authz/engine.js';
import type { Authorizer } from './authz/hook.js';
import type { Config } from './config/config.js';
import { CLIENT_MAX_STREAMS_PER_CONNECTION, DEFAULT_TIMEOUTS, type HboneTimeouts } from './hbone/constants.js';
import { HbonePool } from './hbone/pool.js';
import { HboneServer } from './hbone/server.js';
import { CertManager } from './identity/cert-manager.js';
import { certificateSource, type CertificateSource } from './identity/source.js';
import { State } from './model/state.js';
import { InboundProxy } from './proxy/inbound.js';
import { EndpointPicker } from './proxy/endpoint-picker.js';
import type { ProxyInputs } from './proxy/inputs.js';
import { OutboundProxy } from './proxy/outbound.js';
import { PlainSocketFactory, type SocketFactory } from './proxy/sockets.js';
import { useProxyBufferSizes } from './proxy/buffers.js';
import { ConnectionLimiter } from './proxy/limits.js';
import { raiseFdLimit, type FdLimit } from './datapath/fd-limit.js';
import { EbpfDatapath, INBOUND_PLAIN_PORT, OUTBOUND_PORT } from './datapath/datapath.js';
import { TransparentSocketFactory } from './datapath/transparent-sockets.js';
import { unmapIPv4 } from './hbone/server.js';
import { handleSocksConnection } from './proxy/socks5.js';
import { ManifestSource } from './sources/manifests.js';
import type { KubeSource } from './sources/kube.js';
import { logLevelSetter, startAdminServer, startMetricsServer, startReadinessServer } from './admin/servers.js';
import type { Telemetry } from './telemetry/access-log.js';
import { FlowBus } from './telemetry/flows.js';
import { Metrics } from './telemetry/metrics.js';
import type http from 'node:http';
import { ConfigError } from './config/config.js';
import { askToDrain, findPredecessor, listenOnceFree } from './takeover.js';

/** How long a new daemon may take to get every local workload's certificate before it takes over. */
const TAKEOVER_READY_MS = 60_000;

export interface AppDeps {
  readonly sockets?: SocketFactory;
  readonly authorizer?: Authorizer;
  readonly timeouts?: Partial<HboneTimeouts>;
  /** Called on POST /quitquitquit (the CLI drains and exits). */
  readonly onQuit?: () => void;
  /** Called on POST /drain from a successor (the CLI hands over and exits). */
  readonly onHandOver?: () => void;
}

export class App {
  readonly config: Config;
  readonly state = new State();
  readonly certs: CertManager;
  readonly pool: HbonePool;
  readonly hbone: HboneServer;
  readonly inbound: InboundProxy;
  readonly outbound: OutboundProxy;
  readonly #logger: Logger;
  /** Every logger this daemon made, so POST /logging changes them all (pino children keep their level). */
  readonly #loggers: Logger[] = [];
  readonly #pi: ProxyInputs;
  readonly #deps: AppDeps;
  readonly metrics: Metrics;
  readonly flows = new FlowBus();
  readonly limits: ConnectionLimiter;
  readonly endpoints = new EndpointPicker();
  #fdLimit: FdLimit | undefined;
  readonly #httpServers: http.Server[] = [];
  readonly #addresses: Record<'admin' | 'metrics' | 'readiness', AddressInfo | undefined> = { admin: undefined, metrics: undefined, readiness: undefined };
  #listening = false;
  readonly #source: ManifestSource | KubeSource;
  readonly #hboneListeners = new Map<string, net.Server>();
  readonly #captureListeners: net.Server[] = [];
  readonly #datapath: EbpfDatapath | undefined;
  readonly #accepted = new Set<net.Socket>();
  #socks: net.Server | undefined;
  #reconciling: Promise<void> = Promise.resolve();
  #closed = false;

  private constructor(config: Config, logger: Logger, certSource: CertificateSource, deps: AppDeps, kube: typeof KubeSource | undefined) {
    this.config = config;
    this.#logger = logger;
    this.#loggers.push(logger);
    this.#deps = deps;
    const child = (component: string): Logger => {
      const l = logger.child({ component });
      this.#loggers.push(l);
      return l;
    };
    const timeouts = { ...DEFAULT_TIMEOUTS, ...deps.timeouts };
    this.limits = new ConnectionLimiter({ maxConnections: config.maxConnections, maxConnectionsPerSource: config.maxConnectionsPerSource });
    const sockets = deps.sockets ?? (config.capture === 'ebpf' ? new TransparentSocketFactory() : new PlainSocketFactory());
    this.certs = new CertManager(certSource, child('certs'));
    this.pool = new HbonePool({
      certs: this.certs,
      dial: (dst, srcIp, signal) => sockets.connect(dst, srcIp, signal),
      logger: child('pool'),
      timeouts,
      maxStreamsPerConnection: Math.min(CLIENT_MAX_STREAMS_PER_CONNECTION, config.maxHboneStreams),
    });
    this.metrics = new Metrics({
      pool: () => this.pool.stats,
      certificates: () => this.certs.snapshot(),
      ebpf: () => this.#datapath?.stats() as Record<string, bigint> | undefined,
    });
    const telemetry: Telemetry = { node: config.nodeName, logger: child('access'), metrics: this.metrics, flows: this.flows };
    this.#pi = Object.freeze({
      nodeName: config.nodeName,
      trustDomain: config.trustDomain,
      hbonePort: config.hbonePort,
      timeouts: { ...timeouts, upstreamConnectMs: config.upstreamConnectMs },
      state: this.state,
      certs: this.certs,
      pool: this.pool,
      sockets,
      authorizer: deps.authorizer ?? new PolicyEngine({ state: this.state, rootNamespace: config.rootNamespace, logger: child('authz') }),
      logger: child('proxy'),
      telemetry,
      limits: this.limits,
      endpoints: this.endpoints,
    });
    this.inbound = new InboundProxy(this.#pi);
    this.outbound = new OutboundProxy(this.#pi, this.inbound);
    this.hbone = new HboneServer({
      certs: this.certs,
      trustDomain: config.trustDomain,
      logger: child('hbone'),
      timeouts,
      maxConcurrentStreams: config.maxHboneStreams,
      identityFor: (ip) => this.inbound.localWorkload(ip)?.identity,
      onRequest: (req) => this.inbound.handleHbone(req),
    });
    this.#datapath =
      config.capture === 'ebpf'
        ? new EbpfDatapath({ state: this.state, nodeName: config.nodeName, uplinks: config.uplinks, hbonePort: config.hbonePort, logger: child('datapath') })
        : undefined;
    this.#source =
      config.kube !== undefined && kube !== undefined
        ? new kube({ state: this.state, trustDomain: config.trustDomain, logger: child('kube'), kubeconfig: config.kube.kubeconfig })
        : new ManifestSource({ path: config.manifests ?? '', state: this.state, trustDomain: config.trustDomain, logger: child('manifests') });
  }

  static async start(config: Config, logger: Logger, deps: AppDeps = {}): Promise<App> {
    useProxyBufferSizes();
    // The Kubernetes client is large: load it only in cluster mode.
    const kube = config.kube === undefined ? undefined : (await import('./sources/kube.js')).KubeSource;
    const app = new App(config, logger, await certificateSource(config.ca, config.trustDomain, config.certTtlMs), deps, kube);
    await app.#start();
    return app;
  }

  async #start(): Promise<void> {
    this.#fdLimit = raiseFdLimit();
    this.#logger.info(this.#fdLimit, 'descriptor limit');
    // An upgrade: this node's daemon is running. Serve alongside it first, then ask it to leave.
    const predecessor = this.config.capture === 'ebpf' ? await findPredecessor(this.config.adminAddress, this.config.nodeName) : undefined;
    if (this.config.takeover && predecessor === undefined) {
      throw new ConfigError(`--takeover: no daemon of node ${this.config.nodeName} answers on ${this.config.adminAddress.host}:${this.config.adminAddress.port}`);
    }
    if (predecessor === undefined) await this.#startHttp();
    this.state.on('change', () => this.#onStateChange());
    await this.#source.start();
    await this.#reconciling;
    if (this.#datapath !== undefined) await this.#startCapture(this.#datapath, predecessor === undefined);
    if (predecessor !== undefined && this.#datapath !== undefined) await this.#takeOver(predecessor, this.#datapath);
    const socks = this.config.socks5;
    if (socks !== undefined) {
      this.#socks = await listenOnceFree('socks5', () =>
        this.#pi.sockets.listen({ host: socks.host, port: socks.port }, (s) => {
          this.#track(s);
          handleSocksConnection(this.#pi, this.outbound, s);
        }),
      );
      this.#logger.info({ address: `${socks.host}:${(this.#socks.address() as AddressInfo).port}` }, 'socks5 listening');
    }
    this.#listening = true;
    this.#logger.info({ node: this.config.nodeName, workloads: this.#localWorkloads().length, takeover: predecessor !== undefined }, 'ztunnel-ts ready');
  }

  /**
   * Our listeners are in the reuseport groups and our maps are full: once every local workload has its
   * certificate, swap our program onto the hooks, tell the running daemon to drain, and take its ports.
   * Until the swap nothing of the old daemon's has changed, so a failure here leaves it serving.
   */
  async #takeOver(predecessor: { host: string; port: number }, datapath: EbpfDatapath): Promise<void> {
    this.#logger.info({ admin: `${predecessor.host}:${predecessor.port}` }, 'taking over from the running daemon');
    const deadline = Date.now() + TAKEOVER_READY_MS;
    const waiting = (): string[] => this.pending().filter((p) => !p.startsWith('listeners'));
    while (waiting().length > 0) {
      if (Date.now() > deadline) throw new Error(`takeover: not ready after ${TAKEOVER_READY_MS} ms (${waiting().join('; ')}); the running daemon was left alone`);
      await new Promise((r) => setTimeout(r, 50));
    }
    datapath.attach();
    await askToDrain(predecessor);
    await this.#startHttp(true);
  }

  /**
   * Admin, metrics and readiness come up first, so readiness can say what is still pending. After a
   * takeover each is retried while the old daemon still holds its port.
   */
  async #startHttp(afterTakeover = false): Promise<void> {
    const c = this.config;
    const bind = <T>(what: string, listen: () => Promise<T>): Promise<T> => (afterTakeover ? listenOnceFree(what, listen) : listen());
    const admin = await bind('admin', () =>
      startAdminServer(c.adminAddress, {
        configDump: () => this.configDump(),
        setLogLevel: logLevelSetter(this.#loggers, this.#logger),
        quit: () => (this.#deps.onQuit ?? (() => void this.drain()))(),
        ...(c.capture === 'ebpf' ? { handOver: () => (this.#deps.onHandOver ?? (() => void this.drain(c.drainMs, { handOver: true })))() } : {}),
        flows: this.flows,
      }),
    );
    this.#httpServers.push(admin.server);
    const metrics = await bind('metrics', () => startMetricsServer(c.metricsAddress, this.metrics));
    this.#httpServers.push(metrics.server);
    const readiness = await bind('readiness', () => startReadinessServer(c.readinessAddress, () => this.pending()));
    this.#httpServers.push(readiness.server);
    this.#addresses.admin = admin.address;
    this.#addresses.metrics = metrics.address;
    this.#addresses.readiness = readiness.address;
  }

  /** Where the admin, metrics and readiness servers listen (port 0 in tests resolves here). */
  get addresses(): Readonly<Record<'admin' | 'metrics' | 'readiness', AddressInfo | undefined>> {
    return this.#addresses;
  }

  /** What readiness waits for: state loaded, listeners up, a certificate for every local workload. */
  pending(): string[] {
    const out: string[] = [];
    if (!this.state.loaded) out.push(this.config.kube === undefined ? 'state: manifests not loaded' : 'state: first full sync with the API server');
    if (!this.#listening) out.push('listeners: not up yet');
    const missing = [...new Set(this.#localWorkloads().map((w) => w.identity))].filter((id) => this.certs.peek(id) === undefined);
    if (missing.length > 0) out.push(`certificates: ${missing.join(', ')}`);
    return out;
  }

  configDump(): unknown {
    const snap = this.state.snapshot;
    const engine = this.#pi.authorizer instanceof PolicyEngine ? this.#pi.authorizer : undefined;
    return {
      node: this.config.nodeName,
      config: { ...this.config },
      workloads: snap.workloads,
      services: snap.services.map((s) => ({
        ...s,
        endpoints: this.state.endpointsOf(s).map((w) => ({ uid: w.uid, ip: w.ip, node: w.node, zone: w.locality.zone ?? null, ...w.health, openConnections: this.endpoints.load(w.uid) })),
      })),
      waypoints: snap.waypoints.map((w) => ({ ...w, pods: this.state.waypointPods(w.uid).map((p) => p.uid) })),
      policies: engine?.policies ?? [],
      certificates: this.certs.snapshot().map((c) => ({
        identity: c.identity,
        serial: c.serial,
        notBefore: c.notBefore.toISOString(),
        notAfter: c.notAfter.toISOString(),
        expiresInSeconds: Math.round((c.notAfter.getTime() - Date.now()) / 1000),
      })),
      manifestErrors: this.manifestErrors.map((e) => e.message),
      pool: this.pool.stats,
      limits: {
        maxConnections: this.config.maxConnections,
        maxConnectionsPerSource: this.config.maxConnectionsPerSource,
        maxHboneStreams: this.config.maxHboneStreams,
        openConnections: this.limits.open,
        fileDescriptors: this.#fdLimit,
      },
      capture: this.config.capture === 'ebpf' ? Object.fromEntries(Object.entries(this.#datapath?.stats() ?? {}).map(([k, v]) => [k, Number(v)])) : null,
    };
  }

  /** Transparent listeners first, then the tc hooks (attach: false leaves that to a takeover), so no captured packet finds no socket. */
  async #startCapture(datapath: EbpfDatapath, attach: boolean): Promise<void> {
    const listen = async (port: number, pauseOnConnect: boolean, handle: (s: net.Socket) => void): Promise<void> => {
      const server = await this.#pi.sockets.listen({ host: '0.0.0.0', port, pauseOnConnect }, (s) => {
        this.#track(s);
        handle(s);
      });
      this.#captureListeners.push(server);
    };
    // With IP_TRANSPARENT the accepted socket's local address is the original destination.
    const origDst = (s: net.Socket): { ip: string; port: number } => ({ ip: unmapIPv4(s.localAddress), port: s.localPort ?? 0 });
    const src = (s: net.Socket): { ip: string; port: number } => ({ ip: unmapIPv4(s.remoteAddress), port: s.remotePort ?? 0 });
    await listen(OUTBOUND_PORT, true, (s) => this.outbound.handle(s, src(s), origDst(s)));
    await listen(INBOUND_PLAIN_PORT, true, (s) => this.inbound.handlePlaintext(s, origDst(s)));
    await listen(this.config.hbonePort, true, (s) => void this.hbone.accept(s));
    datapath.prepare();
    if (attach) datapath.attach();
  }

  /** eBPF counters, when capture is on. */
  get captureStats(): ReturnType<EbpfDatapath['stats']> {
    return this.#datapath?.stats();
  }

  /** Address the SOCKS5 listener is bound to (port 0 in tests resolves here). */
  get socksAddress(): AddressInfo | undefined {
    return this.#socks?.address() as AddressInfo | undefined;
  }

  get manifestErrors(): ManifestSource['errors'] {
    return this.#source instanceof ManifestSource ? this.#source.errors : [];
  }

  #localWorkloads(): ReturnType<State['workloadsOnNode']> {
    return this.state.workloadsOnNode(this.config.nodeName).filter((w) => w.captured);
  }

  #track(s: net.Socket): void {
    this.#accepted.add(s);
    s.once('close', () => this.#accepted.delete(s));
  }

  #onStateChange(): void {
    // The policy engine listens first (it was created before this listener), so this sees new policies.
    this.inbound.reauthorize();
    const local = this.#localWorkloads();
    this.certs.track(new Set(local.map((w) => w.identity)));
    if (this.config.capture === 'ebpf') {
      try {
        this.#datapath?.sync();
      } catch (err) {
        this.#logger.error({ err: (err as Error).message }, 'capture sync failed');
      }
      return;
    }
    this.#reconciling = this.#reconciling.then(() => this.#reconcileHboneListeners(new Set(local.map((w) => w.ip))));
  }

  /** Without eBPF capture, HBONE is served on each local captured pod's own IP:15008. */
  async #reconcileHboneListeners(ips: Set<string>): Promise<void> {
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
        const server = await this.#pi.sockets.listen({ host: ip, port: this.config.hbonePort, pauseOnConnect: true }, (s) => {
          this.#track(s);
          void this.hbone.accept(s);
        });
        this.#hboneListeners.set(ip, server);
        this.#logger.debug({ address: `${ip}:${this.config.hbonePort}` }, 'hbone listening');
      } catch (err) {
        this.#logger.error({ err: (err as Error).message, ip }, 'cannot serve hbone for workload');
      }
    }
  }

  /**
   * Stops accepting, sends GOAWAY, waits for open connections up to the drain deadline, then cuts the rest.
   * With handOver (a successor took over): the ports are freed at once for it, and the hooks, the ip rule
   * and the sysctls are left in place, since its program is on the hooks now.
   */
  async drain(deadlineMs = this.config.drainMs, opts: { handOver?: boolean } = {}): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const handOver = opts.handOver === true;
    this.#logger.info({ deadlineMs, open: this.#accepted.size, handOver }, handOver ? 'handing over to the new daemon; draining' : 'draining');
    // Listeners close first: with tcp_migrate_req their queued connections go to the successor's.
    for (const s of this.#captureListeners) s.close();
    this.#socks?.close();
    if (handOver) this.#closeHttp();
    await this.#source.close();
    await this.#reconciling;
    for (const s of this.#hboneListeners.values()) s.close();
    this.#hboneListeners.clear();
    this.hbone.close();
    this.pool.close();
    if (handOver) this.#datapath?.handOver();
    const deadline = Date.now() + deadlineMs;
    while (this.#accepted.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    const cut = this.#accepted.size;
    for (const s of this.#accepted) s.destroy();
    this.hbone.destroy();
    this.pool.destroy();
    this.inbound.destroy();
    this.certs.close();
    // Hooks go last: established captured flows need them until they are cut.
    if (!handOver) this.#datapath?.stop();
    this.#closeHttp();
    this.#logger.info({ cutConnections: cut }, 'drained');
  }

  #closeHttp(): void {
    for (const s of this.#httpServers) {
      s.close();
      s.closeAllConnections();
    }
  }
}
