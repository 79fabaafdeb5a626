// AuthorizationPolicy → Authorization, as istiod translates it for ztunnel
// (pilot/pkg/serviceregistry/ambient/authorization.go: convertAuthorizationPolicy, handleRule).
import ipaddr from 'ipaddr.js';
import type { StoredPolicy } from '../model/types.js';
import { formatPath } from '../sources/kube-schema.js';
import {
  EMPTY_MATCH,
  type Authorization,
  type Cidr,
  type Clause,
  type Match,
  type Rule,
  type Scope,
  type ServiceAccountMatch,
  type StringMatch,
  type TargetRef,
} from './model.js';
import { specSchema, type PolicyOperation, type PolicyRule, type PolicySource } from './schema.js';

export const DRY_RUN_ANNOTATION = 'istio.io/dry-run';
export const DEFAULT_ROOT_NAMESPACE = 'istio-system';

export interface TranslatedPolicy {
  readonly namespace: string;
  readonly name: string;
  readonly origin: string;
  /** undefined: istiod would not send it to ztunnel (CUSTOM/AUDIT, targetRefs, dry-run). */
  readonly authorization: Authorization | undefined;
  /** Like istiod's status conditions: what was dropped, ignored or narrowed, and why. */
  readonly warnings: readonly string[];
  /** Set when the policy is malformed; it is then enforced fail-closed (see failClosed). */
  readonly error: string | undefined;
}

const L7_OPERATION_FIELDS = ['hosts', 'notHosts', 'methods', 'notMethods', 'paths', 'notPaths'] as const;
const L7_SOURCE_FIELDS = ['requestPrincipals', 'notRequestPrincipals', 'remoteIpBlocks', 'notRemoteIpBlocks'] as const;
const L4_WHEN_KEYS = new Set(['source.ip', 'source.namespace', 'source.principal', 'destination.ip', 'destination.port']);

/** Who enforces: ztunnel (selector and namespace policies, L4 only) or a waypoint (targetRefs, with HTTP). */
export type Enforcer = 'ztunnel' | 'waypoint';

export function translatePolicy(p: StoredPolicy, rootNamespace = DEFAULT_ROOT_NAMESPACE, enforcer: Enforcer = 'ztunnel'): TranslatedPolicy {
  const base = { namespace: p.namespace, name: p.name, origin: p.origin };
  const rawSpec = p.object['spec'] ?? {};
  const parsed = specSchema.safeParse(rawSpec);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const field = `spec.${formatPath(issue?.path ?? [])}`.replace(/\.$/, '');
    const error = `${field}: ${issue?.message ?? 'invalid'}`;
    return { ...base, authorization: failClosed(p, rawSpec, enforcer), warnings: [`${error}; enforced fail-closed`], error };
  }
  const spec = parsed.data;
  const warnings: string[] = [];
  const targeted = spec.targetRef !== undefined || (spec.targetRefs?.length ?? 0) > 0;
  if (enforcer === 'waypoint' && !targeted) {
    return { ...base, authorization: undefined, warnings: ['no targetRefs: enforced by ztunnel, not by a waypoint'], error: undefined };
  }

  const metadata = (p.object['metadata'] ?? {}) as { annotations?: Record<string, string> };
  const dryRunValue = metadata.annotations?.[DRY_RUN_ANNOTATION];
  if (dryRunValue !== undefined) {
    const dry = parseGoBool(dryRunValue);
    if (dry === true) {
      warnings.push('dry-run: not enforced (ambient dry-run is off, as in istiod by default)');
      return { ...base, authorization: undefined, warnings, error: undefined };
    }
    if (dry === undefined) warnings.push(`annotation ${DRY_RUN_ANNOTATION}="${dryRunValue}" is not a boolean; the policy is enforced`);
  }
  if (enforcer === 'ztunnel' && targeted) {
    warnings.push('targetRefs: enforced by the waypoint it targets, not by ztunnel');
    return { ...base, authorization: undefined, warnings, error: undefined };
  }
  const action = spec.action ?? 'ALLOW';
  if (action === 'CUSTOM' || action === 'AUDIT') {
    warnings.push(`${enforcer === 'waypoint' ? 'this waypoint' : 'ztunnel'} does not support the ${action} action; the policy is not enforced`);
    return { ...base, authorization: undefined, warnings, error: undefined };
  }
  const scope: Scope =
    enforcer === 'waypoint' ? { kind: 'targets', refs: targetRefsOf(spec) } : scopeOf(p.namespace, spec.selector, rootNamespace);
  if (enforcer === 'waypoint' && spec.selector !== undefined) warnings.push('selector is ignored: targetRefs choose where the policy applies');
  if (scope.kind === 'selector' && scope.matchLabels === undefined) {
    warnings.push('selector without matchLabels selects no workload');
  }
  const rules: Rule[] = [];
  const invalid: string[] = [];
  (spec.rules ?? []).forEach((rule, index) => {
    const { clauses, l7 } = handleRule(rule, index, p.namespace, warnings, invalid, enforcer === 'waypoint');
    if (l7.length > 0) {
      if (action === 'ALLOW') {
        warnings.push(
          `rule ${index}: HTTP attributes (${l7.join(', ')}) cannot be enforced at L4; within an ALLOW policy the whole rule is omitted, which is more restrictive than requested`,
        );
        return;
      }
      warnings.push(
        `rule ${index}: HTTP attributes (${l7.join(', ')}) are omitted from this DENY rule; the L4 part is enforced, and a part with only HTTP attributes never matches`,
      );
    }
    rules.push({ index, clauses });
  });
  // istiod drops values it cannot parse. In an ALLOW that only narrows it, but in a DENY it can turn the
  // policy into a no-op, so a DENY with an unusable value is enforced fail-closed instead.
  if (action === 'DENY' && invalid.length > 0) {
    const error = `${invalid[0] ?? ''}; a DENY policy with unusable values denies everything it applies to`;
    return { ...base, authorization: failClosed(p, rawSpec, enforcer), warnings: [...warnings, error], error };
  }
  if (rules.length === 0 && action === 'ALLOW') {
    warnings.push('no effective rules: this ALLOW policy matches nothing, so it denies what no other ALLOW policy allows');
  }
  return {
    ...base,
    authorization: { name: p.name, namespace: p.namespace, scope, action: action === 'DENY' ? 'deny' : 'allow', rules, dryRun: false },
    warnings,
    error: undefined,
  };
}

/** A targetRef with its group defaulted as the CRD does: core for a Service, the Gateway API otherwise. */
function targetRef(group: string | undefined, kind: string, name: string): TargetRef {
  return { group: group ?? (kind === 'Service' ? '' : 'gateway.networking.k8s.io'), kind, name };
}

function targetRefsOf(spec: { targetRef?: { group?: string | undefined; kind: string; name: string } | undefined; targetRefs?: { group?: string | undefined; kind: string; name: string }[] | undefined }): TargetRef[] {
  return [...(spec.targetRef === undefined ? [] : [spec.targetRef]), ...(spec.targetRefs ?? [])].map((r) => targetRef(r.group, r.kind, r.name));
}

/** A malformed policy must not widen access: a DENY denies everything in its scope, an ALLOW allows nothing. */
function failClosed(p: StoredPolicy, rawSpec: unknown, enforcer: Enforcer = 'ztunnel'): Authorization | undefined {
  const raw = (rawSpec ?? {}) as { action?: unknown; selector?: { matchLabels?: unknown }; targetRef?: unknown; targetRefs?: unknown };
  const refs = [raw.targetRef, ...(Array.isArray(raw.targetRefs) ? (raw.targetRefs as unknown[]) : [])].flatMap((r) => {
    const o = r as { group?: unknown; kind?: unknown; name?: unknown } | undefined;
    return typeof o?.kind === 'string' && typeof o.name === 'string'
      ? [targetRef(typeof o.group === 'string' ? o.group : undefined, o.kind, o.name)]
      : [];
  });
  if (enforcer === 'waypoint') {
    // Not recognisably a waypoint's policy: ztunnel enforces it (fail-closed there).
    if (refs.length === 0) return undefined;
    const deny = raw.action === 'DENY';
    return { name: p.name, namespace: p.namespace, scope: { kind: 'targets', refs }, action: deny ? 'deny' : 'allow', rules: deny ? [{ index: -1, clauses: [] }] : [], dryRun: false };
  }
  const labels = raw.selector?.matchLabels;
  const selector =
    typeof labels === 'object' && labels !== null && Object.values(labels).every((v) => typeof v === 'string')
      ? (labels as Record<string, string>)
      : undefined;
  const scope: Scope = selector !== undefined ? { kind: 'selector', matchLabels: selector } : { kind: 'namespace' };
  const deny = raw.action === 'DENY';
  return {
    name: p.name,
    namespace: p.namespace,
    scope,
    action: deny ? 'deny' : 'allow',
    rules: deny ? [{ index: -1, clauses: [] }] : [],
    dryRun: false,
  };
}

function scopeOf(namespace: string, selector: { matchLabels?: Record<string, string> | undefined } | undefined, root: string): Scope {
  if (selector !== undefined) return { kind: 'selector', matchLabels: selector.matchLabels };
  return namespace === root ? { kind: 'global' } : { kind: 'namespace' };
}

/** Go's strconv.ParseBool. */
function parseGoBool(v: string): boolean | undefined {
  if (['1', 't', 'T', 'TRUE', 'true', 'True'].includes(v)) return true;
  if (['0', 'f', 'F', 'FALSE', 'false', 'False'].includes(v)) return false;
  return undefined;
}

function handleRule(
  rule: PolicyRule,
  index: number,
  namespace: string,
  warnings: string[],
  invalid: string[],
  http = false,
): { clauses: Clause[]; l7: string[] } {
  const clauses: Clause[] = [];
  const l7 = new Set<string>();
  const ctx = { index, warnings, invalid, http };
  if ((rule.to?.length ?? 0) > 0) {
    clauses.push((rule.to ?? []).map(({ operation }) => operationMatch(operation ?? {}, ctx, l7)));
  }
  if ((rule.from?.length ?? 0) > 0) {
    clauses.push((rule.from ?? []).map(({ source }) => sourceMatch(source ?? {}, namespace, ctx, l7)));
  }
  for (const cond of rule.when ?? []) {
    const header = /^request\.headers\[(.+)\]$/.exec(cond.key)?.[1];
    if (http && header !== undefined) {
      clauses.push([{ ...EMPTY_MATCH, headers: [{ name: header.toLowerCase(), values: (cond.values ?? []).map(stringMatch), notValues: (cond.notValues ?? []).map(stringMatch) }] }]);
      continue;
    }
    if (http && cond.key === 'remote.ip') {
      const field = `when ${cond.key}`;
      clauses.push([{ ...EMPTY_MATCH, remoteIps: ips(cond.values ?? [], field, ctx), notRemoteIps: ips(cond.notValues ?? [], field, ctx) }]);
      continue;
    }
    if (http && !L4_WHEN_KEYS.has(cond.key)) {
      // Unknown to this waypoint: istiod would reject it; here an ALLOW rule never matches, a DENY fails closed.
      dropped(ctx, 'when', cond.key, 'a condition key this waypoint supports');
      clauses.push([EMPTY_MATCH]);
      continue;
    }
    if (!L4_WHEN_KEYS.has(cond.key)) {
      l7.add(`when ${cond.key}`);
      clauses.push([EMPTY_MATCH]);
      continue;
    }
    const values = cond.values ?? [];
    const notValues = cond.notValues ?? [];
    const field = `when ${cond.key}`;
    switch (cond.key) {
      case 'source.ip':
        clauses.push([{ ...EMPTY_MATCH, sourceIps: ips(values, field, ctx), notSourceIps: ips(notValues, field, ctx) }]);
        break;
      case 'destination.ip':
        clauses.push([{ ...EMPTY_MATCH, destinationIps: ips(values, field, ctx), notDestinationIps: ips(notValues, field, ctx) }]);
        break;
      case 'destination.port':
        clauses.push([{ ...EMPTY_MATCH, destinationPorts: ports(values, field, ctx), notDestinationPorts: ports(notValues, field, ctx) }]);
        break;
      case 'source.namespace':
        clauses.push([{ ...EMPTY_MATCH, namespaces: values.map(stringMatch), notNamespaces: notValues.map(stringMatch) }]);
        break;
      case 'source.principal':
        clauses.push([{ ...EMPTY_MATCH, principals: values.map(stringMatch), notPrincipals: notValues.map(stringMatch) }]);
        break;
    }
  }
  return { clauses, l7: [...l7] };
}

interface RuleCtx {
  readonly index: number;
  readonly warnings: string[];
  /** Values that could not be parsed, as "spec.rules[i] field: value". */
  readonly invalid: string[];
  /** A waypoint's translation: HTTP attributes are kept. */
  readonly http: boolean;
}

function dropped(ctx: RuleCtx, field: string, v: string, what: string): void {
  ctx.warnings.push(`rule ${ctx.index}: ${field} value "${v}" is not ${what} and is ignored`);
  ctx.invalid.push(`spec.rules[${ctx.index}] ${field}: "${v}" is not ${what}`);
}

function operationMatch(op: PolicyOperation, ctx: RuleCtx, l7: Set<string>): Match {
  if (!ctx.http) for (const f of L7_OPERATION_FIELDS) if ((op[f]?.length ?? 0) > 0) l7.add(f);
  const base = {
    ...EMPTY_MATCH,
    destinationPorts: ports(op.ports ?? [], 'ports', ctx),
    notDestinationPorts: ports(op.notPorts ?? [], 'notPorts', ctx),
  };
  if (!ctx.http) return base;
  return {
    ...base,
    hosts: (op.hosts ?? []).map(stringMatch),
    notHosts: (op.notHosts ?? []).map(stringMatch),
    methods: (op.methods ?? []).map(stringMatch),
    notMethods: (op.notMethods ?? []).map(stringMatch),
    paths: (op.paths ?? []).map(stringMatch),
    notPaths: (op.notPaths ?? []).map(stringMatch),
  };
}

function sourceMatch(src: PolicySource, namespace: string, ctx: RuleCtx, l7: Set<string>): Match {
  if (!ctx.http) for (const f of L7_SOURCE_FIELDS) if ((src[f]?.length ?? 0) > 0) l7.add(f);
  const http = !ctx.http
    ? {}
    : {
        requestPrincipals: (src.requestPrincipals ?? []).map(stringMatch),
        notRequestPrincipals: (src.notRequestPrincipals ?? []).map(stringMatch),
        remoteIps: ips(src.remoteIpBlocks ?? [], 'remoteIpBlocks', ctx),
        notRemoteIps: ips(src.notRemoteIpBlocks ?? [], 'notRemoteIpBlocks', ctx),
      };
  return {
    ...EMPTY_MATCH,
    ...http,
    sourceIps: ips(src.ipBlocks ?? [], 'ipBlocks', ctx),
    notSourceIps: ips(src.notIpBlocks ?? [], 'notIpBlocks', ctx),
    namespaces: (src.namespaces ?? []).map(stringMatch),
    notNamespaces: (src.notNamespaces ?? []).map(stringMatch),
    serviceAccounts: (src.serviceAccounts ?? []).map((v) => serviceAccountMatch(v, namespace)),
    notServiceAccounts: (src.notServiceAccounts ?? []).map((v) => serviceAccountMatch(v, namespace)),
    principals: (src.principals ?? []).map(stringMatch),
    notPrincipals: (src.notPrincipals ?? []).map(stringMatch),
  };
}

/** istiod stringToMatch: "*" presence, "*x" suffix, "x*" prefix, else exact (a middle "*" is literal). */
export function stringMatch(v: string): StringMatch {
  if (v === '*') return { kind: 'presence' };
  if (v.startsWith('*')) return { kind: 'suffix', value: v.slice(1) };
  if (v.endsWith('*')) return { kind: 'prefix', value: v.slice(0, -1) };
  return { kind: 'exact', value: v };
}

/** "ns/sa", or a bare "sa" in the policy's own namespace. */
function serviceAccountMatch(v: string, namespace: string): ServiceAccountMatch {
  const slash = v.indexOf('/');
  return slash < 0 ? { namespace, serviceAccount: v } : { namespace: v.slice(0, slash), serviceAccount: v.slice(slash + 1) };
}

/** istiod stringToPort: a decimal number ≤ 65535 (no ranges, no wildcards); anything else is dropped. */
function ports(values: readonly string[], field: string, ctx: RuleCtx): number[] {
  const out: number[] = [];
  for (const v of values) {
    const n = /^\d+$/.test(v) ? Number(v) : NaN;
    if (Number.isInteger(n) && n <= 65535) out.push(n);
    else dropped(ctx, field, v, 'a port number');
  }
  return out;
}

/** istiod stringToIP: an IP (/32, /128) or a CIDR, host bits allowed; anything else is dropped. */
function ips(values: readonly string[], field: string, ctx: RuleCtx): Cidr[] {
  const out: Cidr[] = [];
  for (const v of values) {
    const cidr = parseCidr(v);
    if (cidr !== undefined) out.push(cidr);
    else dropped(ctx, field, v, 'an IP address or CIDR');
  }
  return out;
}

export function parseCidr(v: string): Cidr | undefined {
  const [addrText, prefixText, extra] = v.split('/');
  if (addrText === undefined || extra !== undefined) return undefined;
  if (!ipaddr.IPv6.isValid(addrText) && !ipaddr.IPv4.isValidFourPartDecimal(addrText)) return undefined;
  let addr = ipaddr.parse(addrText);
  if (prefixText !== undefined && !/^\d{1,3}$/.test(prefixText)) return undefined;
  let prefix = prefixText === undefined ? (addr.kind() === 'ipv4' ? 32 : 128) : Number(prefixText);
  if (prefix > (addr.kind() === 'ipv4' ? 32 : 128)) return undefined;
  // ::ffff:10.0.0.0/104 is 10.0.0.0/8: IPv4-mapped addresses are matched as IPv4.
  if (addr.kind() === 'ipv6' && (addr as ipaddr.IPv6).isIPv4MappedAddress() && prefix >= 96) {
    addr = (addr as ipaddr.IPv6).toIPv4Address();
    prefix -= 96;
  }
  const family = addr.kind() === 'ipv4' ? 4 : 6;
  const bytes = addr.toByteArray().map((b, i) => {
    const bitsHere = Math.max(0, Math.min(8, prefix - i * 8));
    return b & ((0xff << (8 - bitsHere)) & 0xff);
  });
  return { family, bytes, prefix };
}
