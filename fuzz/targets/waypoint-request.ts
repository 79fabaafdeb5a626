// The waypoint's reading of a connection's first bytes (protocol sniffing) and of a request's target:
// the path that policy and routes judge must be what is forwarded, and stable when parsed again.
import { classify } from '../../src/waypoint/protocol.js';
import { parseRequestTarget } from '../../src/waypoint/request-target.js';
import { check } from './contract.js';

const METHODS = ['GET', 'POST', 'OPTIONS', 'CONNECT', 'DELETE', 'PATCH', 'HEAD', 'PUT'];

export function fuzz(data: Buffer): void {
  check(['http1', 'h2c', 'tcp'].includes(classify(data)), 'classified as an unknown protocol');
  const method = METHODS[(data[0] ?? 0) % METHODS.length] ?? 'GET';
  const target = data.subarray(1).toString('latin1');
  const r = parseRequestTarget(method, target);
  if ('error' in r) return;
  check(r.path === '*' || r.path.startsWith('/'), `path ${r.path} of ${target}`);
  const again = parseRequestTarget(method, r.forward);
  check(!('error' in again) && again.path === r.path && again.forward === r.forward, `forwarded ${r.forward} parses to another path than ${r.path}`);
}
