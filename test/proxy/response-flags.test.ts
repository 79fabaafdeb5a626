import t from 'tap';
import { HboneError } from '../../src/hbone/errors.js';
import { ProxyError } from '../../src/proxy/errors.js';
import { refusalFor, responseFlag } from '../../src/proxy/response-flags.js';

t.test('each refusal has one flag and one HBONE status', async (t) => {
  const cases: [string, unknown, string, number][] = [
    ['a policy denial', new ProxyError('PROXY_DENIED', 'denied'), 'DENIED', 401],
    ['a loop', new ProxyError('PROXY_RECURSION', 'loop'), 'RECURSION', 400],
    ['no such pod here', new ProxyError('PROXY_UNKNOWN_TARGET', 'none'), 'NO_ROUTE', 503],
    ['the pod refused', new ProxyError('PROXY_UPSTREAM_CONNECT', 'refused'), 'UPSTREAM_CONNECT', 503],
    ['a connection limit', new ProxyError('PROXY_LIMIT', 'limit'), 'CONNECTION_LIMIT', 503],
    ['a source that is no captured pod', new ProxyError('PROXY_UNKNOWN_SOURCE', 'who'), 'UNKNOWN_SOURCE', 503],
    ['the peer answered 401 (its policy)', new HboneError('HBONE_CONNECT_STATUS', '401', { status: 401 }), 'DENIED', 503],
    ['the peer answered 503', new HboneError('HBONE_CONNECT_STATUS', '503', { status: 503 }), 'UPSTREAM_503', 503],
    ['TLS with the peer failed', new HboneError('HBONE_TLS', 'tls'), 'HBONE_TLS', 503],
    ['the peer presented another identity', new HboneError('HBONE_IDENTITY_MISMATCH', 'id'), 'HBONE_IDENTITY_MISMATCH', 503],
    ['an error nobody named', new Error('ECONNRESET'), 'CONNECTION_FAILURE', 503],
    ['something thrown that is no Error', 'oops', 'CONNECTION_FAILURE', 503],
  ];
  for (const [what, err, flag, status] of cases) {
    t.same(refusalFor(err), { flag, status }, what);
    t.equal(responseFlag(err), flag, `${what}: responseFlag agrees`);
  }
});
