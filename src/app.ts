// Wires one daemon together. The control plane lives here, once per daemon: the state source and State,
// the certificates (one CSR per identity), the eBPF datapath, and the admin, metrics and readiness
// endpoints. The data path (src/dataplane.ts) runs in this thread (--workers 1) or in worker threads.
// Components are started in dependency order and closed in reverse.
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import { AggregatorRegistry } from 'prom-client';
import type { MetricsText } from './admin/servers.js';
import { PolicyEngine } from './authz/engine.js';
import type { Authorizer } from './authz/hook.js';
import { runtimeFacts, warnOfMissingNodeFlags } from './cli/node-flags.js';
import { ConfigError, type Config } from './config/config.js';
import { Dataplane, type DataplaneStats } from './dataplane.js';
import { EbpfDatapath } from './datapath/datapath.js';
import { raiseFdLimit, type FdLimit } from './datapath/fd-limit.js';
import { TransparentSocketFactory } from './datapath/transparent-sockets.js';
import { DEFAULT_TIMEOUTS, type HboneTimeouts } from './hbone/constants.js';
import type { HbonePool } from './hbone/pool.js';
import type { HboneServer } from './hbone/server.js';
import { CertManager } from './identity/cert-manager.js';
import { certificateSource, type CertificateSource } from './identity/source.js';
import { State } from './model/state.js';
import { useProxyBufferSizes } from './proxy/buffers.js';
import type { EndpointPicker } from './proxy/endpoint-picker.js';
import type { InboundProxy } from './proxy/inbound.js';
import type { ConnectionLimiter } from './proxy/limits.js';
import type { OutboundProxy } from './proxy/outbound.js';
import { PlainSocketFactory, type SocketFactory } from './proxy/sockets.js';
import { glibcMallocTrim } from './runtime/malloc-trim.js';
import { startMemoryTrim, type MemoryTrimmer } from './runtime/memory-trim.js';
import type { KubeSource } from './sources/kube.js';
import { ManifestSource } from './sources/manifests.js';
import { DaemonShell } from './daemon-shell.js';
import { askToDrain, findPredecessor } from './takeover.js';
import { FlowBus } from './telemetry/flows.js';
import { Metrics } from './telemetry/metrics.js';
import { WorkerSet } from './workers/worker-set.js';

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
  readonly metrics: Metrics;
  readonly flows = new FlowBus();
  readonly #shell: DaemonShell;
  readonly #logger: Logger;
  readonly #deps: AppDeps;
  /** The data path in this thread (--workers 1), or the worker threads that run it. */
  readonly #dataplane: Dataplane | undefined;
  readonly #workers: WorkerSet | undefined;
  readonly #authorizer: Authorizer | undefined;
  #fdLimit: FdLimit | undefined;
  #memoryTrim: MemoryTrimmer | undefined;
  #listening = false;
  readonly #source: ManifestSource | KubeSource;
  readonly #datapath: EbpfDatapath | undefined;
  #closed = false;

  private constructor(config: Config, logger: Logger, certSource: CertificateSource, deps: AppDeps, kube: typeof KubeSource | undefined) {
    this.config = config;
    this.#shell = new DaemonShell(logger);
    this.#logger = logger;
    this.#deps = deps;
    const child = (component: string): Logger => this.#shell.child(component);
    this.certs = new CertManager(certSource, child('certs'));
    this.metrics = new Metrics({
      pool: () => this.#dataplane?.pool.stats ?? { connections: 0, streams: 0 },
      certificates: () => this.certs.snapshot(),
      ebpf: () => this.#datapath?.stats() as Record<string, bigint> | undefined,
    });
    if (config.workers > 1) {
      this.#workers = new WorkerSet({
        count: config.workers, config, state: this.state, certs: this.certs, flows: this.flows, logger: child('workers'), logLevel: () => logger.level,
        onListening: (worker, listeners) => this.#datapath?.setListeners(worker, listeners),
      });
      // The policies as the workers translate them, for config_dump.
      this.#authorizer = new PolicyEngine({ state: this.state, rootNamespace: config.rootNamespace, logger: child('authz') });
    } else {
      const sockets = deps.sockets ?? (config.capture === 'ebpf' ? new TransparentSocketFactory() : new PlainSocketFactory());
      this.#dataplane = new Dataplane({
        config,
        state: this.state,
        certs: this.certs,
        sockets,
        telemetry: { node: config.nodeName, logger: child('access'), metrics: this.metrics, flows: this.flows },
        timeouts: { ...DEFAULT_TIMEOUTS, ...deps.timeouts },
        child,
        ...(deps.authorizer === undefined ? {} : { authorizer: deps.authorizer }),
      });
      this.#authorizer = this.#dataplane.pi.authorizer;
    }
    this.#datapath =
      config.capture === 'ebpf'
        ? new EbpfDatapath({ state: this.state, nodeName: config.nodeName, uplinks: config.uplinks, hbonePort: config.hbonePort, logger: child('datapath') })
        : undefined;
    this.#source = this.#shell.source(config, this.state, kube);
  }

  static async start(config: Config, logger: Logger, deps: AppDeps = {}): Promise<App> {
    useProxyBufferSizes();
    // The Kubernetes client is large: load it only in cluster mode.
    const kube = config.kube === undefined ? undefined : (await import('./sources/kube.js')).KubeSource;
    const app = new App(config, logger, await certificateSource(config.ca, config.trustDomain, config.certTtlMs), deps, kube);
    await app.#start();
    return app;
  }

  /** The in-thread data path; with worker threads there is none here. */
  get #local(): Dataplane {
    if (this.#dataplane === undefined) throw new Error(`with --workers ${this.config.workers} the data path runs in worker threads`);
    return this.#dataplane;
  }

  get pool(): HbonePool {
    return this.#local.pool;
  }

  get hbone(): HboneServer {
    return this.#local.hbone;
  }

  get inbound(): InboundProxy {
    return this.#local.inbound;
  }

  get outbound(): OutboundProxy {
    return this.#local.outbound;
  }

  get limits(): ConnectionLimiter {
    return this.#local.limits;
  }

  get endpoints(): EndpointPicker {
    return this.#local.endpoints;
  }

  async #start(): Promise<void> {
    this.#fdLimit = raiseFdLimit();
    this.#logger.info({ ...this.#fdLimit, workers: this.config.workers }, 'descriptor limit');
    warnOfMissingNodeFlags(this.#logger);
    // This thread's young generation, and glibc's heaps for the whole process (each worker collects its own).
    this.#memoryTrim = startMemoryTrim(this.config.memoryTrimMs, this.#logger, { mallocTrim: glibcMallocTrim });
    // An upgrade: this node's daemon is running. Serve alongside it first, then ask it to leave.
    const predecessor = this.config.capture === 'ebpf' ? await findPredecessor(this.config.adminAddress, this.config.nodeName) : undefined;
    if (this.config.takeover && predecessor === undefined) {
      throw new ConfigError(`--takeover: no daemon of node ${this.config.nodeName} answers on ${this.config.adminAddress.host}:${this.config.adminAddress.port}`);
    }
    if (predecessor === undefined) await this.#startHttp();
    this.state.on('change', () => this.#onStateChange());
    await this.#source.start();
    await this.#dataplane?.reconciled;
    // Listeners first (every worker's), then the hooks, so no captured packet finds no socket.
    if (this.#dataplane !== undefined && this.#datapath !== undefined) this.#datapath.setListeners(0, await this.#dataplane.listenCapture());
    if (this.#workers !== undefined) await this.#workers.start({ takeover: predecessor !== undefined });
    if (this.#datapath !== undefined) {
      this.#datapath.prepare();
      if (predecessor === undefined) this.#datapath.attach();
      else await this.#takeOver(predecessor, this.#datapath);
    }
    const socks = await this.#dataplane?.listenSocks(predecessor !== undefined);
    if (socks !== undefined) this.#logger.info({ address: `${socks.address}:${socks.port}` }, 'socks5 listening');
    this.#listening = true;
    this.#logger.info({ node: this.config.nodeName, workloads: this.#localWorkloads().length, takeover: predecessor !== undefined, workers: this.config.workers }, 'ztunnel-ts ready');
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
    await this.#shell.startHttp(
      { admin: c.adminAddress, metrics: c.metricsAddress, readiness: c.readinessAddress },
      {
        configDump: () => this.configDump(),
        quit: () => (this.#deps.onQuit ?? (() => void this.drain()))(),
        ...(c.capture === 'ebpf' ? { handOver: () => (this.#deps.onHandOver ?? (() => void this.drain(c.drainMs, { handOver: true })))() } : {}),
        ...(this.#workers === undefined ? {} : { killWorker: (n: number) => this.#workers?.kill(n) ?? false }),
        flows: this.flows,
        metrics: this.#metricsText(),
        pending: () => this.pending(),
        onLogLevel: (level) => this.#workers?.setLogLevel(level),
      },
      afterTakeover,
    );
  }

  /** /metrics: this thread's registry, merged with the workers' (counters summed, one series per label set). */
  #metricsText(): MetricsText {
    const workers = this.#workers;
    if (workers === undefined) return this.metrics;
    const own = this.metrics.registry;
    return {
      registry: {
        contentType: own.contentType,
        metrics: async () => {
          const reports = await workers.reports();
          const pool = reports.reduce((a, r) => ({ connections: a.connections + r.stats.pool.connections, streams: a.streams + r.stats.pool.streams }), { connections: 0, streams: 0 });
          const mine = (await own.getMetricsAsJSON()).map((m) =>
            m.name === 'ztunnel_hbone_pool_connections' ? { ...m, values: [{ value: pool.connections, labels: {} }] }
            : m.name === 'ztunnel_hbone_pool_streams' ? { ...m, values: [{ value: pool.streams, labels: {} }] }
            : m,
          );
          const theirs = reports.map((r) => r.metrics.filter((m) => !m.name.startsWith('ztunnel_hbone_pool_')));
          return AggregatorRegistry.aggregate([mine, ...theirs]).metrics();
        },
      },
    };
  }

  /** Where the admin, metrics and readiness servers listen (port 0 in tests resolves here). */
  get addresses(): Readonly<Partial<Record<'admin' | 'metrics' | 'readiness', AddressInfo>>> {
    return this.#shell.addresses;
  }

  /** What readiness waits for: state loaded, listeners up (every worker's), a certificate for every local workload. */
  pending(): string[] {
    const out: string[] = [];
    if (!this.state.loaded) out.push(this.config.kube === undefined ? 'state: manifests not loaded' : 'state: first full sync with the API server');
    if (!this.#listening) out.push('listeners: not up yet');
    else if (this.#workers !== undefined && this.#workers.listening < this.#workers.count) out.push(`listeners: ${this.#workers.listening} of ${this.#workers.count} workers listening`);
    const missing = [...new Set(this.#localWorkloads().map((w) => w.identity))].filter((id) => this.certs.peek(id) === undefined);
    if (missing.length > 0) out.push(`certificates: ${missing.join(', ')}`);
    return out;
  }

  async configDump(): Promise<unknown> {
    const snap = this.state.snapshot;
    const engine = this.#authorizer instanceof PolicyEngine ? this.#authorizer : undefined;
    const stats: DataplaneStats[] = this.#dataplane !== undefined ? [this.#dataplane.stats()] : ((await this.#workers?.reports()) ?? []).map((r) => r.stats);
    const load = (uid: string): number => stats.reduce((n, s) => n + (s.endpointLoad[uid] ?? 0), 0);
    return {
      node: this.config.nodeName,
      config: { ...this.config },
      workloads: snap.workloads,
      services: snap.services.map((s) => ({
        ...s,
        endpoints: this.state.endpointsOf(s).map((w) => ({ uid: w.uid, ip: w.ip, ips: w.ips, node: w.node, zone: w.locality.zone ?? null, ...w.health, openConnections: load(w.uid) })),
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
      pool: stats.reduce((a, s) => ({ connections: a.connections + s.pool.connections, streams: a.streams + s.pool.streams }), { connections: 0, streams: 0 }),
      workers: this.#workers === undefined ? null : { count: this.#workers.count, listening: this.#workers.listening },
      limits: {
        maxConnections: this.config.maxConnections,
        maxConnectionsPerSource: this.config.maxConnectionsPerSource,
        maxHboneStreams: this.config.maxHboneStreams,
        openConnections: stats.reduce((n, s) => n + s.openConnections, 0),
        // Plain TCP connections the kernel carries now (splice(2)); null when --no-splice or no eBPF capture.
        splicedConnections: stats.some((s) => s.spliced !== null) ? stats.reduce((n, s) => n + (s.spliced ?? 0), 0) : null,
        fileDescriptors: this.#fdLimit,
      },
      capture: this.config.capture === 'ebpf' ? Object.fromEntries(Object.entries(this.#datapath?.stats() ?? {}).map(([k, v]) => [k, Number(v)])) : null,
      ipv6: this.#datapath?.ipv6 ?? null,
      runtime: runtimeFacts(),
    };
  }

  /** eBPF counters, when capture is on. */
  get captureStats(): ReturnType<EbpfDatapath['stats']> {
    return this.#datapath?.stats();
  }

  /** Address the SOCKS5 listener is bound to (port 0 in tests resolves here). */
  get socksAddress(): AddressInfo | undefined {
    return this.#dataplane?.socksAddress;
  }

  get manifestErrors(): ManifestSource['errors'] {
    return this.#source instanceof ManifestSource ? this.#source.errors : [];
  }

  /** The worker threads, when there are some (tests kill one). */
  get workers(): WorkerSet | undefined {
    return this.#workers;
  }

  #localWorkloads(): ReturnType<State['workloadsOnNode']> {
    return this.state.workloadsOnNode(this.config.nodeName).filter((w) => w.captured);
  }

  #onStateChange(): void {
    const local = this.#localWorkloads();
    this.#dataplane?.onStateChange(new Set(local.flatMap((w) => w.ips)));
    this.certs.track(new Set(local.map((w) => w.identity)));
    try {
      this.#datapath?.sync();
    } catch (err) {
      this.#logger.error({ err: (err as Error).message }, 'capture sync failed');
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
    this.#logger.info({ deadlineMs, open: this.#dataplane?.openSockets ?? null, handOver }, handOver ? 'handing over to the new daemon; draining' : 'draining');
    // Listeners close first: with tcp_migrate_req their queued connections go to the successor's.
    this.#dataplane?.closeListeners();
    this.#workers?.closeListeners();
    if (handOver) this.#shell.closeHttp();
    await this.#source.close();
    if (handOver) this.#datapath?.handOver();
    const cuts = await Promise.all([this.#dataplane?.drain(deadlineMs) ?? 0, this.#workers?.drain(deadlineMs) ?? 0]);
    if (this.#authorizer instanceof PolicyEngine) this.#authorizer.close();
    this.certs.close();
    // Hooks go last: established captured flows need them until they are cut.
    if (!handOver) this.#datapath?.stop();
    this.#shell.closeHttp();
    this.#memoryTrim?.stop();
    this.#logger.info({ cutConnections: cuts[0] + cuts[1] }, 'drained');
  }
}
