// AuthorizationPolicy translation (as istiod does for ztunnel and for a waypoint) and evaluation: any
// spec translates, or is marked malformed and enforced fail-closed; evaluating it never throws.
import { parse } from 'yaml';
import { evaluate } from '../../src/authz/evaluate.js';
import type { AuthzConnection } from '../../src/authz/model.js';
import { translatePolicy, type Enforcer } from '../../src/authz/translate.js';
import { check } from './contract.js';

const CONNECTIONS: AuthzConnection[] = [
  { srcIp: '10.0.0.1', srcIdentity: 'spiffe://cluster.local/ns/app/sa/client', dstIp: '10.0.0.2', dstPort: 8080 },
  { srcIp: 'fd00::1', srcIdentity: undefined, dstIp: 'fd00::2', dstPort: 443 },
  {
    srcIp: '10.0.0.3',
    srcIdentity: 'spiffe://cluster.local/ns/other/sa/default',
    dstIp: '10.96.0.10',
    dstPort: 80,
    http: { host: 'reviews.app.svc.cluster.local', method: 'POST', path: '/admin/users', headers: { 'x-user': 'a' }, remoteIp: '192.168.0.1' },
  },
];

export function fuzz(data: Buffer): void {
  const enforcer: Enforcer = (data[0] ?? 0) % 2 === 0 ? 'ztunnel' : 'waypoint';
  let spec: unknown;
  try {
    spec = parse(data.subarray(1).toString('utf8'), { maxAliasCount: 100 });
  } catch {
    return; // not YAML: the manifest target covers that path
  }
  const object = { apiVersion: 'security.istio.io/v1', kind: 'AuthorizationPolicy', metadata: { name: 'p', namespace: 'app' }, spec };
  const r = translatePolicy({ namespace: 'app', name: 'p', origin: 'fuzz', object }, 'istio-system', enforcer);
  check(r.error === undefined || typeof r.error === 'string', 'error is not a message');
  // A malformed policy is enforced fail-closed (by ztunnel; a waypoint leaves one it cannot place to it).
  if (enforcer === 'ztunnel') check(r.error === undefined || r.authorization !== undefined, `malformed (${r.error ?? ''}) but not enforced`);
  if (r.authorization === undefined) return;
  for (const conn of CONNECTIONS) {
    const d = evaluate([r.authorization], conn);
    check(typeof d.allow === 'boolean' && d.reason.length > 0, 'a decision without a reason');
    if (r.error !== undefined) check(!d.allow, `malformed (${r.error}) yet it allowed ${conn.srcIp}: ${d.reason}`);
  }
}
