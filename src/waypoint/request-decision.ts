// What the waypoint does with one request or connection, decided before any I/O: L7 policy, the HTTPRoute
// rule and its backend, the endpoint (the node daemon's chooser), the headers sent on.
import type http from 'node:http';
import type http2 from 'node:http2';
import type { HboneRequest } from '../hbone/server.js';
import type { HeaderModifier, Service, ServicePort, Workload } from '../model/types.js';
import { chooseServiceEndpoint } from '../proxy/outbound-request.js';
import { NO_LOCALITY } from '../sources/endpoint-health.js';
import type { WaypointProxyInputs } from './proxy.js';
import { declaredProtocol } from './protocol.js';
import { pickBackend, routesForService, selectRule, type RequestInfo } from './routing.js';

/** What one HBONE stream is for, once resolved. */
export interface Target {
  readonly hbone: HboneRequest;
  readonly service: Service | undefined;
  readonly port: ServicePort | undefined;
  /** Set when the client addressed a workload directly. */
  readonly workload: Workload | undefined;
  readonly srcWorkload: Workload | undefined;
}

/** A request the waypoint answers itself. */
export interface Refusal {
  readonly status: number;
  readonly body: string;
  readonly outcome: RequestOutcome;
}

/** A request to send on. */
export interface Forward {
  readonly endpoint: Workload;
  readonly port: number;
  /** The backend port is declared HTTP/2: send on as h2c. */
  readonly h2: boolean;
  readonly headers: http.OutgoingHttpHeaders;
  readonly outcome: RequestOutcome;
}

export interface RequestOutcome {
  readonly route?: string | undefined;
  readonly backend?: string | undefined;
  readonly endpoint?: Workload | undefined;
  /** Gives the endpoint's share of load back when the request ends. */
  readonly release?: () => void;
  readonly reason?: string | undefined;
}

export type HttpRequest = http.IncomingMessage | http2.Http2ServerRequest;
export type HttpResponse = http.ServerResponse | http2.Http2ServerResponse;

/** Hop-by-hop headers are not forwarded (RFC 9110 §7.6.1), nor HTTP/2 pseudo-headers. */
export const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'te', 'trailer', 'http2-settings', 'host']);

/** The request's headers as sent on: no hop-by-hop headers, X-Forwarded-*, the route's header changes. */
function forwardHeaders(req: HttpRequest, host: string, clientIp: string, modifier: HeaderModifier | undefined): http.OutgoingHttpHeaders {
  const headers: http.OutgoingHttpHeaders = { host };
  for (const [k, v] of Object.entries(req.headers)) if (!k.startsWith(':') && !HOP_BY_HOP.has(k) && v !== undefined) headers[k] = v;
  const xff = req.headers['x-forwarded-for'];
  headers['x-forwarded-for'] = typeof xff === 'string' ? `${xff}, ${clientIp}` : clientIp;
  headers['x-forwarded-proto'] = 'http';
  if (modifier !== undefined) {
    for (const h of modifier.set) headers[h.name.toLowerCase()] = h.value;
    for (const h of modifier.add) {
      const prev = headers[h.name.toLowerCase()];
      headers[h.name.toLowerCase()] = prev === undefined ? h.value : `${String(prev)},${h.value}`;
    }
    for (const name of modifier.remove) delete headers[name.toLowerCase()];
  }
  return headers;
}

/** Policy, then route, backend and endpoint: a refusal to answer, or where to send the request. */
export function decideRequest(inputs: WaypointProxyInputs, t: Target, req: HttpRequest, info: RequestInfo, host: string, remoteIp: string): Refusal | Forward {
  const { hbone } = t;
  const decision = inputs.policies.decide(t.service, {
    srcIp: hbone.src.ip,
    srcIdentity: hbone.peerIdentity,
    dstIp: hbone.dst.ip,
    dstPort: hbone.dst.port,
    http: { host, method: info.method, path: info.path, headers: req.headers, remoteIp },
  });
  if (!decision.allow) return { status: 403, body: 'RBAC: access denied\n', outcome: { reason: decision.reason } };
  let backend = t.service;
  let backendPort = hbone.dst.port;
  let route: string | undefined;
  let modifier: HeaderModifier | undefined;
  if (t.service !== undefined) {
    const routes = routesForService(inputs.state.httpRoutes, t.service, hbone.dst.port, t.srcWorkload?.namespace);
    if (routes.length > 0) {
      const choice = selectRule(routes, info);
      if (choice === undefined) return { status: 404, body: 'route not found\n', outcome: { reason: 'no HTTPRoute rule matches' } };
      route = `${choice.route.uid}#${choice.rule.index}`;
      if (choice.rule.unsupportedFilters.length > 0) {
        return { status: 500, body: 'route not supported\n', outcome: { route, reason: choice.rule.unsupportedFilters.join(', ') } };
      }
      const ref = pickBackend(choice.rule.backends, inputs.random);
      backend = ref === undefined ? undefined : inputs.state.serviceByName(ref.namespace, ref.name);
      if (ref === undefined || backend === undefined) {
        return { status: 500, body: 'no valid backend\n', outcome: { route, reason: ref === undefined ? 'all backend weights are 0' : `backend Service ${ref.namespace}/${ref.name} not found` } };
      }
      backendPort = ref.port ?? hbone.dst.port;
      modifier = choice.rule.requestHeaders;
    }
  }
  const chosen = chooseUpstream(inputs, backend, backendPort, t.workload, hbone.src.ip);
  if ('error' in chosen) return { status: 503, body: 'no healthy upstream\n', outcome: { route, backend: backend?.uid, reason: chosen.error } };
  const h2 = declaredProtocol(backend?.ports.find((p) => p.port === backendPort)) === 'h2c';
  const release = inputs.endpoints.opened(chosen.endpoint.uid);
  return { endpoint: chosen.endpoint, port: chosen.port, h2, outcome: { route, backend: backend?.uid, endpoint: chosen.endpoint, release }, headers: forwardHeaders(req, host, hbone.src.ip, modifier) };
}

/** An endpoint of service (port mapped to its target port), chosen as the node daemon chooses; or the addressed workload itself. */
export function chooseUpstream(inputs: WaypointProxyInputs, service: Service | undefined, port: number, workload: Workload | undefined, clientIp: string): { endpoint: Workload; port: number } | { error: string } {
  if (service === undefined) return workload === undefined ? { error: 'no destination' } : { endpoint: workload, port };
  const me = inputs.self();
  const choice = chooseServiceEndpoint(inputs.state, inputs.endpoints, service, port, { node: me?.node ?? '', locality: me?.locality ?? NO_LOCALITY, ip: clientIp });
  if (choice === undefined) return { error: `service ${service.uid} has no port ${port}` };
  if (!choice.ok) return { error: `service ${service.uid}: ${choice.reason}` };
  return { endpoint: choice.endpoint, port: choice.value };
}
