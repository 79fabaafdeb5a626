// What operators see: exact Istio TCP metrics on both reporters, access-log fields, config_dump,
// readiness, log level, and the live flow view showing a denied connection.
import { execFile } from 'node:child_process';
import { appendFileSync, mkdtempSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import t from 'tap';
import { App } from '../../src/app.js';
import { configFromFlags } from '../../src/config/config.js';
import { CaServer } from '../../src/identity/ca-server.js';
import { CertificateAuthority } from '../../src/identity/ca.js';
import { issueNodeToken } from '../../src/identity/tokens.js';
import { State } from '../../src/model/state.js';
import { parseManifestText } from '../../src/sources/manifests.js';
import { translate } from '../../src/sources/translate.js';
import { CLI } from '../../src/demo/processes.js';
import { exchange, meshManifests, podIp, quietLogger, socksConnect, startMesh } from '../helpers/loopback.js';

const plan = { net: 213 };
const CLIENT = 'cluster.local/ns/app/sa/client';
const ECHO = 'cluster.local/ns/app/sa/echo';

async function get(url: string, method = 'GET'): Promise<{ status: number; body: string }> {
  const res = await fetch(url, { method });
  return { status: res.status, body: await res.text() };
}

/** Value of the first sample of a metric whose labels include all of `labels`. */
function sample(text: string, name: string, labels: Record<string, string>): number | undefined {
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`)) continue;
    if (Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`))) return Number(line.split(' ').at(-1));
  }
  return undefined;
}

async function eventually<T>(f: () => Promise<T | undefined>, ms = 3000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v !== undefined || Date.now() > deadline) return v as T;
    await new Promise((r) => setTimeout(r, 50));
  }
}

t.test('metrics, access log, config_dump, log level and flows of two running daemons', async (t) => {
  const logs: Record<string, unknown>[] = [];
  const mesh = await startMesh(plan, { logSink: (l) => logs.push(l) });
  t.teardown(() => mesh.close());
  // Reads 11 bytes, answers 22.
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    let got = 0;
    s.on('data', (c: Buffer) => {
      got += c.length;
      if (got >= 11) s.end('twenty-two bytes back!');
    });
  });
  await new Promise<void>((r) => server.listen(7070, podIp(plan, 2, 1), r));
  t.teardown(() => server.close());

  const s = await socksConnect(mesh.node1, podIp(plan, 1, 1), podIp(plan, 2, 1), 7070);
  t.equal((await exchange(s, Buffer.from('eleven byte'))).length, 22);

  for (const [app, reporter] of [[mesh.node1, 'source'], [mesh.node2, 'destination']] as const) {
    const url = `http://127.0.0.1:${app.addresses.metrics?.port ?? 0}/metrics`;
    const labels = { reporter, source_principal: CLIENT, destination_principal: ECHO, source_workload: 'client', destination_workload: 'echo-a', connection_security_policy: 'mutual_tls' };
    const text = await eventually(async () => {
      const body = (await get(url)).body;
      return sample(body, 'istio_tcp_connections_closed_total', labels) === undefined ? undefined : body;
    });
    t.equal(sample(text, 'istio_tcp_connections_opened_total', labels), 1, `${reporter}: opened`);
    t.equal(sample(text, 'istio_tcp_connections_closed_total', labels), 1, `${reporter}: closed`);
    t.equal(sample(text, 'istio_tcp_received_bytes_total', labels), 11, `${reporter}: client → server bytes`);
    t.equal(sample(text, 'istio_tcp_sent_bytes_total', labels), 22, `${reporter}: server → client bytes`);
    t.match(text, /ztunnel_certificate_expiry_seconds\{identity="spiffe:\/\/cluster\.local\/ns\/app\/sa\//);
    t.match(text, /process_resident_memory_bytes/);
    t.equal((await get(url.replace('/metrics', '/stats/prometheus'))).status, 200);
  }

  const line = logs.find((l) => l['msg'] === 'connection complete' && l['direction'] === 'outbound' && l['dst.addr'] === `${podIp(plan, 2, 1)}:7070`);
  t.match(line, {
    level: 30,
    'src.addr': new RegExp(`^${podIp(plan, 1, 1)}:`),
    'src.workload': 'client',
    'src.namespace': 'app',
    'src.identity': `spiffe://${CLIENT}`,
    'dst.addr': `${podIp(plan, 2, 1)}:7070`,
    'dst.hbone_addr': `${podIp(plan, 2, 1)}:15008`,
    'dst.workload': 'echo-a',
    'dst.namespace': 'app',
    'dst.identity': `spiffe://${ECHO}`,
    bytes_sent: 11,
    bytes_recv: 22,
    duration: Number,
  });

  const dump = JSON.parse((await get(`http://127.0.0.1:${mesh.node2.addresses.admin?.port ?? 0}/config_dump`)).body) as Record<string, unknown>;
  t.match(dump, {
    node: 'node-2',
    config: { nodeName: 'node-2', trustDomain: 'cluster.local' },
    workloads: [{ uid: 'app/client', identity: `spiffe://${CLIENT}` }],
    services: [{ uid: 'app/echo', endpoints: [{ uid: 'app/echo-a', ready: true, reason: String }, { uid: 'app/echo-b', ready: true, openConnections: Number }] }],
    policies: Array,
    certificates: [{ identity: `spiffe://${ECHO}`, expiresInSeconds: Number }],
  });

  const admin = `http://127.0.0.1:${mesh.node1.addresses.admin?.port ?? 0}`;
  // A manifest rewrite logs 'manifests applied' at debug: it shows whether the level took effect.
  const reapplied = async (): Promise<boolean> => {
    const from = logs.length;
    const changed = new Promise<void>((r) => mesh.node1.state.once('change', () => r()));
    appendFileSync(mesh.manifestFile, '\n# touched\n');
    await changed;
    return logs.slice(from).some((l) => l['node'] === 'node-1' && l['level'] === 20 && l['msg'] === 'manifests applied');
  };
  t.notOk(await reapplied(), 'at info, no debug line');
  t.equal((await get(`${admin}/logging?level=debug`, 'POST')).status, 200);
  t.ok(await reapplied(), 'after POST /logging?level=debug, debug lines appear');
  t.equal((await get(`${admin}/logging?level=chatty`, 'POST')).status, 400, 'an unknown level is refused');
  t.ok(await reapplied(), 'and changes nothing');
  t.equal((await get(`${admin}/logging?level=info`, 'POST')).status, 200);
  t.notOk(await reapplied(), 'after level=info, they are gone again');

  t.test('observe shows a denied flow', async (t) => {
    const node2Admin = `http://127.0.0.1:${mesh.node2.addresses.admin?.port ?? 0}`;
    const observed = new Promise<string>((resolve, reject) =>
      execFile(process.execPath, [CLI, 'observe', '--admin', node2Admin, '--verdict', 'denied', '--count', '1'], { timeout: 15_000 }, (err, stdout) =>
        err === null ? resolve(stdout) : reject(err),
      ),
    );
    // Wait until observe is subscribed to node-2's flow stream.
    for (let i = 0; i < 200 && mesh.node2.flows.listenerCount('flow') === 0; i++) await new Promise((r) => setTimeout(r, 50));
    writeFileSync(
      mesh.manifestFile,
      `${meshManifests(plan)}---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: no-client, namespace: app }
spec:
  action: DENY
  rules: [{ from: [{ source: { principals: ["${CLIENT}"] } }] }]
`,
    );
    await new Promise<void>((r) => mesh.node2.state.once('change', () => r()));
    await t.rejects(socksConnect(mesh.node1, podIp(plan, 1, 1), podIp(plan, 2, 1), 7070));
    const out = await observed;
    t.match(out, new RegExp(`node-2 +app/client \\(ns/app/sa/client\\) -> app/echo-a:7070 inbound DENIED`));
    const failed = sample((await get(`http://127.0.0.1:${mesh.node2.addresses.metrics?.port ?? 0}/metrics`)).body, 'istio_tcp_connections_failed_total', { reporter: 'destination', response_flags: 'DENIED' });
    t.equal(failed, 1, 'the denial is counted');
  });
});

t.test('readiness: 503 listing what is pending until certificates arrive, then 200', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'ztunnel-ts-ready-'));
  const manifests = join(dir, 'mesh.yaml');
  writeFileSync(manifests, meshManifests({ net: 214 }));
  const ca = await CertificateAuthority.create('cluster.local');
  writeFileSync(join(dir, 'root.pem'), ca.rootPem);
  writeFileSync(join(dir, 'node.jwt'), await issueNodeToken(ca.tokenKey, 'node-1'));
  const port = 25012;
  const app = await App.start(
    configFromFlags({
      node: 'node-1', manifests, caUrl: `https://127.214.0.1:${port}`, caToken: join(dir, 'node.jwt'), caRoot: join(dir, 'root.pem'),
      admin: '127.0.0.1:0', metrics: '127.0.0.1:0', readiness: '127.0.0.1:0', drainSeconds: 1,
    }),
    quietLogger(),
  );
  t.teardown(() => app.drain(100));
  const url = `http://127.0.0.1:${app.addresses.readiness?.port ?? 0}/healthz/ready`;
  const before = await get(url);
  t.equal(before.status, 503, 'the CA is not there yet');
  t.match(before.body, /certificates: spiffe:\/\/cluster\.local\/ns\/app\/sa\/client/);

  const state = new State();
  state.replace(translate(parseManifestText('m.yaml', meshManifests({ net: 214 })), { trustDomain: 'cluster.local' }));
  const server = new CaServer({ ca, state, trustDomain: 'cluster.local', logger: pino({ level: 'silent' }), host: '127.214.0.1', port, maxTtlMs: 3600_000 });
  await server.start();
  t.teardown(() => server.close());
  const after = await eventually(async () => {
    const r = await get(url);
    return r.status === 200 ? r : undefined;
  }, 8000);
  t.equal(after?.status, 200, 'ready once the CA answered');
});
