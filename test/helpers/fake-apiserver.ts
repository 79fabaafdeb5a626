// A test API server that speaks the real list/watch protocol (JSON lists with resourceVersion, in pages
// when asked for a limit; chunked watch streams of {type, object} ended after timeoutSeconds; 410 Gone
// for an expired resourceVersion) to the daemon's client.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { writeFileSync } from 'node:fs';

type Obj = { metadata: { name: string; namespace?: string; resourceVersion?: string; labels?: Record<string, string> } } & Record<string, unknown>;
interface Event {
  rv: number;
  path: string;
  type: 'ADDED' | 'MODIFIED' | 'DELETED';
  object: Obj;
}

const LIST_KINDS: Record<string, string> = {
  '/api/v1/namespaces': 'NamespaceList',
  '/api/v1/pods': 'PodList',
  '/api/v1/services': 'ServiceList',
  '/api/v1/nodes': 'NodeList',
  '/apis/discovery.k8s.io/v1/endpointslices': 'EndpointSliceList',
  '/apis/security.istio.io/v1/authorizationpolicies': 'AuthorizationPolicyList',
  '/apis/gateway.networking.k8s.io/v1/gateways': 'GatewayList',
  '/apis/gateway.networking.k8s.io/v1/httproutes': 'HTTPRouteList',
};

export const GATEWAY_API_PATHS = ['/apis/gateway.networking.k8s.io/v1/gateways', '/apis/gateway.networking.k8s.io/v1/httproutes'];

export class FakeApiServer {
  readonly #server = http.createServer((req, res) => this.#handle(req, res));
  readonly #objects = new Map<string, Map<string, Obj>>();
  readonly #history: Event[] = [];
  readonly #watches = new Set<{ path: string; res: http.ServerResponse }>();
  #rv = 100;
  /** Watches asking for a resourceVersion below this get 410 Gone. */
  #oldestRv = 0;
  /** Requests seen, by "list PATH" / "watch PATH". */
  readonly requests: string[] = [];
  /** Tokens TokenReview accepts: token → service account user and the pod it is bound to. */
  readonly tokens = new Map<string, { username: string; namespace: string; pod: string; audiences: string[] }>();
  /** Paths answered with 404, as for a CRD that is not installed. */
  readonly unserved = new Set<string>();
  /** The Authorization header of each request. */
  readonly authorizations: string[] = [];
  /** Watches are accepted and then never written to or ended, as over a connection that died. */
  silentWatches = false;
  /** Watches are ended as soon as they are accepted, with no event. */
  endWatchesAtOnce = false;
  /** Every watch is answered 410 Gone, whatever its resourceVersion. */
  goneAlways = false;

  async start(host = '127.0.0.1'): Promise<AddressInfo> {
    await new Promise<void>((r) => this.#server.listen(0, host, r));
    return this.#server.address() as AddressInfo;
  }

  /** A kubeconfig file pointing at this server. */
  writeKubeconfig(file: string): void {
    const { address, port } = this.#server.address() as AddressInfo;
    writeFileSync(
      file,
      JSON.stringify({
        apiVersion: 'v1',
        kind: 'Config',
        // Plain HTTP on loopback: the client library then insists on insecure-skip-tls-verify.
        clusters: [{ name: 'test', cluster: { server: `http://${address}:${port}`, 'insecure-skip-tls-verify': true } }],
        users: [{ name: 'test', user: { token: 'test-token' } }],
        contexts: [{ name: 'test', context: { cluster: 'test', user: 'test' } }],
        'current-context': 'test',
      }),
    );
  }

  upsert(path: string, obj: Obj): void {
    const store = this.#store(path);
    const key = `${obj.metadata.namespace ?? ''}/${obj.metadata.name}`;
    const type = store.has(key) ? 'MODIFIED' : 'ADDED';
    this.#rv += 1;
    const stored = { ...obj, metadata: { ...obj.metadata, resourceVersion: String(this.#rv) } };
    store.set(key, stored);
    this.#emit({ rv: this.#rv, path, type, object: stored });
  }

  remove(path: string, namespace: string | undefined, name: string): void {
    const store = this.#store(path);
    const key = `${namespace ?? ''}/${name}`;
    const obj = store.get(key);
    if (obj === undefined) return;
    store.delete(key);
    this.#rv += 1;
    this.#emit({ rv: this.#rv, path, type: 'DELETED', object: { ...obj, metadata: { ...obj.metadata, resourceVersion: String(this.#rv) } } });
  }

  /** Writes a line to every open watch, e.g. one that is not JSON. */
  writeToWatches(line: string): void {
    for (const w of this.#watches) w.res.write(`${line}\n`);
  }

  /** Cuts every open watch, as a restarted API server or a load balancer would. */
  dropWatches(): void {
    for (const w of this.#watches) w.res.destroy();
    this.#watches.clear();
  }

  /** Forgets the event history: a watch resuming from an older resourceVersion gets 410 Gone. */
  expireHistory(): void {
    this.#oldestRv = this.#rv + 1;
    this.#history.length = 0;
  }

  /** Changes an object without telling current watchers (they must be gone), e.g. while expired. */
  upsertSilently(path: string, obj: Obj): void {
    const watches = [...this.#watches];
    this.#watches.clear();
    this.upsert(path, obj);
    for (const w of watches) this.#watches.add(w);
  }

  async close(): Promise<void> {
    this.dropWatches();
    await new Promise<void>((r) => this.#server.close(() => r()));
  }

  #store(path: string): Map<string, Obj> {
    let s = this.#objects.get(path);
    if (s === undefined) {
      s = new Map();
      this.#objects.set(path, s);
    }
    return s;
  }

  #emit(e: Event): void {
    this.#history.push(e);
    for (const w of this.#watches) if (w.path === e.path) w.res.write(`${JSON.stringify({ type: e.type, object: e.object })}\n`);
  }

  #handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const url = new URL(req.url ?? '/', 'http://api');
    const path = url.pathname;
    this.authorizations.push(req.headers.authorization ?? '');
    if (req.method === 'POST' && path === '/apis/authentication.k8s.io/v1/tokenreviews') {
      let body = '';
      req.on('data', (c: Buffer) => (body += String(c)));
      req.on('end', () => {
        const review = JSON.parse(body) as { spec: { token: string; audiences?: string[] } };
        const t = this.tokens.get(review.spec.token);
        const wanted = review.spec.audiences ?? [];
        const ok = t !== undefined && wanted.every((a) => t.audiences.includes(a));
        const status = ok
          ? { authenticated: true, audiences: wanted, user: { username: t.username, extra: { 'authentication.kubernetes.io/pod-name': [t.pod] } } }
          : { authenticated: false, error: 'invalid bearer token' };
        res.writeHead(201, { 'content-type': 'application/json' }).end(JSON.stringify({ apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec: review.spec, status }));
      });
      return;
    }
    const pod = /^\/api\/v1\/namespaces\/([^/]+)\/pods\/([^/]+)$/.exec(path);
    if (req.method === 'GET' && pod !== null) {
      const obj = this.#store('/api/v1/pods').get(`${pod[1] ?? ''}/${pod[2] ?? ''}`);
      if (obj === undefined) res.writeHead(404, { 'content-type': 'application/json' }).end(JSON.stringify({ kind: 'Status', code: 404 }));
      else res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ apiVersion: 'v1', kind: 'Pod', ...obj }));
      return;
    }
    if (LIST_KINDS[path] === undefined || this.unserved.has(path)) {
      res.writeHead(404, { 'content-type': 'application/json' }).end(JSON.stringify({ kind: 'Status', code: 404 }));
      return;
    }
    if (url.searchParams.get('watch') !== 'true') {
      this.requests.push(`list ${path}`);
      // Pages: the continue token is the offset and the list's resourceVersion, as opaque as the real one.
      const all = [...this.#store(path).values()];
      const limit = Number(url.searchParams.get('limit') ?? '0') || all.length;
      const [offset, rv] = (url.searchParams.get('continue') ?? `0:${this.#rv}`).split(':').map(Number) as [number, number];
      if (rv < this.#oldestRv) {
        res.writeHead(410, { 'content-type': 'application/json' }).end(JSON.stringify({ kind: 'Status', code: 410, reason: 'Expired', message: 'the continue token is too old' }));
        return;
      }
      const more = offset + limit < all.length;
      const metadata = { resourceVersion: String(rv), ...(more ? { continue: `${offset + limit}:${rv}` } : {}) };
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ apiVersion: 'v1', kind: LIST_KINDS[path], metadata, items: all.slice(offset, offset + limit) }));
      return;
    }
    this.requests.push(`watch ${path}`);
    const from = Number(url.searchParams.get('resourceVersion') ?? '0');
    res.writeHead(200, { 'content-type': 'application/json', 'transfer-encoding': 'chunked' });
    res.flushHeaders(); // a real API server answers a watch at once, before any event
    if (from < this.#oldestRv || this.goneAlways) {
      res.end(`${JSON.stringify({ type: 'ERROR', object: { kind: 'Status', apiVersion: 'v1', status: 'Failure', reason: 'Expired', code: 410, message: 'too old resource version' } })}\n`);
      return;
    }
    if (this.silentWatches) return;
    if (this.endWatchesAtOnce) {
      res.end();
      return;
    }
    for (const e of this.#history) if (e.path === path && e.rv > from) res.write(`${JSON.stringify({ type: e.type, object: e.object })}\n`);
    const w = { path, res };
    this.#watches.add(w);
    const seconds = Number(url.searchParams.get('timeoutSeconds') ?? '0');
    const timer = seconds > 0 ? setTimeout(() => res.end(), seconds * 1000) : undefined;
    req.on('close', () => {
      clearTimeout(timer);
      this.#watches.delete(w);
    });
  }
}
