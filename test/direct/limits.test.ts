// Limits an operator sets: connections per source pod and in all; at the limit new connections are
// refused with a flag and a metric while open ones keep working; the descriptor limit is raised.
import t from 'tap';
import { podIp, roundTrip, socksConnect, startEcho, startMesh } from '../helpers/loopback.js';

const plan = { net: 225 };

t.test('connection limits', async (t) => {
  const logs: Record<string, unknown>[] = [];
  const mesh = await startMesh(plan, { logSink: (l) => logs.push(l), node1Flags: { maxConnections: '3', maxConnectionsPerSource: '2' } });
  t.teardown(() => mesh.close());
  const echo = await startEcho(podIp(plan, 2, 1));
  t.teardown(() => echo.close());
  const client = podIp(plan, 1, 1);
  const other = podIp(plan, 1, 2); // the local-echo pod, as a second source
  const open = (from: string): ReturnType<typeof socksConnect> => socksConnect(mesh.node1, from, podIp(plan, 2, 1), 8080);
  const refusal = (from: string): Record<string, unknown> | undefined =>
    logs.filter((l) => l['node'] === 'node-1' && l['msg'] === 'connection failed' && String(l['src.addr']).startsWith(`${from}:`)).at(-1);

  const a = await open(client);
  const b = await open(client);
  t.equal(await roundTrip(a, 'a'), 'a');
  await t.rejects(open(client), /Failure/, 'a third connection from the same pod is refused');
  t.match(refusal(client), { response_flags: 'CONNECTION_LIMIT', error: /--max-connections-per-source 2/ }, 'saying which limit');
  t.equal(await roundTrip(b, 'b still works'), 'b still works', 'the open ones keep working');

  const c = await open(other);
  t.equal(await roundTrip(c, 'c'), 'c', 'another pod still gets one');
  await t.rejects(open(other), /Failure/, 'until the daemon is at its limit');
  t.match(refusal(other), { response_flags: 'CONNECTION_LIMIT', error: /--max-connections 3/ });

  const metrics = await (await fetch(`http://127.0.0.1:${mesh.node1.addresses.metrics?.port ?? 0}/metrics`)).text();
  const limited = [...metrics.matchAll(/^istio_tcp_connections_failed_total\{[^}]*response_flags="CONNECTION_LIMIT"[^}]*\} (\d+)/gm)].reduce((n, m) => n + Number(m[1]), 0);
  t.equal(limited, 2, 'both refusals are counted, with their flag');

  a.destroy();
  // The daemon frees the slot when it records the connection's end, just after the client closed.
  for (let i = 0; i < 100 && mesh.node1.limits.open > 2; i++) await new Promise((r) => setTimeout(r, 20));
  t.equal(mesh.node1.limits.open, 2, 'the closed connection gave its slot back');
  const d = await open(client);
  t.equal(await roundTrip(d, 'd'), 'd', 'a freed slot is used again');
  for (const s of [b, c, d]) s.destroy();

  const dump = (await (await fetch(`http://127.0.0.1:${mesh.node1.addresses.admin?.port ?? 0}/config_dump`)).json()) as {
    limits: { maxConnections: number; maxConnectionsPerSource: number; maxHboneStreams: number; fileDescriptors: { soft: number; hard: number } };
  };
  t.match(dump.limits, { maxConnections: 3, maxConnectionsPerSource: 2, maxHboneStreams: 200 }, 'config_dump shows the limits');
  t.equal(dump.limits.fileDescriptors.soft, dump.limits.fileDescriptors.hard, 'the descriptor limit was raised to the hard limit');
});
