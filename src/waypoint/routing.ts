// HTTPRoute selection as the Gateway API specifies it, for one request to one service: which route rule
// matches (by precedence, not by order), and which weighted backend gets the request.
import type { HttpBackendRef, HttpRoute, HttpRouteMatch, HttpRouteRule, Service } from '../model/types.js';

export interface RequestInfo {
  readonly method: string;
  /** Path without the query string. */
  readonly path: string;
  readonly query: URLSearchParams;
  /** Lower-case names. */
  readonly headers: Readonly<Record<string, string | readonly string[] | undefined>>;
}

export interface RuleChoice {
  readonly route: HttpRoute;
  readonly rule: HttpRouteRule;
}

/**
 * The routes for a request to a service port, as GAMMA defines them: routes in the service's own namespace
 * (producer routes) apply to every client; a route in another namespace (a consumer route) applies only to
 * clients of its own namespace, and then instead of the producer's.
 */
export function routesForService(routes: readonly HttpRoute[], service: Service, port: number, clientNamespace: string | undefined): HttpRoute[] {
  const attached = routes.filter((r) =>
    r.parents.some((p) => p.kind === 'Service' && p.namespace === service.namespace && p.name === service.name && (p.port === undefined || p.port === port)),
  );
  const consumer = attached.filter((r) => r.namespace !== service.namespace && r.namespace === clientNamespace);
  return consumer.length > 0 ? consumer : attached.filter((r) => r.namespace === service.namespace);
}

const ROOT_MATCH: HttpRouteMatch = { path: { type: 'PathPrefix', value: '/' }, headers: [], queryParams: [], method: undefined };

/** Regular expressions are compiled once per pattern; a bad one never matches (and is reported at load). */
const regexCache = new Map<string, RegExp | null>();
export function compileRegex(pattern: string): RegExp | undefined {
  let re = regexCache.get(pattern);
  if (re === undefined) {
    try {
      re = new RegExp(`^(?:${pattern})$`);
    } catch {
      re = null;
    }
    regexCache.set(pattern, re);
  }
  return re ?? undefined;
}

/** PathPrefix matches whole segments: "/api" matches "/api" and "/api/x", not "/apix". */
function prefixMatches(prefix: string, path: string): boolean {
  const p = prefix.replace(/\/+$/, '');
  return p === '' || path === p || path.startsWith(`${p}/`);
}

function headerValue(headers: RequestInfo['headers'], name: string): string | undefined {
  const v = headers[name];
  return v === undefined ? undefined : typeof v === 'string' ? v : v.join(',');
}

export function matchHttp(m: HttpRouteMatch, req: RequestInfo): boolean {
  if (m.method !== undefined && m.method !== req.method) return false;
  const path = m.path;
  if (path !== undefined) {
    if (path.type === 'Exact' && req.path !== path.value) return false;
    if (path.type === 'PathPrefix' && !prefixMatches(path.value, req.path)) return false;
    if (path.type === 'RegularExpression' && compileRegex(path.value)?.test(req.path) !== true) return false;
  }
  for (const h of m.headers) {
    const v = headerValue(req.headers, h.name);
    if (v === undefined) return false;
    if (h.type === 'Exact' ? v !== h.value : compileRegex(h.value)?.test(v) !== true) return false;
  }
  for (const q of m.queryParams) {
    const v = req.query.get(q.name);
    if (v === null) return false;
    if (q.type === 'Exact' ? v !== q.value : compileRegex(q.value)?.test(v) !== true) return false;
  }
  return true;
}

/**
 * Gateway API precedence, with Istio's rank for what the spec leaves open: path Exact, then
 * RegularExpression, then PathPrefix; a longer path value first; then a method match; then the most
 * header matches; then the most query parameter matches.
 */
function precedence(m: HttpRouteMatch): number[] {
  const p = m.path ?? ROOT_MATCH.path;
  const kind = p?.type === 'Exact' ? 3 : p?.type === 'RegularExpression' ? 2 : 1;
  const length = p?.type === 'PathPrefix' ? p.value.replace(/\/+$/, '').length : (p?.value.length ?? 0);
  return [kind, length, m.method === undefined ? 0 : 1, m.headers.length, m.queryParams.length];
}

function compare(a: number[], b: number[]): number {
  for (let i = 0; i < a.length; i++) if ((a[i] ?? 0) !== (b[i] ?? 0)) return (b[i] ?? 0) - (a[i] ?? 0);
  return 0;
}

/** The matching rule with the highest precedence; ties go to the earlier route (list order), then the earlier rule. */
export function selectRule(routes: readonly HttpRoute[], req: RequestInfo): RuleChoice | undefined {
  let best: { choice: RuleChoice; score: number[] } | undefined;
  for (const route of routes) {
    for (const rule of route.rules) {
      for (const m of rule.matches.length === 0 ? [ROOT_MATCH] : rule.matches) {
        if (!matchHttp(m, req)) continue;
        const score = precedence(m);
        if (best === undefined || compare(score, best.score) < 0) best = { choice: { route, rule }, score };
      }
    }
  }
  return best?.choice;
}

/** Weighted choice; undefined when every weight is 0 (the Gateway API answers 500 then). */
export function pickBackend(backends: readonly HttpBackendRef[], random: () => number = Math.random): HttpBackendRef | undefined {
  const total = backends.reduce((sum, b) => sum + b.weight, 0);
  if (total <= 0) return undefined;
  let r = random() * total;
  for (const b of backends) {
    if (b.weight <= 0) continue;
    if (r < b.weight) return b;
    r -= b.weight;
  }
  return backends.findLast((b) => b.weight > 0);
}

/** Problems to report when the routes are loaded: patterns that do not compile. */
export function routeProblems(route: HttpRoute): string[] {
  const out: string[] = [];
  for (const rule of route.rules) {
    rule.matches.forEach((m, i) => {
      const patterns = [
        ...(m.path?.type === 'RegularExpression' ? [['path.value', m.path.value]] : []),
        ...m.headers.filter((h) => h.type === 'RegularExpression').map((h) => [`headers[${h.name}]`, h.value]),
        ...m.queryParams.filter((q) => q.type === 'RegularExpression').map((q) => [`queryParams[${q.name}]`, q.value]),
      ];
      for (const [field, pattern] of patterns) {
        if (compileRegex(pattern ?? '') === undefined) out.push(`spec.rules[${rule.index}].matches[${i}].${field ?? ''}: "${pattern ?? ''}" is not a valid regular expression; it never matches`);
      }
    });
    for (const f of rule.unsupportedFilters) out.push(`spec.rules[${rule.index}]: ${f} is not supported by this waypoint; requests matching the rule get 500`);
  }
  return out;
}
