// Wires the built-in waypoint: state (manifests or informers), its own SVID, HBONE server on 15008 with
// that SVID, the L7 proxy, HBONE client pool for endpoints, metrics and readiness.
import type net from 'node:net';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import { runtimeFacts, warnOfMissingNodeFlags } from '../cli/node-flags.js';
import { DaemonShell } from '../daemon-shell.js';
import type { WaypointConfig } from '../config/waypoint-config.js';
import { DEFAULT_TIMEOUTS, type HboneTimeouts } from '../hbone/constants.js';
import { EndpointPicker } from '../proxy/endpoint-picker.js';
import { HbonePool } from '../hbone/pool.js';
import { HboneServer } from '../hbone/server.js';
import { CertManager } from '../identity/cert-manager.js';
import { certificateSource } from '../identity/source.js';
import { formatHostPort, ipFamily } from '../model/address.js';
import { identityToString } from '../model/identity.js';
import { State } from '../model/state.js';
import { PlainSocketFactory } from '../proxy/sockets.js';
import type { KubeSource } from '../sources/kube.js';
import type { ManifestSource } from '../sources/manifests.js';
import { FlowBus } from '../telemetry/flows.js';
import { Metrics } from '../telemetry/metrics.js';
import { WaypointPolicies } from './policies.js';
import { WaypointProxy } from './proxy.js';
import { routeProblems } from './routing.js';
import { Upstreams } from './upstream.js';
import { useProxyBufferSizes } from '../proxy/buffers.js';
import { startMemoryTrim, type MemoryTrimmer } from '../runtime/memory-trim.js';

export interface WaypointDeps {
  readonly timeouts?: Partial<HboneTimeouts>;
  /** Source of randomness for weighted backends and endpoints (tests make it deterministic). */
  readonly random?: () => number;
  /** Called on POST /quitquitquit (the CLI closes and exits). */
  readonly onQuit?: () => void;
}

export class WaypointApp {
  readonly config: WaypointConfig;
  readonly identity: string;
  readonly state = new State();
  readonly metrics: Metrics;
  readonly certs: CertManager;
  readonly proxy: WaypointProxy;
  readonly flows = new FlowBus();
  readonly #policies: WaypointPolicies;
  readonly #shell: DaemonShell;
  readonly #logger: Logger;
  readonly #onQuit: (() => void) | undefined;
  readonly #pool: HbonePool;
  readonly #hbone: HboneServer;
  readonly #upstreams: Upstreams;
  readonly #source: ManifestSource | KubeSource;
  readonly #sockets = new PlainSocketFactory();
  readonly #accepted = new Set<net.Socket>();
  readonly #reported = new Map<string, string>();
  readonly #listeners: net.Server[] = [];
  #memoryTrim: MemoryTrimmer | undefined;
  /** Its pod's address: the first listen address when it is a specific one; with a wildcard, none. */
  get #sourceIp(): string | undefined {
    return specificHost(this.config.listen.host);
  }

  /** Connections to endpoints leave from the listen address of the endpoint's family, when it is a specific one. */
  #sourceFor(dstIp: string): string | undefined {
    const family = ipFamily(dstIp);
    return this.config.listens.map((l) => specificHost(l.host)).find((h) => h !== undefined && ipFamily(h) === family);
  }

  #hboneAddress: AddressInfo | undefined;

  private constructor(config: WaypointConfig, logger: Logger, certs: CertManager, kube: typeof KubeSource | undefined, timeouts: HboneTimeouts, deps: WaypointDeps) {
    this.config = config;
    this.#shell = new DaemonShell(logger);
    this.#logger = logger;
    this.#onQuit = deps.onQuit;
    const random = deps.random;
    const child = (component: string): Logger => this.#shell.child(component);
    this.identity = identityToString({ trustDomain: config.trustDomain, namespace: config.namespace, serviceAccount: config.serviceAccount });
    this.certs = certs;
    const uid = `${config.namespace}/${config.name}`;
    this.#pool = new HbonePool({ certs, dial: (dst, _src, signal) => this.#sockets.connect(dst, this.#sourceFor(dst.ip), signal), logger: child('pool'), timeouts });
    this.metrics = new Metrics({ pool: () => this.#pool.stats, certificates: () => certs.snapshot() });
    this.#upstreams = new Upstreams({ identity: this.identity, pool: this.#pool, hbonePort: config.hbonePort, connectTimeoutMs: config.connectTimeoutMs });
    this.#policies = new WaypointPolicies({ state: this.state, rootNamespace: config.rootNamespace, waypoint: { name: config.name, namespace: config.namespace }, logger: child('authz') });
    this.proxy = new WaypointProxy({
      waypoint: { uid, name: config.name, namespace: config.namespace },
      state: this.state,
      policies: this.#policies,
      upstreams: this.#upstreams,
      telemetry: { node: uid, logger: child('access'), metrics: this.metrics, flows: this.flows },
      logger: child('proxy'),
      ...(random === undefined ? {} : { random }),
      endpoints: new EndpointPicker(random === undefined ? {} : { random }),
      // Its own pod, found by the address it listens on (a pod IP); with a wildcard listener, no locality.
      self: () => (this.#sourceIp === undefined ? undefined : this.state.workloadByIp(this.#sourceIp)),
    });
    this.#hbone = new HboneServer({
      certs,
      trustDomain: config.trustDomain,
      logger: child('hbone'),
      timeouts,
      identityFor: () => this.identity,
      authorityIsAddressed: false,
      onRequest: (req) => this.proxy.handle(req),
    });
    this.#source = this.#shell.source(config, this.state, kube);
  }

  static async start(config: WaypointConfig, logger: Logger, deps: WaypointDeps = {}): Promise<WaypointApp> {
    useProxyBufferSizes();
    const kube = config.kube === undefined ? undefined : (await import('../sources/kube.js')).KubeSource;
    const certs = new CertManager(await certificateSource(config.ca, config.trustDomain, config.certTtlMs), logger.child({ component: 'certs' }));
    const app = new WaypointApp(config, logger, certs, kube, { ...DEFAULT_TIMEOUTS, ...deps.timeouts }, deps);
    await app.#start();
    return app;
  }

  async #start(): Promise<void> {
    const c = this.config;
    // Its young generation only: glibc's heaps need the FFI, which the waypoint does not load (~5 MB).
    this.#memoryTrim = startMemoryTrim(c.memoryTrimMs, this.#logger);
    await this.#shell.startHttp(
      { admin: c.adminAddress, metrics: c.metricsAddress, readiness: c.readinessAddress },
      { configDump: () => this.configDump(), quit: () => (this.#onQuit ?? (() => void this.close()))(), flows: this.flows, metrics: this.metrics, pending: () => this.pending() },
    );
    this.state.on('change', () => this.#onStateChange());
    await this.#source.start();
    this.certs.track([this.identity]);
    await this.certs.get(this.identity).catch((err: Error) => this.#logger.error({ err: err.message, identity: this.identity }, 'no certificate yet; retrying'));
    for (const address of c.listens) {
      const listener = await this.#sockets.listen({ ...address, pauseOnConnect: true }, (s) => {
        this.#accepted.add(s);
        s.once('close', () => this.#accepted.delete(s));
        void this.#hbone.accept(s);
      });
      this.#listeners.push(listener);
    }
    this.#hboneAddress = this.#listeners[0]?.address() as AddressInfo;
    const hbone = this.#listeners.map((l, i) => formatHostPort(c.listens[i]?.host ?? '', (l.address() as AddressInfo).port));
    warnOfMissingNodeFlags(this.#logger);
    this.#logger.info({ waypoint: `${c.namespace}/${c.name}`, identity: this.identity, hbone: hbone.join(',') }, 'waypoint ready');
  }

  get addresses(): Readonly<{ hbone?: AddressInfo; admin?: AddressInfo; metrics?: AddressInfo; readiness?: AddressInfo }> {
    return { ...this.#shell.addresses, ...(this.#hboneAddress === undefined ? {} : { hbone: this.#hboneAddress }) };
  }

  /** What this waypoint serves and how: its services, their routes, its policies, its certificate. */
  configDump(): unknown {
    const uid = `${this.config.namespace}/${this.config.name}`;
    const snap = this.state.snapshot;
    const services = snap.services.filter((s) => s.waypoint === uid);
    return {
      waypoint: uid,
      identity: this.identity,
      config: { ...this.config },
      gateway: this.state.waypoint(uid) ?? null,
      pods: this.state.waypointPods(uid).map((w) => ({ uid: w.uid, ip: w.ip, node: w.node })),
      services: services.map((s) => ({ uid: s.uid, vip: s.vip, ports: s.ports, routes: snap.httpRoutes.filter((r) => r.parents.some((p) => p.kind === 'Service' && p.namespace === s.namespace && p.name === s.name)).map((r) => r.uid) })),
      workloads: snap.workloads.filter((w) => w.waypoint === uid).map((w) => w.uid),
      httpRoutes: snap.httpRoutes.map((r) => ({ ...r, problems: routeProblems(r) })),
      policies: this.#policies.policies.filter((p) => p.authorization !== undefined || p.error !== undefined),
      certificates: this.certs.snapshot().map((c) => ({ identity: c.identity, serial: c.serial, notAfter: c.notAfter.toISOString() })),
      pool: this.#pool.stats,
      openConnections: this.proxy.openConnections,
      runtime: runtimeFacts(),
    };
  }

  /** What readiness waits for: state, the Gateway itself, the certificate, the listener. */
  pending(): string[] {
    const out: string[] = [];
    if (!this.state.loaded) out.push('state: not loaded');
    else if (this.state.waypoint(`${this.config.namespace}/${this.config.name}`) === undefined) {
      out.push(`gateway: no Gateway ${this.config.namespace}/${this.config.name} of class istio-waypoint`);
    }
    if (this.certs.peek(this.identity) === undefined) out.push(`certificate: ${this.identity}`);
    if (this.#listeners.length < this.config.listens.length) out.push('listener: not up yet');
    return out;
  }

  /** Route problems (bad patterns, unsupported filters) are logged once per route version. */
  #onStateChange(): void {
    // WaypointPolicies translates a new snapshot's policies on first use, whichever listener runs first.
    this.proxy.reauthorize();
    this.#upstreams.retain((e) => {
      const now = this.state.workloadByIp(e.ip);
      return now !== undefined && now.identity === e.identity && now.captured === e.captured;
    });
    for (const route of this.state.httpRoutes) {
      const problems = routeProblems(route);
      const version = problems.join('\n');
      if (this.#reported.get(route.uid) === version) continue;
      this.#reported.set(route.uid, version);
      for (const p of problems) this.#logger.error({ route: route.uid, file: route.origin }, `HTTPRoute ${route.uid} in ${route.origin}: ${p}`);
    }
  }

  async close(deadlineMs = this.config.drainMs): Promise<void> {
    this.#memoryTrim?.stop();
    for (const l of this.#listeners) l.close();
    await this.#source.close();
    this.#hbone.close();
    const deadline = Date.now() + deadlineMs;
    while (this.#accepted.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    for (const s of this.#accepted) s.destroy();
    this.proxy.destroy();
    this.#hbone.destroy();
    this.#upstreams.close();
    this.#pool.destroy();
    this.#policies.close();
    this.certs.close();
    this.#shell.closeHttp();
  }
}

function specificHost(host: string): string | undefined {
  return host === '0.0.0.0' || host === '::' ? undefined : host;
}
