// What an HBONE CONNECT carries in headers: the :authority (the destination, ip:port or [v6]:port) and
// baggage (the peer's workload). One line each of the input.
import { buildBaggage, formatAddress, parseAuthority, parseBaggage } from '../../src/hbone/headers.js';
import { check } from './contract.js';

export function fuzz(data: Buffer): void {
  const [authority = '', baggage = ''] = data.toString('utf8').split('\n');
  const a = parseAuthority(authority);
  if (a !== undefined) {
    check(Number.isInteger(a.port) && a.port >= 1 && a.port <= 65535, `port ${a.port}`);
    const again = parseAuthority(formatAddress(a));
    check(again?.ip === a.ip && again.port === a.port, `${authority} does not round-trip: ${formatAddress(a)}`);
  }
  const b = parseBaggage(baggage);
  for (const [k, v] of Object.entries(b)) check(typeof v === 'string' && k.length > 0, `baggage entry ${k}`);
  const fields = { namespace: b['k8s.namespace.name'], workloadName: b['k8s.pod.name'] };
  // What we build from parsed fields parses back to them, when they hold no separator of their own.
  if (fields.namespace !== undefined && !/[,=]/.test(fields.namespace) && fields.namespace === fields.namespace.trim()) {
    check(parseBaggage(buildBaggage({ namespace: fields.namespace }))['k8s.namespace.name'] === fields.namespace, 'baggage namespace round-trip');
  }
}
