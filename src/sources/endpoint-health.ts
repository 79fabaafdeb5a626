// Whether a pod or an EndpointSlice endpoint may take new connections, with the meaning Kubernetes gives
// the EndpointSlice conditions (and kube-proxy honours): ready = serving and not terminating.
import type { EndpointHealth, Locality } from '../model/types.js';
import type { EndpointSliceObject, NodeObject, PodObject } from './kube-schema.js';

export const REGION_LABEL = 'topology.kubernetes.io/region';
export const ZONE_LABEL = 'topology.kubernetes.io/zone';

/**
 * A pod serves when it is Running and its Ready condition is True. A pod whose status has no Ready
 * condition counts as serving when its phase is Running or absent: manifests written by hand have no
 * kubelet to report one, and the API server always has a phase (Pending at first).
 */
export function podHealth(pod: PodObject): EndpointHealth {
  const terminating = pod.metadata.deletionTimestamp !== undefined && pod.metadata.deletionTimestamp !== null;
  const phase = pod.status?.phase;
  const done = (serving: boolean, why: string): EndpointHealth => ({
    ready: serving && !terminating,
    serving,
    terminating,
    reason: terminating ? `terminating (deletionTimestamp set), ${serving ? 'still serving' : `not serving: ${why}`}` : why,
  });
  if (phase === 'Succeeded' || phase === 'Failed') return done(false, `pod finished (phase ${phase})`);
  if (phase === 'Pending' || phase === 'Unknown') return done(false, `phase ${phase}`);
  const ready = pod.status?.conditions?.find((c) => c.type === 'Ready');
  if (ready === undefined) return done(true, phase === undefined ? 'no status: taken as running and ready' : 'Running, no Ready condition');
  if (ready.status === 'True') return done(true, 'Running and Ready');
  const detail = [ready.reason, ready.message].filter((x) => typeof x === 'string' && x !== '').join(': ');
  return done(false, `Ready=${ready.status}${detail === '' ? '' : ` (${detail})`}`);
}

type SliceEndpoint = NonNullable<EndpointSliceObject['endpoints']>[number];

/** EndpointSlice conditions as the API defines them: unknown ready or serving means yes, unknown terminating no. */
export function sliceEndpointHealth(e: SliceEndpoint): EndpointHealth {
  const terminating = e.conditions?.terminating === true;
  const serving = (e.conditions?.serving ?? e.conditions?.ready ?? true) !== false;
  const ready = (e.conditions?.ready ?? (serving && !terminating)) !== false;
  const reason = ready ? 'EndpointSlice: ready' : terminating ? `EndpointSlice: terminating${serving ? ', still serving' : ''}` : 'EndpointSlice: not ready';
  return { ready, serving, terminating, reason };
}

export function nodeLocality(node: NodeObject): Locality {
  const labels = node.metadata.labels ?? {};
  return { region: labels[REGION_LABEL], zone: labels[ZONE_LABEL] };
}

export const NO_LOCALITY: Locality = { region: undefined, zone: undefined };
