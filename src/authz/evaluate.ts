// Evaluation as ztunnel does it (src/rbac.rs Authorization::matches, src/state.rs assert_rbac).
import ipaddr from 'ipaddr.js';
import { canonicalIp } from '../model/address.js';
import { parseIdentity } from '../model/identity.js';
import { labelsMatch, type Workload } from '../model/types.js';
import {
  isEmptyMatch,
  policyName,
  type Authorization,
  type AuthzConnection,
  type Cidr,
  type Match,
  type ServiceAccountMatch,
  type StringMatch,
} from './model.js';

export interface Decision {
  readonly allow: boolean;
  /** "namespace/name" of the deciding policy; undefined when no policy decided. */
  readonly policy: string | undefined;
  /** Index of the deciding rule in that policy's spec.rules (-1: the policy is malformed and fails closed). */
  readonly rule: number | undefined;
  readonly reason: string;
}

/** Policies that apply to a workload: global, its namespace's, and selector policies that select it. */
export function applicablePolicies(all: readonly Authorization[], w: Workload, rootNamespace: string): Authorization[] {
  return all.filter((p) => {
    switch (p.scope.kind) {
      case 'targets':
        return false; // a waypoint's, never ztunnel's
      case 'global':
        return true;
      case 'namespace':
        return p.namespace === w.namespace;
      case 'selector':
        return (
          p.scope.matchLabels !== undefined &&
          (p.namespace === w.namespace || p.namespace === rootNamespace) &&
          labelsMatch(p.scope.matchLabels, w.labels)
        );
    }
  });
}

export function evaluate(policies: readonly Authorization[], conn: AuthzConnection): Decision {
  const enforced = policies.filter((p) => !p.dryRun);
  // "If there are any DENY policies that match the request, deny the request."
  for (const p of enforced) {
    if (p.action !== 'deny') continue;
    const rule = matchingRule(p, conn);
    if (rule !== undefined) return { allow: false, policy: policyName(p), rule, reason: `denied by DENY policy ${policyName(p)} rule ${rule}` };
  }
  const allows = enforced.filter((p) => p.action === 'allow');
  // "If there are no ALLOW policies for the workload, allow the request."
  if (allows.length === 0) return { allow: true, policy: undefined, rule: undefined, reason: 'no ALLOW policy applies' };
  // "If any of the ALLOW policies match the request, allow the request."
  for (const p of allows) {
    const rule = matchingRule(p, conn);
    if (rule !== undefined) return { allow: true, policy: policyName(p), rule, reason: `allowed by ALLOW policy ${policyName(p)} rule ${rule}` };
  }
  return { allow: false, policy: undefined, rule: undefined, reason: 'no ALLOW policy matched' };
}

/** The index of the first rule of p that matches conn. */
export function matchingRule(p: Authorization, conn: AuthzConnection): number | undefined {
  for (const rule of p.rules) {
    if (rule.clauses.every((clause) => clause.length === 0 || clause.some((m) => !isEmptyMatch(m) && matches(m, conn)))) {
      return rule.index;
    }
  }
  return undefined;
}

function field<T>(pos: readonly T[], neg: readonly T[], f: (v: T) => boolean): boolean {
  return (pos.length === 0 || pos.some(f)) && (neg.length === 0 || !neg.some(f));
}

function matches(m: Match, conn: AuthzConnection): boolean {
  const id = conn.srcIdentity === undefined ? undefined : parseIdentity(conn.srcIdentity);
  return (
    field(m.destinationIps, m.notDestinationIps, (c) => inCidr(conn.dstIp, c)) &&
    field(m.sourceIps, m.notSourceIps, (c) => inCidr(conn.srcIp, c)) &&
    field(m.destinationPorts, m.notDestinationPorts, (p) => p === conn.dstPort) &&
    field(m.serviceAccounts, m.notServiceAccounts, (sa) => serviceAccountMatches(sa, id)) &&
    field(m.principals, m.notPrincipals, (s) => principalMatches(s, conn.srcIdentity)) &&
    field(m.namespaces, m.notNamespaces, (s) => id !== undefined && stringMatches(s, id.namespace)) &&
    httpMatches(m, conn)
  );
}

const HTTP_FIELDS = ['hosts', 'notHosts', 'methods', 'notMethods', 'paths', 'notPaths', 'requestPrincipals', 'notRequestPrincipals', 'remoteIps', 'notRemoteIps', 'headers'] as const;

/** HTTP attributes; a connection seen only at L4 (no http) never matches a match that names one. */
function httpMatches(m: Match, conn: AuthzConnection): boolean {
  const h = conn.http;
  if (h === undefined) return HTTP_FIELDS.every((f) => m[f].length === 0);
  const host = h.host.toLowerCase();
  const bareHost = host.replace(/:\d+$/, '');
  const hostMatches = (s: StringMatch): boolean => {
    const lower = s.kind === 'presence' ? s : { ...s, value: s.value.toLowerCase() };
    return stringMatches(lower, host) || stringMatches(lower, bareHost);
  };
  return (
    field(m.hosts, m.notHosts, hostMatches) &&
    field(m.methods, m.notMethods, (s) => stringMatches(s, h.method)) &&
    field(m.paths, m.notPaths, (s) => stringMatches(s, h.path)) &&
    // No JWT authentication here: the request principal is always empty.
    field(m.requestPrincipals, m.notRequestPrincipals, (s) => stringMatches(s, '')) &&
    field(m.remoteIps, m.notRemoteIps, (c) => inCidr(h.remoteIp, c)) &&
    m.headers.every((hm) => {
      const raw = h.headers[hm.name];
      const value = raw === undefined ? undefined : Array.isArray(raw) ? raw.join(',') : (raw as string);
      return field(hm.values, hm.notValues, (s) => value !== undefined && stringMatches(s, value));
    })
  );
}

function stringMatches(s: StringMatch, v: string): boolean {
  switch (s.kind) {
    case 'exact':
      return v === s.value;
    case 'prefix':
      return v.startsWith(s.value);
    case 'suffix':
      return v.endsWith(s.value);
    case 'presence':
      return v !== '';
  }
}

/** Principals are written without "spiffe://"; plaintext (no identity) never matches a positive value. */
function principalMatches(s: StringMatch, identity: string | undefined): boolean {
  if (identity === undefined || !identity.startsWith('spiffe://')) return false;
  return stringMatches(s, identity.slice('spiffe://'.length));
}

function serviceAccountMatches(sa: ServiceAccountMatch, id: ReturnType<typeof parseIdentity>): boolean {
  return id !== undefined && id.namespace === sa.namespace && id.serviceAccount === sa.serviceAccount;
}

function inCidr(ip: string, c: Cidr): boolean {
  // An IPv4-mapped IPv6 source (a dual-stack socket's view of an IPv4 peer) is matched as the IPv4 address.
  const canonical = canonicalIp(ip);
  if (canonical === undefined) return false;
  const addr = ipaddr.parse(canonical);
  if ((addr.kind() === 'ipv4' ? 4 : 6) !== c.family) return false;
  const bytes = addr.toByteArray();
  let bits = c.prefix;
  for (let i = 0; bits > 0; i++, bits -= 8) {
    const mask = bits >= 8 ? 0xff : (0xff << (8 - bits)) & 0xff;
    if (((bytes[i] ?? 0) & mask) !== (c.bytes[i] ?? 0)) return false;
  }
  return true;
}
