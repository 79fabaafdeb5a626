// What the node daemon (src/app.ts) and the waypoint (src/waypoint/waypoint-app.ts) share around their
// own parts: the loggers (so POST /logging reaches all of them), the state source, and the admin, metrics
// and readiness servers, started first and closed last.
import type http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import { logLevelSetter, startAdminServer, startMetricsServer, startReadinessServer, type AdminHandlers, type MetricsText } from './admin/servers.js';
import type { SharedConfig } from './config/config.js';
import type { State } from './model/state.js';
import type { KubeSource } from './sources/kube.js';
import { ManifestSource } from './sources/manifests.js';
import { listenOnceFree } from './takeover.js';

type Address = { readonly host: string; readonly port: number };

export interface ShellServers {
  readonly admin: Address;
  readonly metrics: Address;
  readonly readiness: Address;
}

export interface ShellHandlers extends Omit<AdminHandlers, 'setLogLevel'> {
  readonly metrics: MetricsText;
  readonly pending: () => string[];
  /** Also told of a new log level (worker threads). */
  readonly onLogLevel?: (level: string) => void;
}

export class DaemonShell {
  readonly logger: Logger;
  readonly #loggers: Logger[];
  readonly #servers: http.Server[] = [];
  #addresses: Partial<Record<keyof ShellServers, AddressInfo>> = {};

  constructor(logger: Logger) {
    this.logger = logger;
    this.#loggers = [logger];
  }

  /** A logger for one component; POST /logging changes its level with the rest. */
  child(component: string): Logger {
    const l = this.logger.child({ component });
    this.#loggers.push(l);
    return l;
  }

  /** The state source the config names: the API server's informers, or the manifests (watched). */
  source(config: SharedConfig, state: State, kube: typeof KubeSource | undefined): ManifestSource | KubeSource {
    if (config.kube !== undefined && kube !== undefined) {
      return new kube({ state, trustDomain: config.trustDomain, logger: this.child('kube'), kubeconfig: config.kube.kubeconfig });
    }
    return new ManifestSource({ path: config.manifests ?? '', state, trustDomain: config.trustDomain, logger: this.child('manifests') });
  }

  /** Admin, metrics and readiness; with retryWhileInUse (after a takeover) each waits for its port to be freed. */
  async startHttp(at: ShellServers, h: ShellHandlers, retryWhileInUse = false): Promise<void> {
    const bind = <T>(what: string, listen: () => Promise<T>): Promise<T> => (retryWhileInUse ? listenOnceFree(what, listen) : listen());
    const setLevel = logLevelSetter(this.#loggers, this.logger);
    const { metrics: metricsText, pending, onLogLevel, ...adminHandlers } = h;
    const admin = await bind('admin', () =>
      startAdminServer(at.admin, {
        ...adminHandlers,
        setLogLevel: (level) => {
          const ok = setLevel(level);
          if (ok) onLogLevel?.(level);
          return ok;
        },
      }),
    );
    this.#servers.push(admin.server);
    const metrics = await bind('metrics', () => startMetricsServer(at.metrics, metricsText));
    this.#servers.push(metrics.server);
    const readiness = await bind('readiness', () => startReadinessServer(at.readiness, pending));
    this.#servers.push(readiness.server);
    this.#addresses = { admin: admin.address, metrics: metrics.address, readiness: readiness.address };
  }

  get addresses(): Readonly<Partial<Record<keyof ShellServers, AddressInfo>>> {
    return this.#addresses;
  }

  /** Closes the servers and every connection to them (idempotent). */
  closeHttp(): void {
    for (const s of this.#servers) {
      s.close();
      s.closeAllConnections();
    }
  }
}
