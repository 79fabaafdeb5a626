// How the waypoint reaches an endpoint: HBONE with its own identity to a captured pod, plain TCP to a pod
// outside the mesh; and a keep-alive http.Agent per endpoint so HTTP requests reuse those streams.
import http from 'node:http';
import http2 from 'node:http2';
import net from 'node:net';
import type { Duplex } from 'node:stream';
import { formatAddress, newTraceparent, type SocketAddress } from '../hbone/headers.js';
import type { HbonePool } from '../hbone/pool.js';
import { withDeadline } from '../model/deadline.js';
import type { Workload } from '../model/types.js';
import { connectSocket } from '../proxy/sockets.js';

export interface UpstreamOptions {
  readonly identity: string;
  readonly pool: HbonePool;
  readonly hbonePort: number;
  readonly connectTimeoutMs: number;
}

export class Upstreams {
  readonly #opts: UpstreamOptions;
  readonly #agents = new Map<string, { agent: http.Agent; endpoint: Workload }>();
  /** HTTP/2 (h2c) sessions to endpoints, for HTTP/2 clients: one per endpoint address, many streams each. */
  readonly #sessions = new Map<string, { session: Promise<http2.ClientHttp2Session>; endpoint: Workload }>();

  constructor(opts: UpstreamOptions) {
    this.#opts = opts;
  }

  /** A connection to endpoint:port; forwardedFor names the original client on the HBONE request. */
  async open(endpoint: Workload, port: number, forwardedFor?: SocketAddress): Promise<Duplex> {
    const { pool, identity, hbonePort, connectTimeoutMs } = this.#opts;
    const target = { ip: endpoint.ip, port };
    return withDeadline<Duplex>(connectTimeoutMs, undefined, (signal) => {
      if (!endpoint.captured) return connectSocket(net.connect({ host: target.ip, port, allowHalfOpen: true, noDelay: true }), target, signal);
      return pool.connect({
        key: { srcIdentity: identity, dstIdentities: [endpoint.identity], nextHop: { ip: endpoint.ip, port: hbonePort }, srcIp: undefined },
        authority: formatAddress(target),
        headers: {
          ...(forwardedFor === undefined ? {} : { forwarded: `for="${formatAddress(forwardedFor)}"` }),
          traceparent: newTraceparent(),
        },
        signal,
      });
    });
  }

  /** Keep-alive agent whose connections are opened by open(); one per endpoint address. */
  agentFor(endpoint: Workload, port: number): http.Agent {
    const key = endpointKey(endpoint, port);
    let agent = this.#agents.get(key)?.agent;
    if (agent === undefined) {
      agent = new ReuseCheckedAgent({ keepAlive: true, maxSockets: 100, maxFreeSockets: 16 });
      const createConnection = (_opts: unknown, done: (err: Error | null, socket?: Duplex) => void): undefined => {
        this.open(endpoint, port).then(
          (s) => done(null, asAgentSocket(s)),
          (err: Error) => done(err),
        );
        return undefined;
      };
      Object.assign(agent, { createConnection });
      this.#agents.set(key, { agent, endpoint });
    }
    return agent;
  }

  /** An h2c session to endpoint:port over one upstream connection; a failed or closed one is replaced. */
  h2SessionFor(endpoint: Workload, port: number): Promise<http2.ClientHttp2Session> {
    const key = endpointKey(endpoint, port);
    const existing = this.#sessions.get(key);
    if (existing !== undefined) return existing.session;
    const session = this.open(endpoint, port).then((stream) => {
      const s = http2.connect(`http://${formatAddress({ ip: endpoint.ip, port })}`, { createConnection: () => stream });
      const forget = (): void => {
        if (this.#sessions.get(key)?.session === session) this.#sessions.delete(key);
      };
      s.on('error', forget);
      s.on('goaway', forget);
      s.on('close', forget);
      return s;
    });
    session.catch(() => this.#sessions.delete(key));
    this.#sessions.set(key, { session, endpoint });
    return session;
  }

  /** Drops the agents and sessions (and their connections) of endpoints that are gone or changed identity. */
  retain(stillThere: (endpoint: Workload) => boolean): void {
    for (const [key, { agent, endpoint }] of this.#agents) {
      if (stillThere(endpoint)) continue;
      agent.destroy();
      this.#agents.delete(key);
    }
    for (const [key, { session, endpoint }] of this.#sessions) {
      if (stillThere(endpoint)) continue;
      session.then((s) => s.destroy(), () => undefined);
      this.#sessions.delete(key);
    }
  }

  close(): void {
    for (const { agent } of this.#agents.values()) agent.destroy();
    this.#agents.clear();
    for (const { session } of this.#sessions.values()) session.then((s) => s.destroy(), () => undefined);
    this.#sessions.clear();
  }
}

/**
 * A keep-alive agent that never hands out a connection the far side has ended: a backend that died (or a
 * daemon that reset the stream) leaves a free socket that is readable-ended but not yet closed, and a
 * request written to it would hang. Such a socket is dropped when it becomes free, and a free socket
 * that ends while it waits is destroyed at once.
 */
class ReuseCheckedAgent extends http.Agent {
  readonly #onEnd = new WeakMap<Duplex, () => void>();

  override keepSocketAlive(socket: Duplex): boolean {
    if (socket.destroyed || socket.readableEnded || socket.writableEnded) return false;
    const onEnd = (): void => void socket.destroy();
    this.#onEnd.set(socket, onEnd);
    socket.once('end', onEnd);
    // Documented to return whether to keep the socket; @types/node declares it void.
    return (super.keepSocketAlive(socket) as unknown) !== false;
  }

  override reuseSocket(socket: Duplex, req: http.ClientRequest): void {
    const onEnd = this.#onEnd.get(socket);
    if (onEnd !== undefined) socket.off('end', onEnd);
    super.reuseSocket(socket, req);
  }
}

/**
 * http.Agent and ClientRequest call a few net.Socket methods on their sockets; an HTTP/2 stream has no
 * keep-alive, Nagle or event-loop ref of its own (its session has), so those are no-ops here.
 */
function asAgentSocket(s: Duplex): Duplex {
  bufferStringWrites(s);
  const o = s as Duplex & Record<string, unknown>;
  for (const name of ['setKeepAlive', 'setNoDelay', 'ref', 'unref']) {
    if (typeof o[name] !== 'function') o[name] = () => s;
  }
  return s;
}

/** One agent or session per endpoint address, identity and way of reaching it. */
function endpointKey(endpoint: Workload, port: number): string {
  return `${endpoint.identity}|${endpoint.captured ? 'hbone' : 'tcp'}|${formatAddress({ ip: endpoint.ip, port })}`;
}

type WriteCallback = (err?: Error | null) => void;

/**
 * Node's HTTP code writes strings (headers) and Buffers (bodies) to its socket, corked together. On an
 * HTTP/2 stream that mix goes out corrupted (the first bytes of the header are overwritten; Node 20), so
 * strings are turned into Buffers before they reach the stream. onBytes counts what is written.
 */
export function bufferStringWrites(stream: Duplex, onBytes?: (n: number) => void): void {
  const write = stream.write.bind(stream) as (chunk: Buffer, cb?: WriteCallback) => boolean;
  stream.write = ((chunk: Buffer | string, encoding?: BufferEncoding | WriteCallback, cb?: WriteCallback) => {
    const buf = typeof chunk === 'string' ? Buffer.from(chunk, typeof encoding === 'string' ? encoding : 'utf8') : chunk;
    onBytes?.(buf.length);
    return write(buf, typeof encoding === 'function' ? encoding : cb);
  }) as typeof stream.write;
}
