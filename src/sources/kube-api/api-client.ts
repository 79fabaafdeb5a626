// The few requests the daemon, the waypoint and the CA make of the API server: GET and POST of JSON, and
// watch streams of newline-delimited JSON events, over node:https with keep-alive. Loading
// @kubernetes/client-node cost each daemon ~55 MB of RSS (its generated models for every API group);
// it is imported only for exec and auth-provider credentials, which only it implements.
import http from 'node:http';
import https from 'node:https';
import { readFileSync } from 'node:fs';
import { StringDecoder } from 'node:string_decoder';
import { deadline } from '../../model/deadline.js';
import { KubeApiError } from './errors.js';
import type { ApiEndpoint } from './kubeconfig.js';

export type Query = Readonly<Record<string, string | number | boolean | undefined>>;

export interface WatchEvent {
  readonly type: 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK' | 'ERROR';
  readonly object: KubeObject;
}

export interface KubeObject {
  readonly metadata?: { readonly name?: string; readonly namespace?: string; readonly resourceVersion?: string; readonly [k: string]: unknown };
  readonly [k: string]: unknown;
}

export interface WatchOptions {
  readonly onEvent: (e: WatchEvent) => void;
  /** The server accepted the watch (status 200). */
  readonly onOpen?: () => void;
  readonly maxMs: number;
  readonly signal?: AbortSignal;
}

const REQUEST_TIMEOUT_MS = 30_000;

interface Status {
  reason?: unknown;
  message?: unknown;
  code?: unknown;
}

/** The API's Status object as an error (a failed request, or a watch's ERROR event). */
export function statusError(what: string, statusCode: number, body: unknown): KubeApiError {
  const s = (typeof body === 'object' && body !== null ? body : {}) as Status;
  const reason = typeof s.reason === 'string' ? s.reason : undefined;
  const detail = typeof s.message === 'string' ? s.message : (http.STATUS_CODES[statusCode] ?? 'error');
  return new KubeApiError('KUBE_API_STATUS', `${what}: ${statusCode}${reason === undefined ? '' : ` ${reason}`}: ${detail}`, {
    statusCode,
    ...(reason === undefined ? {} : { reason }),
  });
}

export class KubeApi {
  readonly #endpoint: ApiEndpoint;
  readonly #agent: http.Agent;
  readonly #request: typeof http.request;
  #plugin: Promise<(opts: https.RequestOptions) => Promise<void>> | undefined;

  constructor(endpoint: ApiEndpoint) {
    this.#endpoint = endpoint;
    const tls = endpoint.server.protocol === 'https:';
    // Keep-alive also sets SO_KEEPALIVE on each socket, so a watch on a dead connection ends.
    this.#agent = tls
      ? new https.Agent({
          keepAlive: true,
          keepAliveMsecs: 30_000,
          rejectUnauthorized: !endpoint.insecure,
          ...(endpoint.ca === undefined ? {} : { ca: endpoint.ca }),
          ...(endpoint.cert === undefined ? {} : { cert: endpoint.cert }),
          ...(endpoint.key === undefined ? {} : { key: endpoint.key }),
          ...(endpoint.servername === undefined ? {} : { servername: endpoint.servername }),
        })
      : new http.Agent({ keepAlive: true, keepAliveMsecs: 30_000 });
    this.#request = tls ? https.request : http.request;
  }

  get server(): string {
    return this.#endpoint.server.origin;
  }

  async getJson(path: string, query: Query = {}, signal?: AbortSignal): Promise<unknown> {
    return this.#json('GET', path, query, undefined, signal);
  }

  async postJson(path: string, body: unknown, signal?: AbortSignal): Promise<unknown> {
    return this.#json('POST', path, {}, body, signal);
  }

  /**
   * Streams a watch's events to onEvent until the server ends it (resolves), or it fails, onEvent throws,
   * or signal aborts (rejects). The stream is cut if it outlives maxMs: the server ends each watch at the
   * timeoutSeconds asked for, so one that runs on is a connection that died without a word.
   */
  async watch(path: string, query: Query, opts: WatchOptions): Promise<void> {
    const what = `watch ${path}`;
    const { onEvent, signal } = opts;
    const bound = deadline(opts.maxMs, signal);
    try {
      const res = await this.#send('GET', path, { ...query, watch: true }, undefined, bound.signal, what).catch((err: unknown) => {
        throw this.#failure(what, err, bound.signal, signal);
      });
      if (res.statusCode !== 200) throw statusError(what, res.statusCode ?? 0, await readJson(res, what).catch(() => undefined));
      opts.onOpen?.();
      await new Promise<void>((resolve, reject) => {
        const decoder = new StringDecoder('utf8');
        let pending = '';
        const fail = (err: unknown): void => {
          res.destroy();
          reject(err);
        };
        res.on('data', (chunk: Buffer) => {
          pending += decoder.write(chunk);
          let nl: number;
          while ((nl = pending.indexOf('\n')) >= 0) {
            const line = pending.slice(0, nl).trim();
            pending = pending.slice(nl + 1);
            if (line === '') continue;
            let event: WatchEvent;
            try {
              event = JSON.parse(line) as WatchEvent;
            } catch {
              // Skipping it would lose an event: end the watch; the next one resumes from the last version.
              fail(new KubeApiError('KUBE_API_RESPONSE', `${what}: an event that is not JSON: ${line.slice(0, 80)}`));
              return;
            }
            try {
              onEvent(event);
            } catch (err) {
              fail(err);
              return;
            }
          }
        });
        res.on('end', () => resolve());
        res.on('error', (err) => reject(this.#failure(what, err, bound.signal, signal)));
        res.on('close', () => {
          if (!res.complete) reject(this.#failure(what, new Error('the stream was cut'), bound.signal, signal));
        });
      });
    } finally {
      bound.done();
    }
  }

  /** Ends idle keep-alive connections; open watches end with their signals. */
  close(): void {
    this.#agent.destroy();
  }

  async #json(method: 'GET' | 'POST', path: string, query: Query, body: unknown, signal: AbortSignal | undefined): Promise<unknown> {
    const what = `${method} ${path}`;
    const bound = deadline(REQUEST_TIMEOUT_MS, signal);
    try {
      const res = await this.#send(method, path, query, body, bound.signal, what).catch((err: unknown) => {
        throw this.#failure(what, err, bound.signal, signal);
      });
      const parsed = await readJson(res, what).catch((err: unknown) => {
        throw this.#failure(what, err, bound.signal, signal);
      });
      const status = res.statusCode ?? 0;
      if (status < 200 || status > 299) throw statusError(what, status, parsed);
      return parsed;
    } finally {
      bound.done();
    }
  }

  async #send(method: string, path: string, query: Query, body: unknown, signal: AbortSignal, what: string): Promise<http.IncomingMessage> {
    const url = new URL(path, this.#endpoint.server);
    for (const [k, v] of Object.entries(query)) if (v !== undefined) url.searchParams.set(k, String(v));
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const options: https.RequestOptions = {
      method,
      agent: this.#agent,
      signal,
      headers: {
        accept: 'application/json',
        'user-agent': 'ztunnel-ts',
        ...(payload === undefined ? {} : { 'content-type': 'application/json', 'content-length': String(payload.length) }),
      },
    };
    try {
      await this.#authorize(options);
    } catch (err) {
      if (err instanceof KubeApiError) throw err;
      throw new KubeApiError('KUBE_API_UNREACHABLE', `${what}: no credentials (${this.#endpoint.source}): ${(err as Error).message}`, { cause: err });
    }
    return new Promise((resolve, reject) => {
      const req = this.#request(url, options, resolve);
      req.on('error', reject);
      req.end(payload);
    });
  }

  async #authorize(options: https.RequestOptions): Promise<void> {
    const headers = options.headers as Record<string, string>;
    const auth = this.#endpoint.auth;
    switch (auth.kind) {
      case 'none':
        return;
      case 'token':
        headers['authorization'] = `Bearer ${auth.token}`;
        return;
      case 'tokenFile':
        headers['authorization'] = `Bearer ${readFileSync(auth.file, 'utf8').trim()}`;
        return;
      case 'basic':
        headers['authorization'] = `Basic ${Buffer.from(`${auth.username}:${auth.password}`).toString('base64')}`;
        return;
      case 'plugin': {
        this.#plugin ??= loadPlugin(auth.kubeconfig);
        const apply = await this.#plugin;
        await apply(options);
        return;
      }
    }
  }

  /** A transport error as the caller should see it: its own abort, a timeout, or no answer. */
  #failure(what: string, err: unknown, bound: AbortSignal, callers: AbortSignal | undefined): unknown {
    if (callers?.aborted === true) return callers.reason;
    if (err instanceof KubeApiError) return err;
    if (bound.aborted) return new KubeApiError('KUBE_API_UNREACHABLE', `${what}: no answer in time from ${this.server}`, { cause: err });
    return new KubeApiError('KUBE_API_UNREACHABLE', `${what}: ${this.server}: ${(err as Error).message}`, { cause: err });
  }
}

async function readJson(res: http.IncomingMessage, what: string): Promise<unknown> {
  const chunks: Buffer[] = [];
  for await (const c of res) chunks.push(c as Buffer);
  const text = Buffer.concat(chunks).toString('utf8');
  if (text === '') return undefined;
  try {
    return JSON.parse(text) as unknown;
  } catch {
    throw new KubeApiError('KUBE_API_RESPONSE', `${what}: ${res.statusCode ?? 0} with a body that is not JSON: ${text.slice(0, 80)}`);
  }
}

/** exec and auth-provider users, through the library that implements them (its cost is paid only here). */
async function loadPlugin(kubeconfig: string): Promise<(opts: https.RequestOptions) => Promise<void>> {
  const { KubeConfig } = await import('@kubernetes/client-node');
  const kc = new KubeConfig();
  kc.loadFromFile(kubeconfig);
  return async (opts) => {
    const extra: https.RequestOptions = { headers: {} };
    await kc.applyToHTTPSOptions(extra);
    Object.assign(opts.headers as Record<string, string>, extra.headers);
  };
}
