// One kind's objects as the API server holds them: list (in pages), then watch from the list's
// resourceVersion, resume each watch from the last version seen, and list again only when the server
// answers 410 Gone (its history was compacted). What the daemon never reads is not kept: managedFields
// and kubectl's last-applied copy are most of a typical object's bytes.
import type { KubeApi, KubeObject, WatchEvent } from './api-client.js';
import { KubeApiError } from './errors.js';

const PAGE_SIZE = 500;
/** client-go's range: each watch asks for 5–10 minutes, so a fleet's reconnects spread out. */
const WATCH_MIN_SECONDS = 300;
/** How long past its timeoutSeconds a watch may run before the connection counts as dead. */
const WATCH_GRACE_MS = 30_000;
/** A watch that ends this soon with nothing in it is a server or proxy refusing it, not a timeout. */
const WATCH_TOO_SHORT_MS = 1_000;

export interface ReflectorHooks {
  /** A list replaced the cache (lists counts them, the first included). */
  listed(objects: number, lists: number): void;
  /** An object was added, changed or deleted. */
  changed(): void;
  /** A watch delivered an event or stayed open a while: the API server is answering again. */
  watching(): void;
}

type Options = {
  readonly api: KubeApi;
  readonly path: string;
  readonly hooks: ReflectorHooks;
  /** timeoutSeconds of each watch (default 300–600, at random). */
  readonly watchSeconds?: () => number;
  /** How long past it a watch may run before its connection counts as dead. */
  readonly watchGraceMs?: number;
};

interface ListPage {
  readonly metadata?: { readonly resourceVersion?: string; readonly continue?: string };
  readonly items?: readonly KubeObject[];
}

const keyOf = (o: KubeObject): string => `${o.metadata?.namespace ?? ''}/${o.metadata?.name ?? ''}`;

/** The object without the fields no consumer reads (a shallow copy where something is dropped). */
export function trimmed(o: KubeObject): KubeObject {
  const m = o.metadata;
  if (m === undefined) return o;
  const annotations = m['annotations'] as Record<string, string> | undefined;
  const lastApplied = annotations?.['kubectl.kubernetes.io/last-applied-configuration'] !== undefined;
  if (m['managedFields'] === undefined && !lastApplied) return o;
  const { managedFields: _managed, ...metadata } = m;
  if (lastApplied && annotations !== undefined) {
    const { 'kubectl.kubernetes.io/last-applied-configuration': _last, ...rest } = annotations;
    return { ...o, metadata: { ...metadata, annotations: rest } };
  }
  return { ...o, metadata };
}

export class Reflector {
  readonly #opts: Options;
  #objects = new Map<string, KubeObject>();
  #resourceVersion = '';
  #lists = 0;

  constructor(opts: Options) {
    this.#opts = opts;
  }

  /** The cached objects, as the API server sent them (trimmed). */
  list(): KubeObject[] {
    return [...this.#objects.values()];
  }

  /**
   * Lists when it must and watches, until signal aborts (resolves) or the API server fails (rejects, the
   * cache and its resourceVersion kept: the next run resumes the watch where this one stopped).
   */
  async run(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      const listedNow = this.#resourceVersion === '';
      if (listedNow) await this.#list(signal);
      const seconds = this.#opts.watchSeconds?.() ?? WATCH_MIN_SECONDS * (1 + Math.random());
      const started = Date.now();
      let events = 0;
      let opened = false;
      // The server is answering once a watch delivers or stays open a while (not when it is accepted only
      // to end at once): that is when the caller's backoff starts again from its least.
      let answering: NodeJS.Timeout | undefined;
      const healthy = (): void => {
        clearTimeout(answering);
        answering = undefined;
        this.#opts.hooks.watching();
      };
      try {
        await this.#opts.api.watch(
          this.#opts.path,
          { resourceVersion: this.#resourceVersion, allowWatchBookmarks: true, timeoutSeconds: Math.max(1, Math.round(seconds)) },
          {
            onOpen: () => {
              opened = true;
              answering = setTimeout(healthy, WATCH_TOO_SHORT_MS);
            },
            onEvent: (e) => {
              if (events++ === 0 && answering !== undefined) healthy();
              this.#apply(e);
            },
            maxMs: seconds * 1000 + (this.#opts.watchGraceMs ?? WATCH_GRACE_MS),
            signal,
          },
        );
      } catch (err) {
        if (signal.aborted) return;
        if (isGone(err)) {
          // Gone for the version this very list returned: listing again would only loop.
          if (listedNow) throw new KubeApiError('KUBE_API_STATUS', `watch ${this.#opts.path}: 410 for the version its list just returned`, { statusCode: 410, cause: err });
          this.#resourceVersion = '';
          continue;
        }
        // A watch that ran a while and was cut (a restarted server, a load balancer): resume at once; if
        // the server is gone, that attempt fails and the caller backs off.
        if (opened && err instanceof KubeApiError && err.code === 'KUBE_API_UNREACHABLE' && Date.now() - started >= WATCH_TOO_SHORT_MS) continue;
        throw err;
      } finally {
        clearTimeout(answering);
      }
      if (events === 0 && Date.now() - started < WATCH_TOO_SHORT_MS) {
        throw new KubeApiError('KUBE_API_RESPONSE', `watch ${this.#opts.path}: ended at once with no event`);
      }
    }
  }

  async #list(signal: AbortSignal): Promise<void> {
    const objects = new Map<string, KubeObject>();
    let version = '';
    let next: string | undefined;
    let limit: number | undefined = PAGE_SIZE;
    do {
      let page: ListPage;
      try {
        page = (await this.#opts.api.getJson(this.#opts.path, { limit, continue: next }, signal)) as ListPage;
      } catch (err) {
        // A continue token outlived the server's history: list again, whole.
        if (next !== undefined && isGone(err) && limit !== undefined) {
          objects.clear();
          next = undefined;
          limit = undefined;
          continue;
        }
        throw err;
      }
      if (!Array.isArray(page?.items)) throw new KubeApiError('KUBE_API_RESPONSE', `GET ${this.#opts.path}: a list without items`);
      for (const item of page.items) objects.set(keyOf(item), trimmed(item));
      if (version === '') version = page.metadata?.resourceVersion ?? '';
      next = page.metadata?.continue === undefined || page.metadata.continue === '' ? undefined : page.metadata.continue;
    } while (next !== undefined);
    this.#objects = objects;
    this.#resourceVersion = version;
    this.#lists += 1;
    this.#opts.hooks.listed(objects.size, this.#lists);
  }

  #apply(e: WatchEvent): void {
    if (e.type === 'ERROR') {
      // 410 Expired ends this watch, and run() lists again; anything else fails the run.
      const code = (e.object as { code?: unknown }).code;
      throw new KubeApiError('KUBE_API_STATUS', `watch ${this.#opts.path}: ${String(code)} ${String((e.object as { message?: unknown }).message ?? '')}`, {
        ...(typeof code === 'number' ? { statusCode: code } : {}),
      });
    }
    const version = e.object.metadata?.resourceVersion;
    if (e.type === 'ADDED' || e.type === 'MODIFIED') {
      this.#objects.set(keyOf(e.object), trimmed(e.object));
      this.#opts.hooks.changed();
    } else if (e.type === 'DELETED') {
      if (this.#objects.delete(keyOf(e.object))) this.#opts.hooks.changed();
    }
    if (version !== undefined && version !== '') this.#resourceVersion = version;
  }
}

function isGone(err: unknown): boolean {
  return err instanceof KubeApiError && err.statusCode === 410;
}
