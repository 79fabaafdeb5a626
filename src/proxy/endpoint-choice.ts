// Which endpoint of a Service a new connection goes to: one decision, shared by the node daemon and the
// waypoint, and explained by `route check`. Pure: load and affinity are inputs.
//
//   1. internalTrafficPolicy Local keeps only endpoints on the client's node (none: refused).
//   2. Health: ready endpoints; when none is ready, those terminating but still serving (as kube-proxy).
//   3. trafficDistribution keeps the closest tier that has one: PreferClose / PreferSameZone the client's
//      zone, then region, then any; PreferSameNode the client's node first, then the same.
//   4. ClientIP session affinity: the client's endpoint while it is in that tier and not expired.
//   5. Power of two choices on the connections this process has open to each endpoint.
import type { Locality, Service, Workload } from '../model/types.js';

export interface ChoiceClient {
  readonly node: string;
  readonly locality: Locality;
  /** For ClientIP session affinity. */
  readonly ip: string | undefined;
}

export interface ChoiceInputs {
  /** Open connections (or requests in flight) from this process to an endpoint, by workload uid. */
  readonly load: (uid: string) => number;
  /** The endpoint this client is stuck to, if any and not expired. */
  readonly sticky: string | undefined;
  readonly random: () => number;
}

export type Verdict = 'picked' | 'eligible' | 'not preferred' | 'excluded';

export interface EndpointVerdict<T> {
  readonly endpoint: Workload;
  readonly value: T;
  readonly verdict: Verdict;
  readonly why: string;
}

export type Choice<T> =
  | { readonly ok: true; readonly endpoint: Workload; readonly value: T; readonly verdicts: readonly EndpointVerdict<T>[]; readonly how: string }
  | { readonly ok: false; readonly reason: string; readonly verdicts: readonly EndpointVerdict<T>[] };

/** The service fields that shape the choice; a waypoint's own pods are chosen with none of them. */
export type ChoicePolicy = Pick<Service, 'trafficDistribution' | 'internalTrafficPolicy' | 'sessionAffinity'>;
export const NO_POLICY: ChoicePolicy = { trafficDistribution: undefined, internalTrafficPolicy: 'Cluster', sessionAffinity: undefined };

/** Lower is closer. */
function closeness(policy: ChoicePolicy, client: ChoiceClient, w: Workload): { rank: number; what: string } {
  const sameRegion = client.locality.region === w.locality.region;
  const sameZone = sameRegion && client.locality.zone !== undefined && client.locality.zone === w.locality.zone;
  const tiers = [
    ...(policy.trafficDistribution === 'PreferSameNode' ? [{ ok: w.node === client.node, what: 'same node' }] : []),
    { ok: sameZone, what: 'same zone' },
    { ok: sameRegion && client.locality.region !== undefined, what: 'same region' },
  ];
  const i = tiers.findIndex((t) => t.ok);
  return i < 0 ? { rank: tiers.length, what: 'elsewhere' } : { rank: i, what: tiers[i]?.what ?? '' };
}

export function chooseEndpoint<T>(
  policy: ChoicePolicy,
  candidates: readonly { readonly endpoint: Workload; readonly value: T }[],
  client: ChoiceClient,
  inputs: ChoiceInputs,
): Choice<T> {
  const verdicts = new Map<Workload, { verdict: Verdict; why: string }>();
  const exclude = (w: Workload, why: string): void => void verdicts.set(w, { verdict: 'excluded', why });
  let pool = [...candidates];
  if (policy.internalTrafficPolicy === 'Local') {
    for (const c of pool) if (c.endpoint.node !== client.node) exclude(c.endpoint, `internalTrafficPolicy Local: on ${c.endpoint.node}, not ${client.node}`);
    pool = pool.filter((c) => c.endpoint.node === client.node);
  }
  const ready = pool.filter((c) => c.endpoint.health.ready);
  const fallback = ready.length === 0 ? pool.filter((c) => c.endpoint.health.serving && c.endpoint.health.terminating) : [];
  const healthy = ready.length > 0 ? ready : fallback;
  for (const c of pool) if (!healthy.includes(c)) exclude(c.endpoint, c.endpoint.health.reason);
  const finish = (): EndpointVerdict<T>[] =>
    candidates.map((c) => ({ ...c, ...(verdicts.get(c.endpoint) ?? { verdict: 'eligible' as const, why: c.endpoint.health.reason }) }));
  if (healthy.length === 0) {
    const reason =
      candidates.length === 0 ? 'no endpoints'
      : pool.length === 0 ? `internalTrafficPolicy Local: no endpoint on ${client.node}`
      : `no ready endpoint (${pool.length} not ready)`;
    return { ok: false, reason, verdicts: finish() };
  }
  let tier = healthy;
  let how = fallback.length > 0 ? 'every endpoint is terminating: using those still serving' : `${healthy.length} ready`;
  if (policy.trafficDistribution !== undefined) {
    const ranked = healthy.map((c) => ({ c, ...closeness(policy, client, c.endpoint) }));
    const best = Math.min(...ranked.map((r) => r.rank));
    tier = ranked.filter((r) => r.rank === best).map((r) => r.c);
    for (const r of ranked) if (r.rank !== best) verdicts.set(r.c.endpoint, { verdict: 'not preferred', why: `${policy.trafficDistribution}: ${r.what}, a closer endpoint is ready` });
    how += `; ${policy.trafficDistribution}: ${tier.length} ${ranked.find((r) => r.rank === best)?.what ?? ''}`;
  }
  let chosen = policy.sessionAffinity !== undefined && inputs.sticky !== undefined ? tier.find((c) => c.endpoint.uid === inputs.sticky) : undefined;
  if (chosen !== undefined) how += '; ClientIP session affinity';
  else chosen = powerOfTwo(tier, inputs);
  verdicts.set(chosen.endpoint, { verdict: 'picked', why: how });
  return { ok: true, endpoint: chosen.endpoint, value: chosen.value, verdicts: finish(), how };
}

/** Two at random, the one with fewer open connections (the first of the two on a tie). */
function powerOfTwo<C extends { readonly endpoint: Workload }>(tier: readonly C[], inputs: ChoiceInputs): C {
  const first = Math.floor(inputs.random() * tier.length);
  if (tier.length === 1) return tier[first] as C;
  // The second is drawn from the others, so the two are always distinct.
  const second = (first + 1 + Math.floor(inputs.random() * (tier.length - 1))) % tier.length;
  const [a, b] = [tier[first] as C, tier[second] as C];
  return inputs.load(b.endpoint.uid) < inputs.load(a.endpoint.uid) ? b : a;
}
