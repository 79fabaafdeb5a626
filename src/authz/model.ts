// AuthorizationPolicy after istiod's ambient translation, in ztunnel's shape:
// policy → rules (OR) → clauses (AND) → matches (OR) → fields (AND), each field positive AND negative.
import type { Labels } from '../model/types.js';

export type StringMatch =
  | { readonly kind: 'exact'; readonly value: string }
  | { readonly kind: 'prefix'; readonly value: string }
  | { readonly kind: 'suffix'; readonly value: string }
  | { readonly kind: 'presence' };

export interface ServiceAccountMatch {
  readonly namespace: string;
  readonly serviceAccount: string;
}

export interface Cidr {
  readonly family: 4 | 6;
  /** Network address bytes with host bits cleared. */
  readonly bytes: readonly number[];
  readonly prefix: number;
}

export interface Match {
  readonly namespaces: readonly StringMatch[];
  readonly notNamespaces: readonly StringMatch[];
  readonly serviceAccounts: readonly ServiceAccountMatch[];
  readonly notServiceAccounts: readonly ServiceAccountMatch[];
  readonly principals: readonly StringMatch[];
  readonly notPrincipals: readonly StringMatch[];
  readonly sourceIps: readonly Cidr[];
  readonly notSourceIps: readonly Cidr[];
  readonly destinationIps: readonly Cidr[];
  readonly notDestinationIps: readonly Cidr[];
  readonly destinationPorts: readonly number[];
  readonly notDestinationPorts: readonly number[];
  // HTTP attributes: only a waypoint's translation fills them; an L4 connection never matches them.
  readonly hosts: readonly StringMatch[];
  readonly notHosts: readonly StringMatch[];
  readonly methods: readonly StringMatch[];
  readonly notMethods: readonly StringMatch[];
  readonly paths: readonly StringMatch[];
  readonly notPaths: readonly StringMatch[];
  readonly requestPrincipals: readonly StringMatch[];
  readonly notRequestPrincipals: readonly StringMatch[];
  readonly remoteIps: readonly Cidr[];
  readonly notRemoteIps: readonly Cidr[];
  /** when request.headers[name]: each entry ANDed, values ORed. */
  readonly headers: readonly HeaderMatch[];
}

export interface HeaderMatch {
  /** Lower case. */
  readonly name: string;
  readonly values: readonly StringMatch[];
  readonly notValues: readonly StringMatch[];
}

export type Clause = readonly Match[];

export interface Rule {
  /** Index of the rule in the policy's spec.rules, for explanations. */
  readonly index: number;
  readonly clauses: readonly Clause[];
}

export interface TargetRef {
  readonly group: string;
  readonly kind: string;
  readonly name: string;
}

export type Scope =
  /** targetRefs: enforced by the waypoint the refs resolve to (a Gateway, a Service, or the GatewayClass). */
  | { readonly kind: 'targets'; readonly refs: readonly TargetRef[] }
  | { readonly kind: 'global' }
  | { readonly kind: 'namespace' }
  | { readonly kind: 'selector'; readonly matchLabels: Labels | undefined };

export interface Authorization {
  readonly name: string;
  readonly namespace: string;
  readonly scope: Scope;
  readonly action: 'allow' | 'deny';
  readonly rules: readonly Rule[];
  readonly dryRun: boolean;
}

/** A connection as the authorizer sees it. */
export interface AuthzConnection {
  readonly srcIp: string;
  /** Verified SPIFFE URI; undefined for plaintext. */
  readonly srcIdentity: string | undefined;
  readonly dstIp: string;
  readonly dstPort: number;
  /** The HTTP request, at a waypoint. */
  readonly http?: HttpAttributes;
}

export interface HttpAttributes {
  /** Host header without the port, lower case. */
  readonly host: string;
  readonly method: string;
  /** Path without the query string. */
  readonly path: string;
  /** Lower-case names. */
  readonly headers: Readonly<Record<string, string | readonly string[] | undefined>>;
  /** The original client's IP (first X-Forwarded-For entry, else the source IP). */
  readonly remoteIp: string;
}

export const EMPTY_MATCH: Match = {
  namespaces: [],
  notNamespaces: [],
  serviceAccounts: [],
  notServiceAccounts: [],
  principals: [],
  notPrincipals: [],
  sourceIps: [],
  notSourceIps: [],
  destinationIps: [],
  notDestinationIps: [],
  destinationPorts: [],
  notDestinationPorts: [],
  hosts: [],
  notHosts: [],
  methods: [],
  notMethods: [],
  paths: [],
  notPaths: [],
  requestPrincipals: [],
  notRequestPrincipals: [],
  remoteIps: [],
  notRemoteIps: [],
  headers: [],
};

export function isEmptyMatch(m: Match): boolean {
  return Object.values(m).every((list: readonly unknown[]) => list.length === 0);
}

export function policyName(p: Pick<Authorization, 'namespace' | 'name'>): string {
  return `${p.namespace}/${p.name}`;
}
