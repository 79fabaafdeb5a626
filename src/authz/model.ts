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
}

export type Clause = readonly Match[];

export interface Rule {
  /** Index of the rule in the policy's spec.rules, for explanations. */
  readonly index: number;
  readonly clauses: readonly Clause[];
}

export type Scope =
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
};

export function isEmptyMatch(m: Match): boolean {
  return Object.values(m).every((list: readonly unknown[]) => list.length === 0);
}

export function policyName(p: Pick<Authorization, 'namespace' | 'name'>): string {
  return `${p.namespace}/${p.name}`;
}
