// Regression: during an upgrade the old daemon sends GOAWAY, and a CONNECT already on its way is refused
// unprocessed (REFUSED_STREAM). The client pool must try it again on a new connection instead of
// resetting the pod's connection; anything else (a 503, a reset after processing) is not retried.
import http2 from 'node:http2';
import t from 'tap';
import { CertificateAuthority } from '../../src/identity/ca.js';
import { poolAgainst } from '../helpers/pool-peer.js';

const CLIENT = 'spiffe://cluster.local/ns/app/sa/client';
const SERVER = 'spiffe://cluster.local/ns/app/sa/echo';
const HOST = '127.230.0.1';

t.test('a stream refused unprocessed is tried again on a new connection, once', async (t) => {
  const ca = await CertificateAuthority.create('cluster.local');
  const serverCert = await ca.issue(SERVER);
  /** What the peer does with the nth stream it sees (0-based, over all its connections). */
  let behaviour: (n: number, stream: http2.ServerHttp2Stream) => void = () => undefined;
  let streams = 0;
  const connections = new Set<http2.ServerHttp2Session>();
  const server = http2.createSecureServer({ cert: serverCert.chainPem.join(''), key: serverCert.keyPem, ca: ca.rootPem, requestCert: true, rejectUnauthorized: true });
  server.on('session', (s) => connections.add(s));
  server.on('stream', (stream) => {
    stream.on('error', () => undefined); // closing with an error code emits it here too
    behaviour(streams++, stream);
  });
  const { connect } = await poolAgainst(t, { ca, server, sessions: connections, host: HOST, client: CLIENT, serverIdentity: SERVER });
  const answer200 = (s: http2.ServerHttp2Stream): void => s.respond({ ':status': 200 });

  behaviour = (n, s) => (n === 0 ? s.close(http2.constants.NGHTTP2_REFUSED_STREAM) : answer200(s));
  const stream = await connect();
  t.ok(stream, 'the CONNECT succeeded after the first stream was refused');
  t.equal(streams, 2, 'it was sent twice');
  t.equal(connections.size, 2, 'the second time on a new connection: the refusing one takes no more streams');
  stream.close();

  streams = 0;
  behaviour = (_n, s) => s.close(http2.constants.NGHTTP2_REFUSED_STREAM);
  await t.rejects(connect(), { code: 'HBONE_SESSION', refused: true }, 'refused twice: the error reaches the caller');
  t.equal(streams, 2, 'only one retry');

  streams = 0;
  behaviour = (_n, s) => s.respond({ ':status': 503 }, { endStream: true });
  await t.rejects(connect(), { code: 'HBONE_CONNECT_STATUS', status: 503 }, 'an answer (503) is final');
  t.equal(streams, 1, 'and is not retried');

  streams = 0;
  behaviour = (_n, s) => s.close(http2.constants.NGHTTP2_INTERNAL_ERROR);
  await t.rejects(connect(), { code: 'HBONE_SESSION', refused: false }, 'a reset for another reason');
  t.equal(streams, 1, 'is not retried: the peer may have acted on it');
});
