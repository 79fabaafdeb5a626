// Policies enforced by running daemons: HBONE (401), same-node, plaintext capture (reset), and a policy
// change closing open connections that are no longer allowed.
import { appendFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import t from 'tap';
import { exchange, meshManifests, roundTrip, podIp, socksConnect, startEcho, startMesh } from '../helpers/loopback.js';

const plan = { net: 210 };
const DENY_CLIENT = `---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: deny-client, namespace: app }
spec:
  action: DENY
  rules:
  - from: [{ source: { principals: ["cluster.local/ns/app/sa/client"] } }]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: require-mtls, namespace: app }
spec:
  action: DENY
  rules:
  - from: [{ source: { notPrincipals: ["*"] } }]
`;

/** Resolves once the connection is gone; it keeps writing, so a connection that is only half-closed ends too. */
function closedWhileProbing(s: net.Socket): Promise<void> {
  s.on('error', () => undefined);
  return new Promise((resolve) => {
    const timer = setInterval(() => {
      if (!s.destroyed) s.write('still there?');
    }, 50);
    const done = (): void => {
      clearInterval(timer);
      resolve();
    };
    if (s.destroyed) done();
    else s.once('close', done);
  });
}

t.test('AuthorizationPolicy enforced on every inbound path, live', async (t) => {
  const mesh = await startMesh(plan);
  t.teardown(() => mesh.close());
  const echo = await startEcho(podIp(plan, 2, 1));
  const local = await startEcho(podIp(plan, 1, 2));
  t.teardown(() => Promise.all([echo.close(), local.close()]));
  // Stand-in for the eBPF capture of plaintext: hand accepted sockets to node-2's 15006 handler.
  const plaintextEntry = net.createServer({ allowHalfOpen: true, pauseOnConnect: true }, (s) =>
    mesh.node2.inbound.handlePlaintext(s, { ip: podIp(plan, 2, 1), port: 8080 }),
  );
  await new Promise<void>((r) => plaintextEntry.listen(0, '127.210.9.1', r));
  t.teardown(() => plaintextEntry.close());
  const plaintext = (): Promise<Buffer> => {
    const s = net.connect({ host: '127.210.9.1', port: (plaintextEntry.address() as net.AddressInfo).port, localAddress: '127.210.9.2', allowHalfOpen: true });
    return exchange(s, Buffer.from('plain'));
  };
  const client = podIp(plan, 1, 1);

  t.equal(String(await plaintext()), 'plain', 'no policy: plaintext allowed');
  const open = await socksConnect(mesh.node1, client, podIp(plan, 2, 1), 8080);
  const openLocal = await socksConnect(mesh.node1, client, podIp(plan, 1, 2), 8080);
  t.equal(await roundTrip(open, 'hi'), 'hi');
  t.equal(await roundTrip(openLocal, 'hi'), 'hi');

  const changed = (): Promise<void> => new Promise((r) => mesh.node2.state.once('change', () => r()));
  let next = changed();
  appendFileSync(mesh.manifestFile, DENY_CLIENT);
  await next;
  await closedWhileProbing(open);
  t.pass('the open cross-node connection was closed when the DENY policy arrived');
  await closedWhileProbing(openLocal);
  t.pass('the open same-node connection was closed too');

  await t.rejects(socksConnect(mesh.node1, client, podIp(plan, 2, 1), 8080), /NotAllowed|not allowed/i, 'new HBONE connection refused (401)');
  await t.rejects(socksConnect(mesh.node1, client, podIp(plan, 1, 2), 8080), /NotAllowed|not allowed/i, 'new same-node connection refused');
  await t.rejects(plaintext(), /ECONNRESET|reset/i, 'plaintext is reset (require-mtls)');

  next = changed();
  writeFileSync(mesh.manifestFile, meshManifests(plan));
  await next;
  const again = await socksConnect(mesh.node1, client, podIp(plan, 2, 1), 8080);
  t.equal(String(await exchange(again, Buffer.from('back'))), 'back', 'removing the policy restores access');
  t.equal(String(await plaintext()), 'plain');
});
