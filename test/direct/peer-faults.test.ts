// Regressions for a peer daemon that dies or freezes, and for HBONE clients that leave without GOAWAY.
// node-1 runs in this process; node-2 is a real `ztunnel-ts run` process that the tests kill or stop.
import { once } from 'node:events';
import { mkdtempSync, writeFileSync } from 'node:fs';
import http2 from 'node:http2';
import type net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import { pino } from 'pino';
import t from 'tap';
import { App } from '../../src/app.js';
import { configFromFlags } from '../../src/config/config.js';
import type { HboneTimeouts } from '../../src/hbone/constants.js';
import { CertificateAuthority } from '../../src/identity/ca.js';
import { startChildDaemon, type ChildDaemon } from '../helpers/child-daemon.js';
import { meshManifests, podIp, roundTrip, socksConnect, startEcho, startMesh } from '../helpers/loopback.js';

const plan = { net: 219 };
const client = podIp(plan, 1, 1);
const remote = podIp(plan, 2, 1);

type Line = Record<string, unknown>;

/** Resolves with how the socket ended: 'close' after an end or a reset, whichever came. */
function closed(s: net.Socket): Promise<void> {
  // A plain listener: once() would reject on the 'error' a reset brings before its 'close'.
  return s.destroyed ? Promise.resolve() : new Promise((r) => s.once('close', () => r()));
}

/** Resolves true once cond() holds, false if it has not within ms (a bound on waiting, not a speed claim). */
async function eventually(cond: () => boolean, ms: number): Promise<boolean> {
  const until = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > until) return false;
    await new Promise((r) => setTimeout(r, 20));
  }
  return true;
}

async function startNode1(manifests: string, caDir: string, lines: Line[], timeouts: Partial<HboneTimeouts>): Promise<App> {
  const logger = pino({ level: 'info' }, { write: (l: string) => void lines.push(JSON.parse(l) as Line) });
  return App.start(
    configFromFlags({ node: 'node-1', manifests, caDir, socks5: '127.0.0.1:0', admin: '127.0.0.1:0', metrics: '127.0.0.1:0', readiness: '127.0.0.1:0', drainSeconds: 1 }),
    logger,
    { timeouts },
  );
}

const failedTo = (lines: Line[], dst: string): Line[] => lines.filter((l) => l['msg'] === 'connection failed' && l['dst.addr'] === dst && l['direction'] === 'outbound');

t.test('a peer daemon that dies or freezes never takes this daemon down', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'ztunnel-ts-faults-'));
  const manifests = join(dir, 'mesh.yaml');
  writeFileSync(manifests, meshManifests(plan));
  const caDir = join(dir, 'ca');
  await CertificateAuthority.loadOrInit(caDir, 'cluster.local'); // both daemons share one root
  const echo = await startEcho(remote);
  const local = await startEcho(podIp(plan, 1, 2));
  t.teardown(() => Promise.all([echo.close(), local.close()]));
  let peer: ChildDaemon = await startChildDaemon({ node: 'node-2', manifests, caDir });
  t.teardown(async () => {
    peer.kill('SIGCONT');
    peer.kill('SIGKILL');
    await peer.exited;
  });

  t.test('regression: killed mid-stream, its streams end at once, and a restart is reached on the first try', async (t) => {
    const lines: Line[] = [];
    // Default PING timeout (20 s): only the peer's FIN can end the streams this early.
    const node1 = await startNode1(manifests, caDir, lines, {});
    t.teardown(() => node1.drain(200));
    const s = await socksConnect(node1, client, remote, 8080);
    t.equal(await roundTrip(s, 'before'), 'before');
    let clientSaw = 'nothing';
    s.on('error', (e: NodeJS.ErrnoException) => (clientSaw = e.code ?? e.message));
    s.on('end', () => (clientSaw = 'a clean FIN'));
    s.resume();

    peer.kill('SIGKILL');
    await peer.exited;
    t.ok(await eventually(() => s.destroyed, 1000), 'the open connection ended within 1 s of the peer dying');
    await closed(s);
    t.equal(clientSaw, 'ECONNRESET', 'the pod sees a reset, not an end it could take for a complete reply');
    t.ok(await eventually(() => failedTo(lines, `${remote}:8080`).length === 1, 1000), 'its end was recorded');
    t.match(failedTo(lines, `${remote}:8080`)[0], { response_flags: 'CONNECTION_TERMINATED' }, 'with a flag that says it was cut');
    t.equal(node1.pool.stats.connections, 0, 'the dead session left the pool');

    await t.rejects(socksConnect(node1, client, remote, 8080), /ConnectionRefused/, 'while it is down, new connections fail closed');
    t.match(failedTo(lines, `${remote}:8080`).at(-1), { response_flags: 'UPSTREAM_CONNECT' });

    peer = await startChildDaemon({ node: 'node-2', manifests, caDir });
    const again = await socksConnect(node1, client, remote, 8080);
    t.equal(await roundTrip(again, 'after'), 'after', 'the first connection after its restart goes through');
    again.destroy();
  });

  t.test('regression: frozen (SIGSTOP), streams to it end at the PING timeout, and nothing else is hurt', async (t) => {
    const lines: Line[] = [];
    const node1 = await startNode1(manifests, caDir, lines, { pingIntervalMs: 200, pingTimeoutMs: 1500, connectResponseMs: 400, handshakeMs: 1000 });
    t.teardown(() => node1.drain(200));
    const s = await socksConnect(node1, client, remote, 8080);
    t.equal(await roundTrip(s, 'before'), 'before');

    peer.kill('SIGSTOP');
    // A new stream on the frozen session gets no answer: it gives up first, then the session dies with an
    // error. That error once reached the given-up stream with no listener and crashed the daemon.
    await t.rejects(socksConnect(node1, client, remote, 8080), /Failure/, 'a new connection to it fails');
    t.match(failedTo(lines, `${remote}:8080`).at(-1), { response_flags: 'HBONE_TIMEOUT' });
    t.ok(await eventually(() => s.destroyed, 5000), 'the open stream ended after the PING timeout');
    t.match(failedTo(lines, `${remote}:8080`).find((l) => l['bytes_sent'] === 6), { response_flags: 'CONNECTION_TERMINATED' });

    const neighbour = await socksConnect(node1, client, podIp(plan, 1, 2), 8080);
    t.equal(await roundTrip(neighbour, 'still here'), 'still here', 'the daemon keeps serving everything else');
    neighbour.destroy();

    peer.kill('SIGCONT');
    const again = await socksConnect(node1, client, remote, 8080);
    t.equal(await roundTrip(again, 'thawed'), 'thawed', 'and reaches the peer again once it answers');
    again.destroy();
  });
});

t.test('regression: an HBONE client that sends FIN without GOAWAY leaves no session, socket or upstream behind', async (t) => {
  const net2 = { net: 220 };
  const mesh = await startMesh(net2);
  t.teardown(() => mesh.close());
  const target = podIp(net2, 2, 1);
  const echo = await startEcho(target);
  t.teardown(() => echo.close());
  const ca = await CertificateAuthority.load(join(mesh.dir, 'ca'));
  const svid = await ca.issue('spiffe://cluster.local/ns/app/sa/client');
  const upstreams = new Set<net.Socket>();
  echo.server.on('connection', (s: net.Socket) => {
    upstreams.add(s);
    s.once('close', () => upstreams.delete(s));
  });

  for (let i = 0; i < 20; i++) {
    const socket = tls.connect({ host: target, port: 15008, ca: ca.rootPem, cert: svid.chainPem.join(''), key: svid.keyPem, ALPNProtocols: ['h2'], checkServerIdentity: () => undefined });
    await once(socket, 'secureConnect');
    const session = http2.connect(`https://${target}`, { createConnection: () => socket });
    session.on('error', () => undefined);
    const stream = session.request({ ':method': 'CONNECT', ':authority': `${target}:8080` }, { endStream: false });
    stream.on('error', () => undefined);
    const [headers] = (await once(stream, 'response')) as [http2.IncomingHttpHeaders];
    t.equal(headers[':status'], 200, `connection ${i} was accepted`);
    socket.end(); // FIN on the TCP connection, no GOAWAY
  }
  t.ok(await eventually(() => mesh.node2.hbone.sessionCount === 0, 10_000), `no HBONE session left open (${mesh.node2.hbone.sessionCount})`);
  t.ok(await eventually(() => upstreams.size === 0, 10_000), `no upstream to the pod left open (${upstreams.size})`);
});

t.test('regression: connections to a daemon port are refused on every entry (no loops)', async (t) => {
  const net3 = { net: 221 };
  const lines: Line[] = [];
  const mesh = await startMesh(net3, { logSink: (l) => lines.push(l) });
  t.teardown(() => mesh.close());
  const ca = await CertificateAuthority.load(join(mesh.dir, 'ca'));
  const svid = await ca.issue('spiffe://cluster.local/ns/app/sa/client');
  const target = podIp(net3, 2, 1);
  const { rawHbone } = await import('../helpers/raw-hbone.js');
  const self = await rawHbone({ ip: target, ca: ca.rootPem, cert: svid.chainPem.join(''), key: svid.keyPem, authority: `${target}:15008` });
  t.equal(self.status, 400, 'HBONE CONNECT to the daemon’s own :15008 is a bad request');
  t.ok(lines.some((l) => l['node'] === 'node-2' && l['response_flags'] === 'RECURSION'), 'recorded with the RECURSION flag');
  const echo = await startEcho(target);
  t.teardown(() => echo.close());
  const ok = await rawHbone({ ip: target, ca: ca.rootPem, cert: svid.chainPem.join(''), key: svid.keyPem, authority: `${target}:8080` });
  t.equal(ok.status, 200, 'the same client reaches the pod’s own port');

  await t.rejects(socksConnect(mesh.node1, podIp(net3, 1, 1), podIp(net3, 1, 2), 15008), /NotAllowed/, "SOCKS5 to another local pod's :15008");
  t.ok(lines.some((l) => l['node'] === 'node-1' && l['dst.addr'] === `${podIp(net3, 1, 2)}:15008` && l['response_flags'] === 'RECURSION'));
});
