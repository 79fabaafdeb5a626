// A peer running nghttp2 (every ztunnel-ts daemon and waypoint) ends a connection with GOAWAY
// INTERNAL_ERROR once a client has reset more than 1000 of its streams at once (33 a second come back),
// answered or not, and with it every stream still on it. Regression: a waypoint whose upstream
// connections were reset often lost its pooled session every few seconds under load, and each time its
// requests in flight on it failed (503, "Session closed with error code 2").
import http2 from 'node:http2';
import t from 'tap';
import { PEER_RESET_BURST, PEER_RESET_RATE_PER_SECOND, ResetBudget, shouldRetire } from '../../src/hbone/reset-budget.js';
import { CertificateAuthority } from '../../src/identity/ca.js';
import { poolAgainst } from '../helpers/pool-peer.js';

const CLIENT = 'spiffe://cluster.local/ns/app/sa/client';
const SERVER = 'spiffe://cluster.local/ns/app/sa/echo';
const HOST = '127.231.0.1';

t.test('the budget mirrors nghttp2: a burst of 1000, 33 back each whole second, never above the burst', async (t) => {
  const b = new ResetBudget(10_000);
  t.equal(b.spend(10_000), PEER_RESET_BURST - 1, 'the first reset leaves 999');
  for (let i = 0; i < 98; i++) b.spend(10_500);
  t.equal(b.spend(10_999), PEER_RESET_BURST - 100, 'within the same second nothing comes back');
  t.equal(b.spend(11_000), PEER_RESET_BURST - 101 + PEER_RESET_RATE_PER_SECOND, 'the next second brings 33');
  t.equal(b.spend(100_000), PEER_RESET_BURST - 1, 'a long pause refills it only up to the burst');
  const drained = new ResetBudget(0);
  for (let i = 0; i < 2000; i++) drained.spend(0);
  t.equal(drained.spend(0), 0, 'it does not go below nothing');
});

t.test('a session retires while each stream it may carry can still be reset once', async (t) => {
  t.equal(shouldRetire(101, 100), false, '101 left for at most 100 streams');
  t.equal(shouldRetire(100, 100), true, '100 left: no new stream');
  t.equal(shouldRetire(0, 100), true);
});

t.test('streams reset by the thousand: new connections take over, and no stream fails for it', async (t) => {
  const ca = await CertificateAuthority.create('cluster.local');
  const serverCert = await ca.issue(SERVER);
  const sessions = new Set<http2.ServerHttp2Session>();
  let goaways = 0;
  // Node's own HTTP/2 server with its defaults: nghttp2's reset limit is what is under test.
  const server = http2.createSecureServer({ cert: serverCert.chainPem.join(''), key: serverCert.keyPem, ca: ca.rootPem, requestCert: true, rejectUnauthorized: true });
  server.on('session', (s) => {
    sessions.add(s);
    s.on('error', () => undefined);
  });
  server.on('stream', (stream) => {
    stream.on('error', () => undefined);
    stream.respond({ ':status': 200 });
  });
  const { connect } = await poolAgainst(t, { ca, server, sessions: sessions, host: HOST, client: CLIENT, serverIdentity: SERVER });

  // Long-lived streams on the first connection (open pods' connections), then 1500 that are answered and
  // reset (clients that end with a TCP RST), a few at a time.
  const held = await Promise.all(Array.from({ length: 10 }, connect));
  const heldErrors: string[] = [];
  for (const s of held) s.on('error', (e: Error) => heldErrors.push(e.message));
  held[0]?.session?.on('goaway', () => (goaways += 1));
  let failures = 0;
  for (let i = 0; i < 150; i++) {
    await Promise.all(
      Array.from({ length: 10 }, () =>
        connect().then(
          (s) => new Promise<void>((r) => s.close(http2.constants.NGHTTP2_CANCEL, () => r())),
          () => void (failures += 1),
        ),
      ),
    );
  }
  t.equal(failures, 0, 'every one of the 1500 CONNECTs was answered');
  t.ok(sessions.size >= 2, `the pool moved to a new connection before the peer's limit (${sessions.size} connections)`);
  t.equal(goaways, 0, 'the first connection was never ended by the peer');
  t.same(heldErrors, [], 'the long-lived streams on it are untouched');
  t.ok(held.every((s) => !s.destroyed && !s.closed), 'and still open');
  for (const s of held) s.close();
});
