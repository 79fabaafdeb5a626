// Cluster mode: the same Kubernetes kinds as local mode, from the API server through one reflector per
// kind (list, then watch from the resourceVersion; list again on 410 Gone), fed through the same
// validation and translation. When the API server is unreachable the last state keeps serving, and each
// reflector reconnects with backoff.
import type { Logger } from 'pino';
import type { State } from '../model/state.js';
import { KubeApi } from './kube-api/api-client.js';
import { loadApiEndpoint } from './kube-api/kubeconfig.js';
import { Reflector } from './kube-api/reflector.js';
import { describeObject, validateObject, type KnownKind } from './kube-schema.js';
import { translate, type SourcedObject, type TranslateOptions } from './translate.js';

const RETRY_MIN_MS = 500;
const RETRY_MAX_MS = 30_000;

export interface KubeSourceOptions extends TranslateOptions {
  readonly state: State;
  readonly logger: Logger;
  /** A kubeconfig file; in-cluster config when absent. */
  readonly kubeconfig?: string | undefined;
  /** Coalesces bursts of events into one State update. */
  readonly debounceMs?: number;
}

interface Resource {
  readonly kind: KnownKind;
  readonly apiVersion: string;
  /** A CRD that may not be installed (Gateway API): a 404 counts as an empty list, retried slowly. */
  readonly optional: boolean;
  readonly reflector: Reflector;
}

/** Everything the daemon, the CA and the waypoint read (RBAC must grant get/list/watch on each). */
export const WATCHED: readonly { kind: KnownKind; group: string; version: string; plural: string; optional?: boolean }[] = [
  { kind: 'Namespace', group: '', version: 'v1', plural: 'namespaces' },
  { kind: 'Pod', group: '', version: 'v1', plural: 'pods' },
  { kind: 'Service', group: '', version: 'v1', plural: 'services' },
  { kind: 'Node', group: '', version: 'v1', plural: 'nodes' },
  { kind: 'EndpointSlice', group: 'discovery.k8s.io', version: 'v1', plural: 'endpointslices' },
  { kind: 'AuthorizationPolicy', group: 'security.istio.io', version: 'v1', plural: 'authorizationpolicies' },
  { kind: 'Gateway', group: 'gateway.networking.k8s.io', version: 'v1', plural: 'gateways', optional: true },
  { kind: 'HTTPRoute', group: 'gateway.networking.k8s.io', version: 'v1', plural: 'httproutes', optional: true },
];

function isNotFound(err: unknown): boolean {
  return (err as { statusCode?: unknown } | undefined)?.statusCode === 404;
}

/** A client for the API server a kubeconfig file names, or the in-cluster one. */
export function kubeApi(kubeconfig: string | undefined): KubeApi {
  return new KubeApi(loadApiEndpoint(kubeconfig));
}

export class KubeSource {
  readonly #opts: KubeSourceOptions;
  readonly #api: KubeApi;
  readonly #resources: readonly Resource[];
  readonly #synced = new Set<KnownKind>();
  readonly #retries = new Map<KnownKind, { delay: number; timer: NodeJS.Timeout | undefined }>();
  readonly #stop = new AbortController();
  readonly #running = new Set<Promise<void>>();
  #timer: NodeJS.Timeout | undefined;

  constructor(opts: KubeSourceOptions) {
    this.#opts = opts;
    this.#api = kubeApi(opts.kubeconfig);
    this.#resources = WATCHED.map((w) => {
      const kind = w.kind;
      const reflector = new Reflector({
        api: this.#api,
        path: w.group === '' ? `/api/${w.version}/${w.plural}` : `/apis/${w.group}/${w.version}/${w.plural}`,
        hooks: {
          listed: (objects, lists) => {
            this.#retries.delete(kind);
            // A list after the first means the watch was too old (410 Gone): worth a line, it costs a full list.
            if (lists > 1) this.#opts.logger.info({ kind, lists }, 'kubernetes relist: the watch was too old (410 Gone)');
            if (!this.#synced.has(kind)) {
              this.#synced.add(kind);
              this.#opts.logger.info({ kind, objects }, 'kubernetes informer synced');
            }
            this.#schedule();
          },
          changed: () => this.#schedule(),
          watching: () => this.#retries.delete(kind),
        },
      });
      return { kind, apiVersion: w.group === '' ? w.version : `${w.group}/${w.version}`, optional: w.optional === true, reflector };
    });
  }

  /** True once every kind has been listed at least once. */
  get synced(): boolean {
    return this.#synced.size === this.#resources.length;
  }

  async start(): Promise<void> {
    for (const r of this.#resources) this.#run(r);
  }

  #run(r: Resource): void {
    if (this.#stop.signal.aborted) return;
    const run = r.reflector.run(this.#stop.signal).catch((err: unknown) => this.#onError(r, err));
    this.#running.add(run);
    void run.finally(() => this.#running.delete(run));
  }

  /** A run ends on an API error (a 410 is handled inside it): run again with backoff, from where it stopped. */
  #onError(r: Resource, err: unknown): void {
    if (this.#stop.signal.aborted) return;
    const kind = r.kind;
    const retry = this.#retries.get(kind) ?? { delay: RETRY_MIN_MS / 2, timer: undefined };
    if (retry.timer !== undefined) return;
    const absentCrd = r.optional && isNotFound(err);
    retry.delay = absentCrd ? RETRY_MAX_MS : Math.min(RETRY_MAX_MS, retry.delay * 2);
    if (absentCrd) {
      // Without the Gateway API CRDs there are no waypoints: serve everything else, look again later.
      if (!this.#synced.has(kind)) {
        this.#synced.add(kind);
        this.#opts.logger.info({ kind, retryInMs: retry.delay }, `${kind} is not served by the API server (Gateway API CRDs not installed): no waypoints until it is`);
        this.#schedule();
      }
    } else {
      this.#opts.logger.warn({ kind, err: (err as Error).message ?? String(err), retryInMs: retry.delay }, 'kubernetes watch failed; keeping the last state');
    }
    retry.timer = setTimeout(() => {
      retry.timer = undefined;
      this.#run(r);
    }, retry.delay);
    this.#retries.set(kind, retry);
  }

  #schedule(): void {
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => this.#apply(), this.#opts.debounceMs ?? 20);
  }

  /** Rebuilds the State from the caches, once every kind has been listed. */
  #apply(): void {
    if (!this.synced || this.#stop.signal.aborted) return;
    const objects: SourcedObject[] = [];
    for (const r of this.#resources) {
      for (const raw of r.reflector.list()) {
        // List items come without kind and apiVersion; the reflector knows what they are.
        const candidate = { ...raw, kind: r.kind, apiVersion: (raw as { apiVersion?: string }).apiVersion ?? r.apiVersion };
        const result = validateObject(r.kind, candidate);
        if (result.ok) objects.push({ origin: 'kubernetes', object: result.object });
        else this.#opts.logger.error({ object: describeObject(candidate), field: result.field }, `kubernetes object skipped: ${result.message}`);
      }
    }
    this.#opts.state.replace(translate(objects, this.#opts));
  }

  async close(): Promise<void> {
    this.#stop.abort();
    clearTimeout(this.#timer);
    for (const r of this.#retries.values()) clearTimeout(r.timer);
    await Promise.all([...this.#running]);
    this.#api.close();
  }
}
