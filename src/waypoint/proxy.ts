// The waypoint's data path. Each HBONE CONNECT names the address the client used (a service VIP:port, or
// a workload IP:port); once it is known to be this waypoint's traffic, it is served as HTTP (L7 policy,
// then HTTPRoute, per request) or as TCP (L4 policy, one endpoint), and sent on over HBONE.
import http from 'node:http';
import http2 from 'node:http2';
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import { formatAddress } from '../hbone/headers.js';
import type { HboneRequest } from '../hbone/server.js';
import type { State } from '../model/state.js';
import type { Service, Waypoint, Workload } from '../model/types.js';
import { copyBidirectional, type CopyProgress } from '../proxy/copy.js';
import { ConnectionRecord, connectionLabels, type Telemetry } from '../telemetry/access-log.js';
import type { AuthzConnection } from '../authz/model.js';
import type { WaypointPolicies } from './policies.js';
import { declaredProtocol, sniff, type AppProtocol } from './protocol.js';
import type { RequestInfo } from './routing.js';
import type { EndpointPicker } from '../proxy/endpoint-picker.js';
import { HOP_BY_HOP, chooseUpstream, decideRequest, type Forward, type HttpRequest, type HttpResponse, type Refusal, type RequestOutcome, type Target } from './request-decision.js';
import { parseRequestTarget } from './request-target.js';
import { bufferStringWrites, type Upstreams } from './upstream.js';

type Done = (status: number, outcome: RequestOutcome) => void;
/** A request begun: its attributes and where it goes, or the refusal of its target; either way its record. */
type Begun = { info: RequestInfo; host: string; remoteIp: string; forward: string; done: Done } | { refused: Refusal; done: Done };

export interface WaypointProxyInputs {
  readonly waypoint: Pick<Waypoint, 'uid' | 'name' | 'namespace'>;
  readonly state: State;
  readonly policies: WaypointPolicies;
  readonly upstreams: Upstreams;
  readonly telemetry: Telemetry;
  readonly logger: Logger;
  readonly random?: () => number;
  /** Endpoint choice, shared with the node daemon's: health, locality, affinity, open requests. */
  readonly endpoints: EndpointPicker;
  /** Where this waypoint runs (its own pod), for locality; undefined when it cannot tell. */
  readonly self: () => Pick<Workload, 'node' | 'locality'> | undefined;
}

export class WaypointProxy {
  readonly #in: WaypointProxyInputs;
  readonly #http1: http.Server;
  readonly #targets = new WeakMap<Duplex, Target>();
  readonly #open = new Set<Duplex>();
  /** Open TCP connections and what they were authorized as, for re-evaluation after a policy change. */
  readonly #tcp = new Map<Duplex, { service: Service | undefined; conn: AuthzConnection }>();

  constructor(inputs: WaypointProxyInputs) {
    this.#in = inputs;
    // One HTTP/1.1 server for every HBONE stream; each stream is its "socket".
    this.#http1 = http.createServer({ keepAliveTimeout: 60_000 }, (req, res) => {
      const t = this.#targets.get(req.socket);
      if (t === undefined) res.writeHead(500).end();
      else this.#onRequest(t, req, res);
    });
    this.#http1.on('upgrade', (req: http.IncomingMessage, socket: Duplex, head: Buffer) => {
      const t = this.#targets.get(socket);
      if (t === undefined) socket.destroy();
      else this.#onUpgrade(t, req, socket, head);
    });
    // Whatever a client sends, it costs only its own connection: a 400 when it can still be told.
    this.#http1.on('clientError', (err: Error & { code?: string }, socket: Duplex) => {
      inputs.logger.debug({ err: err.message, code: err.code }, 'bad HTTP request from a client');
      if (socket.writable && err.code !== 'ECONNRESET') socket.end('HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\r\n');
      else socket.destroy();
    });
  }

  /** Serves one HBONE CONNECT addressed to the waypoint. */
  handle(hbone: HboneRequest): void {
    const { state, waypoint, telemetry } = this.#in;
    const service = state.serviceByVip(hbone.dst.ip);
    const workload = service === undefined ? state.workloadByIp(hbone.dst.ip) : undefined;
    const srcWorkload = state.workloadByIp(hbone.src.ip);
    const record = new ConnectionRecord(telemetry, {
      direction: 'inbound',
      reporter: 'waypoint',
      src: hbone.src,
      srcWorkload,
      srcIdentity: hbone.peerIdentity,
      dst: hbone.dst,
      dstService: service?.uid,
      dstWorkload: workload,
      mtls: true,
    });
    const ours = service !== undefined ? service.waypoint === waypoint.uid : workload?.waypoint === waypoint.uid;
    const port = service?.ports.find((p) => p.port === hbone.dst.port);
    if (!ours || (service !== undefined && port === undefined)) {
      const why = !ours ? `${formatAddress(hbone.dst)} does not use waypoint ${waypoint.uid}` : `service ${service?.uid ?? ''} has no port ${hbone.dst.port}`;
      record.record({ clientToServer: 0, serverToClient: 0, error: new Error(why), flag: 'NO_ROUTE' });
      if (!hbone.stream.destroyed) hbone.stream.respond({ ':status': 503 }, { endStream: true });
      return;
    }
    const target: Target = { hbone, service, port, workload, srcWorkload };
    hbone.stream.respond({ ':status': 200 });
    record.opened();
    this.#open.add(hbone.stream);
    hbone.stream.once('close', () => this.#open.delete(hbone.stream));
    const declared = declaredProtocol(port);
    // Like Envoy's HTTP codec "auto", a port declared http still speaks either HTTP/1.1 or h2c. A port
    // declared h2c is read up to its first bytes too: handing an unread stream to the HTTP/2 server
    // failed with protocol errors (Node 20), the hand-off after a first read does not.
    const protocol: Promise<AppProtocol> =
      declared === 'tcp'
        ? Promise.resolve(declared)
        : sniff(hbone.stream).then((p) => (declared === 'h2c' ? 'h2c' : declared === 'http' && p === 'tcp' ? 'http1' : p));
    protocol.then((p) => {
      if (hbone.stream.destroyed) return record.record({ clientToServer: 0, serverToClient: 0 });
      if (p === 'tcp') return this.#serveTcp(target, record);
      const bytes = { in: 0, out: 0 };
      hbone.stream.on('data', (c: Buffer) => (bytes.in += c.length));
      bufferStringWrites(hbone.stream, (n) => (bytes.out += n));
      hbone.stream.once('close', () => record.record({ clientToServer: bytes.in, serverToClient: bytes.out }));
      if (p === 'http1') {
        this.#targets.set(hbone.stream, target);
        this.#http1.emit('connection', hbone.stream);
      } else {
        const h2c = http2.createServer({}, (req, res) => this.#onRequest(target, req, res));
        h2c.on('sessionError', (err) => this.#in.logger.warn({ err: err.message }, 'h2c session error'));
        h2c.emit('connection', hbone.stream);
      }
    }).catch((err: Error) => {
      // Never a crash for what one peer sent: that connection ends, and says why.
      this.#in.logger.warn({ err: err.message, src: formatAddress(hbone.src) }, 'waypoint connection failed');
      record.record({ clientToServer: 0, serverToClient: 0, error: err, flag: 'CONNECTION_FAILURE' });
      hbone.stream.destroy();
    });
  }

  /** Plain TCP through the waypoint: L4 policy, then one endpoint of the service. */
  #serveTcp(t: Target, record: ConnectionRecord): void {
    const { hbone } = t;
    const conn: AuthzConnection = { srcIp: hbone.src.ip, srcIdentity: hbone.peerIdentity, dstIp: hbone.dst.ip, dstPort: hbone.dst.port };
    const decision = this.#in.policies.decide(t.service, conn);
    const progress: CopyProgress = { aToB: 0, bToA: 0 };
    if (!decision.allow) {
      this.#in.logger.warn({ src: formatAddress(hbone.src), srcIdentity: hbone.peerIdentity, dst: formatAddress(hbone.dst), policy: decision.policy ?? null, reason: decision.reason }, 'connection denied by policy');
      record.record({ clientToServer: 0, serverToClient: 0, error: new Error(decision.reason), flag: 'DENIED' });
      hbone.stream.close(http2.constants.NGHTTP2_REFUSED_STREAM);
      return;
    }
    const chosen = chooseUpstream(this.#in, t.service, hbone.dst.port, t.workload, hbone.src.ip);
    if ('error' in chosen) {
      record.record({ clientToServer: 0, serverToClient: 0, error: new Error(chosen.error), flag: 'NO_HEALTHY_UPSTREAM' });
      hbone.stream.close(http2.constants.NGHTTP2_CANCEL);
      return;
    }
    record.fields.dstWorkload = chosen.endpoint;
    record.fields.dstIdentity = chosen.endpoint.identity;
    record.onRecorded(this.#in.endpoints.opened(chosen.endpoint.uid));
    this.#in.upstreams.open(chosen.endpoint, chosen.port, hbone.src).then(
      (upstream) => {
        this.#tcp.set(upstream, { service: t.service, conn });
        upstream.once('close', () => this.#tcp.delete(upstream));
        record.track(copyBidirectional(hbone.stream, upstream, progress), progress);
      },
      (err: Error) => {
        record.record({ clientToServer: 0, serverToClient: 0, error: err, flag: 'UPSTREAM_CONNECT' });
        hbone.stream.close(http2.constants.NGHTTP2_CANCEL);
      },
    );
  }

  /**
   * What every request outcome needs: the request's attributes (or why its target is refused), and one
   * access-log line and metrics.
   */
  #begin(t: Target, req: HttpRequest): Begun {
    const started = process.hrtime.bigint();
    const { hbone } = t;
    const method = req.method ?? 'GET';
    const target = parseRequestTarget(method, req.url ?? '/');
    const host = String(req.headers[':authority'] ?? req.headers.host ?? formatAddress(hbone.dst));
    const xff = req.headers['x-forwarded-for'];
    const remoteIp = (typeof xff === 'string' ? xff.split(',')[0]?.trim() : undefined) || hbone.src.ip;
    const done: Done = (status, outcome) => {
      outcome.release?.();
      const durationMs = Number(process.hrtime.bigint() - started) / 1e6;
      this.#report(t, outcome.backend ?? t.service?.uid, outcome.endpoint, status, durationMs);
      const line = {
        reporter: 'waypoint',
        'src.addr': formatAddress(hbone.src),
        'src.workload': t.srcWorkload?.name,
        'src.identity': hbone.peerIdentity,
        'dst.addr': formatAddress(hbone.dst),
        'dst.service': t.service?.uid,
        'dst.backend': outcome.backend,
        'dst.workload': outcome.endpoint?.name,
        method,
        path: 'error' in target ? req.url : target.path,
        host,
        route: outcome.route,
        response_code: status,
        duration: durationMs,
        ...(outcome.reason === undefined ? {} : { reason: outcome.reason }),
      };
      if (status >= 400) this.#in.telemetry.logger.warn(line, 'request failed');
      else this.#in.telemetry.logger.info(line, 'request complete');
    };
    if ('error' in target) return { refused: { status: 400, body: 'bad request-target\n', outcome: { reason: target.error } }, done };
    const info: RequestInfo = { method, path: target.path, query: target.query, headers: req.headers };
    return { info, host, remoteIp, forward: target.forward, done };
  }

  /** One HTTP request: policy, route, backend, endpoint, forward; every outcome is logged and counted. */
  #onRequest(t: Target, req: HttpRequest, res: HttpResponse): void {
    const begun = this.#begin(t, req);
    const { done } = begun;
    const reply = (status: number, body: string, outcome: RequestOutcome): void => {
      if (!res.headersSent) res.writeHead(status, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(body) });
      res.end(body);
      done(status, outcome);
    };
    if ('refused' in begun) return reply(begun.refused.status, begun.refused.body, begun.refused.outcome);
    const { info, host, remoteIp, forward } = begun;
    const d = decideRequest(this.#in, t, req, info, host, remoteIp);
    if ('status' in d) return reply(d.status, d.body, d.outcome);
    if (d.h2) return this.#forwardH2(req, res, d, forward, reply, done);
    const upstream = http.request({
      method: info.method,
      path: forward,
      headers: d.headers,
      setHost: false,
      agent: this.#in.upstreams.agentFor(d.endpoint, d.port),
    });
    upstream.on('response', (ur) => {
      const out: http.OutgoingHttpHeaders = {};
      for (const [k, v] of Object.entries(ur.headers)) if (!HOP_BY_HOP.has(k) && v !== undefined) out[k] = v;
      res.writeHead(ur.statusCode ?? 502, out);
      ur.pipe(res as NodeJS.WritableStream);
      ur.once('end', () => done(ur.statusCode ?? 502, d.outcome));
      ur.once('error', () => res.destroy());
    });
    upstream.on('error', (err) => {
      if (!res.headersSent) reply(503, 'upstream connect error\n', { ...d.outcome, reason: err.message });
      else {
        res.destroy();
        done(502, { ...d.outcome, reason: err.message });
      }
    });
    req.on('error', () => upstream.destroy());
    (req as NodeJS.ReadableStream).pipe(upstream);
  }

  /**
   * To a backend port declared HTTP/2 (http2, grpc, h2c), requests go on as HTTP/2 (h2c on the upstream
   * connection), so what HTTP/1.1 cannot carry survives: trailers (gRPC's status) and `te: trailers`.
   */
  #forwardH2(req: HttpRequest, res: HttpResponse, d: Forward, path: string, reply: (status: number, body: string, outcome: RequestOutcome) => void, done: Done): void {
    const { host, ...rest } = d.headers;
    const headers: http2.OutgoingHttpHeaders = { ...rest, ':method': req.method ?? 'GET', ':path': path, ':scheme': 'http', ':authority': String(host) };
    if (req.headers.te === 'trailers') headers['te'] = 'trailers';
    this.#in.upstreams
      .h2SessionFor(d.endpoint, d.port)
      .then((session) => {
        // request() throws on a session that is closing: that, too, ends this request only.
        const up = session.request(headers);
        up.on('response', (h) => {
          const out: http2.OutgoingHttpHeaders = {};
          for (const [k, v] of Object.entries(h)) if (!k.startsWith(':') && !HOP_BY_HOP.has(k) && v !== undefined) out[k] = v;
          const status = Number(h[':status'] ?? 502);
          res.writeHead(status, out);
          up.on('trailers', (trailers) => res.addTrailers(Object.fromEntries(Object.entries(trailers).filter(([k]) => !k.startsWith(':'))) as Record<string, string>));
          up.pipe(res as NodeJS.WritableStream);
          up.once('end', () => done(status, d.outcome));
        });
        up.on('error', (err) => {
          if (!res.headersSent) reply(503, 'upstream connect error\n', { ...d.outcome, reason: err.message });
          else res.destroy();
        });
        req.on('error', () => up.close(http2.constants.NGHTTP2_CANCEL));
        (req as NodeJS.ReadableStream).pipe(up);
      })
      .catch((err: Error) => {
        if (!res.headersSent) reply(503, 'upstream connect error\n', { ...d.outcome, reason: err.message });
        else res.destroy();
      });
  }

  /**
   * An HTTP/1.1 Upgrade (WebSocket and the like): the same policy and routing as any request, then the
   * request goes to the endpoint on a connection of its own and bytes are copied both ways from there.
   */
  #onUpgrade(t: Target, req: http.IncomingMessage, client: Duplex, head: Buffer): void {
    const begun = this.#begin(t, req);
    const refuse = (r: Refusal): void => {
      client.end(`HTTP/1.1 ${r.status} ${http.STATUS_CODES[r.status] ?? ''}\r\ncontent-type: text/plain\r\ncontent-length: ${Buffer.byteLength(r.body)}\r\nconnection: close\r\n\r\n${r.body}`);
      begun.done(r.status, r.outcome);
    };
    if ('refused' in begun) return refuse(begun.refused);
    const { info, host, remoteIp, forward, done } = begun;
    const d = decideRequest(this.#in, t, req, info, host, remoteIp);
    if ('status' in d) return refuse(d);
    const headers = { ...d.headers, connection: 'upgrade', upgrade: String(req.headers.upgrade ?? '') };
    const lines = [`${info.method} ${forward} HTTP/1.1`];
    for (const [k, v] of Object.entries(headers)) for (const one of Array.isArray(v) ? v : [v]) if (one !== undefined) lines.push(`${k}: ${String(one)}`);
    this.#in.upstreams
      .open(d.endpoint, d.port, t.hbone.src)
      .then((upstream) => {
        // Copying starts first, so every error of either side has its handler before any write.
        copyBidirectional(client, upstream).catch(() => undefined);
        // The status line of the answer, for the log; the bytes themselves go through untouched.
        upstream.once('data', (c: Buffer) => done(Number(/^HTTP\/1\.[01] (\d{3})/.exec(c.toString('latin1', 0, 16))?.[1] ?? 502), d.outcome));
        upstream.write(`${lines.join('\r\n')}\r\n\r\n`);
        if (head.length > 0) upstream.write(head);
      })
      .catch((err: Error) => {
        client.end('HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n');
        done(503, { ...d.outcome, reason: err.message });
      });
  }

  #report(t: Target, backend: string | undefined, endpoint: Workload | undefined, status: number, durationMs: number): void {
    const m = this.#in.telemetry.metrics;
    if (m === undefined) return;
    const labels = {
      ...connectionLabels(
        {
          direction: 'inbound',
          reporter: 'waypoint',
          srcWorkload: t.srcWorkload,
          srcIdentity: t.hbone.peerIdentity,
          dstWorkload: endpoint,
          dstIdentity: endpoint?.identity,
          dstService: backend,
          mtls: true,
        },
        undefined,
      ),
      request_protocol: 'http',
      response_code: String(status),
    };
    m.requests.inc(labels);
    m.requestDuration.observe(labels, durationMs);
  }

  /** After a policy change: closes the open TCP connections the policies no longer allow (HTTP is checked per request). */
  reauthorize(): number {
    let closed = 0;
    for (const [upstream, { service, conn }] of this.#tcp) {
      const d = this.#in.policies.decide(service === undefined ? undefined : (this.#in.state.serviceByName(service.namespace, service.name) ?? service), conn);
      if (d.allow) continue;
      this.#in.logger.warn({ srcIdentity: conn.srcIdentity ?? null, dst: `${conn.dstIp}:${conn.dstPort}`, policy: d.policy ?? null, reason: d.reason }, 'open connection closed: no longer allowed by policy');
      upstream.destroy(new Error(`closed after a policy change: ${d.reason}`));
      closed += 1;
    }
    return closed;
  }

  get openConnections(): number {
    return this.#open.size;
  }

  destroy(): void {
    for (const s of this.#open) s.destroy();
    this.#http1.close();
  }
}

