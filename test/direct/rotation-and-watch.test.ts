// Certificates rotate under a live connection; manifest edits re-route new connections without restart.
import { writeFileSync } from 'node:fs';
import t from 'tap';
import { exchange, meshManifests, roundTrip, podIp, socksConnect, startEcho, startMesh, vip } from '../helpers/loopback.js';

const plan = { net: 206 };
const CLIENT = 'spiffe://cluster.local/ns/app/sa/client';

t.test('certificate rotation (short TTL) while a long connection stays up', async (t) => {
  const mesh = await startMesh(plan, { certTtl: 2 });
  t.teardown(() => mesh.close());
  const echo = await startEcho(podIp(plan, 2, 1));
  t.teardown(() => echo.close());
  const long = await socksConnect(mesh.node1, podIp(plan, 1, 1), podIp(plan, 2, 1), 8080);
  const first = mesh.node1.certs.peek(CLIENT);
  t.ok(first);
  // Keep the connection busy until the first certificate has expired, noting each certificate in use.
  const serials = new Set<string>();
  let servedExpired = 0;
  for (let i = 0; Date.now() <= (first?.notAfter.getTime() ?? 0) + 200; i++) {
    t.equal(await roundTrip(long, `tick-${i}`), `tick-${i}`);
    const current = mesh.node1.certs.peek(CLIENT);
    if (current === undefined || current.notAfter.getTime() <= Date.now()) servedExpired += 1;
    serials.add(current?.serial ?? '');
    await new Promise((r) => setTimeout(r, 200));
  }
  t.ok(serials.size >= 2, `client certificate rotated during the connection (${serials.size} certificates seen)`);
  t.equal(servedExpired, 0, 'there was always a valid certificate');
  // The first certificate has expired by now: new connections must use the renewed one.
  const fresh = await socksConnect(mesh.node1, podIp(plan, 1, 1), podIp(plan, 2, 1), 8080);
  t.equal(String(await exchange(fresh, Buffer.from('new'))), 'new');
  t.equal(await roundTrip(long, 'still here'), 'still here', 'the long connection survived every rotation');
  long.end();
});

t.test('changing a Service selector moves new connections; malformed YAML keeps the old state', async (t) => {
  const mesh = await startMesh({ net: 207 });
  t.teardown(() => mesh.close());
  const p = { net: 207 };
  const echoA = await startEcho(podIp(p, 2, 1));
  const echoB = await startEcho(podIp(p, 2, 2));
  const local = await startEcho(podIp(p, 1, 2));
  t.teardown(() => Promise.all([echoA.close(), echoB.close(), local.close()]));
  const viaVip = async (): Promise<void> => {
    const s = await socksConnect(mesh.node1, podIp(p, 1, 1), vip(p), 80);
    await exchange(s, Buffer.from('x'));
  };
  const changed = (): Promise<void> => new Promise((r) => mesh.node1.state.once('change', () => r()));

  let next = changed();
  writeFileSync(mesh.manifestFile, meshManifests(p).replace('selector: { app: echo }', 'selector: { app: local-echo }'));
  await next;
  for (let i = 0; i < 5; i++) await viaVip();
  t.equal(local.peers.length, 5, 'new connections go to the new endpoint');
  t.equal(echoA.peers.length + echoB.peers.length, 0);

  next = changed();
  writeFileSync(mesh.manifestFile, 'apiVersion: v1\nkind: Service\nmetadata: { name: echo, namespace: app }\nspec: { ports: [{ port: oops }] }\n');
  await next;
  t.equal(mesh.node1.manifestErrors.length, 1);
  t.match(mesh.node1.manifestErrors[0]?.message, /mesh\.yaml: Service app\/echo \(document 1\): spec\.ports\[0\]\.port/);
  await viaVip();
  t.equal(local.peers.length, 6, 'the last good state keeps serving');
});
