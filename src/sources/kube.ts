// Cluster mode: the same Kubernetes kinds as local mode, from the API server through informers (list,
// then watch from the resourceVersion; re-list on 410 Gone), fed through the same validation and
// translation. When the API server is unreachable the last state keeps serving, and each informer
// reconnects with backoff.
import * as k8s from '@kubernetes/client-node';
import type { Logger } from 'pino';
import type { State } from '../model/state.js';
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
  readonly path: string;
  readonly list: () => Promise<k8s.KubernetesListObject<k8s.KubernetesObject>>;
  /** A CRD that may not be installed (Gateway API): a 404 counts as an empty list, retried slowly. */
  readonly optional?: boolean;
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
  const e = err as { code?: unknown; statusCode?: unknown; response?: { statusCode?: unknown } } | undefined;
  return e?.code === 404 || e?.statusCode === 404 || e?.response?.statusCode === 404;
}

export function loadKubeConfig(file: string | undefined): k8s.KubeConfig {
  const kc = new k8s.KubeConfig();
  if (file === undefined) kc.loadFromCluster();
  else kc.loadFromFile(file);
  return kc;
}

export class KubeSource {
  readonly #opts: KubeSourceOptions;
  readonly #kc: k8s.KubeConfig;
  readonly #resourceList: readonly Resource[];
  readonly #informers = new Map<KnownKind, k8s.Informer<k8s.KubernetesObject> & k8s.ObjectCache<k8s.KubernetesObject>>();
  readonly #synced = new Set<KnownKind>();
  /** Kinds whose current start attempt reported an error (the informer resolves start() anyway). */
  readonly #failed = new Set<KnownKind>();
  readonly #retries = new Map<KnownKind, { delay: number; timer: NodeJS.Timeout | undefined }>();
  #timer: NodeJS.Timeout | undefined;
  #closed = false;

  constructor(opts: KubeSourceOptions) {
    this.#opts = opts;
    this.#kc = loadKubeConfig(opts.kubeconfig);
    this.#resourceList = this.#resources();
  }

  #resources(): Resource[] {
    const core = this.#kc.makeApiClient(k8s.CoreV1Api);
    const custom = this.#kc.makeApiClient(k8s.CustomObjectsApi);
    const coreList: Record<string, () => Promise<unknown>> = {
      namespaces: () => core.listNamespace(),
      pods: () => core.listPodForAllNamespaces(),
      services: () => core.listServiceForAllNamespaces(),
      nodes: () => core.listNode(),
    };
    return WATCHED.map((w) => {
      const list = (): Promise<k8s.KubernetesListObject<k8s.KubernetesObject>> =>
        (w.group === '' ? (coreList[w.plural] ?? (() => Promise.reject(new Error(`no list for ${w.plural}`))))() : custom.listClusterCustomObject({ group: w.group, version: w.version, plural: w.plural })) as Promise<
          k8s.KubernetesListObject<k8s.KubernetesObject>
        >;
      let lists = 0;
      /** A list has succeeded: the informer lists again only when its watch's resourceVersion is refused. */
      let listed = false;
      return {
        kind: w.kind,
        apiVersion: w.group === '' ? w.version : `${w.group}/${w.version}`,
        path: w.group === '' ? `/api/${w.version}/${w.plural}` : `/apis/${w.group}/${w.version}/${w.plural}`,
        // The informer resumes a broken watch from its resourceVersion and lists again only when the API
        // server answers 410 Gone (its history was compacted): worth a line, it costs a full list.
        list: async () => {
          lists += 1;
          if (listed) this.#opts.logger.info({ kind: w.kind, lists }, 'kubernetes relist: the watch was too old (410 Gone)');
          const result = await list();
          listed = true;
          return result;
        },
        ...(w.optional === true ? { optional: true } : {}),
      };
    });
  }


  /** True once every kind has been listed at least once. */
  get synced(): boolean {
    return this.#synced.size === this.#informers.size && this.#informers.size > 0;
  }

  async start(): Promise<void> {
    for (const r of this.#resourceList) {
      const informer = k8s.makeInformer(this.#kc, r.path, r.list);
      this.#informers.set(r.kind, informer);
      const changed = (): void => this.#schedule();
      informer.on('add', changed);
      informer.on('update', changed);
      informer.on('delete', changed);
      informer.on('error', (err) => {
        this.#failed.add(r.kind);
        this.#onError(r.kind, err);
      });
      void this.#startInformer(r.kind);
    }
  }

  async #startInformer(kind: KnownKind): Promise<void> {
    const informer = this.#informers.get(kind);
    if (informer === undefined || this.#closed) return;
    this.#failed.delete(kind);
    try {
      await informer.start();
      if (this.#failed.has(kind)) return; // #onError has scheduled the next attempt
      this.#retries.delete(kind);
      if (!this.#synced.has(kind)) {
        this.#synced.add(kind);
        this.#opts.logger.info({ kind, objects: informer.list().length }, 'kubernetes informer synced');
        this.#schedule();
      }
    } catch (err) {
      this.#onError(kind, err);
    }
  }

  /** The informer stops on errors other than 410 and timeouts: restart it with backoff. */
  #onError(kind: KnownKind, err: unknown): void {
    if (this.#closed) return;
    const retry = this.#retries.get(kind) ?? { delay: RETRY_MIN_MS / 2, timer: undefined };
    if (retry.timer !== undefined) return;
    const absentCrd = this.#resourceList.find((r) => r.kind === kind)?.optional === true && isNotFound(err);
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
      void this.#startInformer(kind);
    }, retry.delay);
    this.#retries.set(kind, retry);
  }

  #schedule(): void {
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => this.#apply(), this.#opts.debounceMs ?? 20);
  }

  /** Rebuilds the State from the informers' caches, once every kind has been listed. */
  #apply(): void {
    if (!this.synced || this.#closed) return;
    const objects: SourcedObject[] = [];
    for (const r of this.#resourceList) {
      for (const raw of this.#informers.get(r.kind)?.list() ?? []) {
        // List items come without kind and apiVersion; the informer knows what they are.
        const candidate = { ...JSON.parse(JSON.stringify(raw)), kind: r.kind, apiVersion: (raw as { apiVersion?: string }).apiVersion ?? r.apiVersion };
        const result = validateObject(r.kind, candidate);
        if (result.ok) objects.push({ origin: 'kubernetes', object: result.object });
        else this.#opts.logger.error({ object: describeObject(candidate), field: result.field }, `kubernetes object skipped: ${result.message}`);
      }
    }
    this.#opts.state.replace(translate(objects, this.#opts));
  }

  async close(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#timer);
    for (const r of this.#retries.values()) clearTimeout(r.timer);
    await Promise.all([...this.#informers.values()].map((i) => i.stop()));
  }
}
