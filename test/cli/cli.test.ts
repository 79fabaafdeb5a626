// The command line as a person uses it: exit codes, the CA verbs, and daemons fed by `ca serve`.
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import t from 'tap';
import { CLI, startProcess } from '../../src/demo/processes.js';
import { exchange, meshManifests, podIp, startEcho } from '../helpers/loopback.js';
import { SocksClient } from 'socks';

const run = promisify(execFile);
const plan = { net: 208 };

async function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const r = await run(process.execPath, [CLI, ...args]);
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

t.test('bad flags and config values: one clear line, exit code 2', async (t) => {
  const cases: [string[], RegExp][] = [
    [['run', '--node', 'n1'], /--manifests/],
    [['run', '--node', 'n1', '--manifests', '/does/not/exist'], /\/does\/not\/exist: no such file or directory/],
    [['run', '--node', 'n1', '--manifests', '/tmp', '--socks5', 'localhost'], /--socks5: expected IP:PORT/],
    [['run', '--node', 'n1', '--manifests', '/tmp', '--ca-url', 'https://127.0.0.1:15012'], /--ca-url needs --ca-token FILE and --ca-root FILE/],
    [['run', '--node', 'n1', '--manifests', '/tmp', '--drain-seconds', 'soon'], /--drain-seconds must be a number/],
    [['ca', 'issue', '--identity', 'web'], /--identity: expected spiffe:/],
    [['nonsense'], /unknown command/],
  ];
  for (const [args, re] of cases) {
    const r = await cli(args);
    t.equal(r.code, 2, args.join(' '));
    t.match(r.stderr, re);
    t.equal(r.stderr.trim().split('\n').length, 1, 'one line');
  }
});

t.test('ca init, issue and inspect', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'ztunnel-ts-cli-'));
  const init = await cli(['ca', 'init', '--dir', join(dir, 'ca')]);
  t.equal(init.code, 0, init.stderr);
  const issued = await cli(['ca', 'issue', '--dir', join(dir, 'ca'), '--identity', 'spiffe://cluster.local/ns/app/sa/web', '--ttl', '3600', '--out', join(dir, 'web')]);
  t.equal(issued.code, 0, issued.stderr);
  const inspect = await cli(['ca', 'inspect', join(dir, 'web.pem')]);
  t.match(inspect.stdout, /uri sans:\s+spiffe:\/\/cluster\.local\/ns\/app\/sa\/web/);
  t.match(readFileSync(join(dir, 'web-key.pem'), 'utf8'), /BEGIN PRIVATE KEY/);
});

t.test('authz check: verdict, deciding policy and warnings; exit 0 for either verdict, 2 for bad input', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'ztunnel-ts-cli-'));
  const file = join(dir, 'mesh.yaml');
  writeFileSync(
    file,
    meshManifests({ net: 212 }) +
      `---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: echo-from-client, namespace: app }
spec:
  selector: { matchLabels: { app: echo } }
  rules:
  - from: [{ source: { principals: ["cluster.local/ns/app/sa/client"] } }]
  - to: [{ operation: { methods: ["GET"] } }]
`,
  );
  const base = ['authz', 'check', '-f', file, '--src-ip', '127.212.1.1', '--dst', '127.212.2.1:8080', '--json'];
  const allowed = await cli([...base, '--src-identity', 'spiffe://cluster.local/ns/app/sa/client']);
  t.equal(allowed.code, 0);
  t.match(JSON.parse(allowed.stdout), { decision: 'allow', policy: 'app/echo-from-client', rule: 0 });
  const plaintext = await cli(base);
  t.equal(plaintext.code, 0);
  const denied = JSON.parse(plaintext.stdout) as { decision: string; policy: unknown; reason: string; warnings: string[] };
  t.match(denied, { decision: 'deny', policy: null, reason: 'no ALLOW policy matched' });
  t.match(denied.warnings, [/app\/echo-from-client: rule 1: HTTP attributes \(methods\)/]);
  const text = await cli(base.slice(0, -1));
  t.match(text.stdout, /^DENY\n/);
  const bad = await cli(['authz', 'check', '-f', file, '--src-ip', 'nope', '--dst', '127.212.2.1:8080']);
  t.equal(bad.code, 2);
  t.match(bad.stderr, /--src-ip: not an IP address/);
  const unknown = await cli(['authz', 'check', '-f', file, '--src-ip', '127.212.1.1', '--dst', '127.212.9.9:80']);
  t.equal(unknown.code, 2);
  t.match(unknown.stderr, /no pod with IP 127\.212\.9\.9/);
});

t.test('authz check --method: an HTTP request as the waypoint would decide it', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'ztunnel-ts-cli-'));
  const file = join(dir, 'mesh.yaml');
  const manifests = meshManifests({ net: 212 }).replace('metadata: { name: echo, namespace: app }', 'metadata: { name: echo, namespace: app, labels: { istio.io/use-waypoint: wp } }');
  writeFileSync(
    file,
    `${manifests}---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: { name: wp, namespace: app }
spec: { gatewayClassName: istio-waypoint }
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: no-admin-writes, namespace: app }
spec:
  targetRefs: [{ kind: Service, group: "", name: echo }]
  action: DENY
  rules: [{ to: [{ operation: { methods: [POST], paths: ["/admin*"] } }] }]
`,
  );
  const base = ['authz', 'check', '-f', file, '--src-ip', '127.212.1.1', '--src-identity', 'spiffe://cluster.local/ns/app/sa/client', '--dst', '10.96.212.10:80'];
  const denied = await cli([...base, '--method', 'post', '--path', '/admin/users?x=1', '--json']);
  t.equal(denied.code, 0, denied.stderr);
  t.match(JSON.parse(denied.stdout), { decision: 'deny', waypoint: 'app/wp', policy: 'app/no-admin-writes', rule: 0 });
  const allowed = await cli([...base, '--method', 'GET', '--path', '/admin/users']);
  t.match(allowed.stdout, /^ALLOW\n  waypoint:    app\/wp\n/);
  const noWaypoint = await cli(['authz', 'check', '-f', file, '--src-ip', '127.212.1.1', '--dst', '127.212.2.1:8080', '--method', 'GET']);
  t.equal(noWaypoint.code, 2);
  t.match(noWaypoint.stderr, /127\.212\.2\.1 has no waypoint/);
});

t.test('route check: eligible, excluded and why, and the pick, through the daemon\'s decision', async (t) => {
  const zones = fileURLToPath(new URL('../../../manifests/examples/locality/zones.yaml', import.meta.url));
  const check = async (dst: string, file = zones): Promise<Record<string, unknown>> => {
    const r = await cli(['route', 'check', '-f', file, '--src-ip', '10.244.1.10', '--dst', dst, '--json']);
    t.equal(r.code, 0, r.stderr);
    return JSON.parse(r.stdout) as Record<string, unknown>;
  };
  t.match(await check('10.96.0.50:80'), {
    source: { workload: 'shop/client', node: 'node-1', zone: 'eu-west-a' },
    endpoints: [
      { verdict: 'picked', workload: 'shop/cart-a', zone: 'eu-west-a' },
      { verdict: 'not preferred', workload: 'shop/cart-b', why: /PreferClose: same region, a closer endpoint is ready/ },
    ],
    result: { kind: 'hbone', target: '10.244.2.10:9080' },
  }, 'PreferClose: the client zone');
  t.match(await check('10.96.0.51:80'), {
    endpoints: [{ verdict: 'picked', workload: 'shop/cache-1' }, { verdict: 'excluded', workload: 'shop/cache-3', why: /internalTrafficPolicy Local: on node-3, not node-1/ }],
    result: { kind: 'local' },
  }, 'Local: this node only');
  // cart-a not ready in the manifests: the pick fails over, and the text output says why.
  const dir = mkdtempSync(join(tmpdir(), 'ztunnel-ts-route-'));
  const notReady = join(dir, 'zones.yaml');
  writeFileSync(notReady, readFileSync(zones, 'utf8').replace('status: { podIP: 10.244.2.10 }', "status: { podIP: 10.244.2.10, phase: Running, conditions: [{ type: Ready, status: 'False', reason: ReadinessProbeFailed }] }"));
  t.match(await check('10.96.0.50:80', notReady), { endpoints: [{ verdict: 'excluded', workload: 'shop/cart-a', why: 'Ready=False (ReadinessProbeFailed)' }, { verdict: 'picked', workload: 'shop/cart-b' }] });
  const text = await cli(['route', 'check', '-f', notReady, '--src-ip', '10.244.1.10', '--dst', '10.96.0.50:80']);
  t.match(text.stdout, /excluded\s+shop\/cart-a 10\.244\.2\.10 on node-2 zone eu-west-a: Ready=False \(ReadinessProbeFailed\)/);
  t.match(text.stdout, /result: +HBONE to 10\.244\.3\.10:15008/);
  const none = join(dir, 'none.yaml');
  writeFileSync(none, readFileSync(zones, 'utf8').replace(/status: \{ podIP: (10\.244\.1\.11) \}/, "status: { podIP: $1, phase: Pending }"));
  t.match(await check('10.96.0.51:80', none), { result: { kind: 'reject', flag: 'NO_HEALTHY_UPSTREAM', reason: /no ready endpoint/ } }, 'Local with its pod Pending: refused, not sent elsewhere');
  const bad = await cli(['route', 'check', '-f', zones, '--src-ip', '10.9.9.9', '--dst', '10.96.0.50:80']);
  t.equal(bad.code, 2);
  t.match(bad.stderr, /--src-ip: no pod with IP 10\.9\.9\.9/);
});

t.test('route check and authz check over IPv6: any spelling of the client address, the family the client used', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'ztunnel-ts-route6-'));
  const file = join(dir, 'dual.yaml');
  writeFileSync(
    file,
    `apiVersion: v1
kind: Namespace
metadata: { name: app, labels: { istio.io/dataplane-mode: ambient } }
---
apiVersion: v1
kind: Pod
metadata: { name: client, namespace: app }
spec: { nodeName: node-1, serviceAccountName: client, containers: [{ name: c }] }
status: { podIP: 10.244.1.10, podIPs: [{ ip: 10.244.1.10 }, { ip: "fd00:10:244:1::10" }] }
---
apiVersion: v1
kind: Pod
metadata: { name: web, namespace: app, labels: { app: web } }
spec: { nodeName: node-2, containers: [{ name: c }] }
status: { podIP: 10.244.2.10, podIPs: [{ ip: 10.244.2.10 }, { ip: "fd00:10:244:2::10" }] }
---
apiVersion: v1
kind: Service
metadata: { name: web, namespace: app }
spec: { clusterIP: 10.96.0.30, clusterIPs: [10.96.0.30, "fd00:10:96::30"], selector: { app: web }, ports: [{ port: 80, targetPort: 8080 }] }
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: v6-only, namespace: app }
spec:
  selector: { matchLabels: { app: web } }
  rules: [{ from: [{ source: { ipBlocks: ["fd00:10:244:1::/64"] } }] }]
`,
  );
  const route = await cli(['route', 'check', '-f', file, '--src-ip', 'FD00:10:244:1:0:0:0:10', '--dst', '[fd00:10:96::30]:80', '--json']);
  t.equal(route.code, 0, route.stderr);
  t.match(JSON.parse(route.stdout), { source: { workload: 'app/client' }, result: { kind: 'hbone', target: '[fd00:10:244:2::10]:8080' } }, 'the IPv6 cluster IP: the pod\'s IPv6 address');
  const v4 = await cli(['route', 'check', '-f', file, '--src-ip', '10.244.1.10', '--dst', '10.96.0.30:80', '--json']);
  t.match(JSON.parse(v4.stdout), { result: { kind: 'hbone', target: '10.244.2.10:8080' } }, 'the IPv4 cluster IP: its IPv4 address');
  const authz = (src: string): Promise<{ code: number | null; stdout: string; stderr: string }> =>
    cli(['authz', 'check', '-f', file, '--src-ip', src, '--src-identity', 'spiffe://cluster.local/ns/app/sa/client', '--dst', '[fd00:10:244:2::10]:8080', '--json']);
  t.match(JSON.parse((await authz('fd00:10:244:1::10')).stdout), { decision: 'allow', policy: 'app/v6-only' }, 'a source in the IPv6 block is allowed');
  t.match(JSON.parse((await authz('10.244.1.10')).stdout), { decision: 'deny' }, 'the same pod by its IPv4 address is not in it');
});

t.test('standalone CA + two daemons as processes; SIGTERM drains and exits 0', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'ztunnel-ts-cli-'));
  const manifests = join(dir, 'mesh.yaml');
  writeFileSync(manifests, meshManifests(plan));
  const caDir = join(dir, 'ca');
  t.equal((await cli(['ca', 'init', '--dir', caDir])).code, 0);
  for (const node of ['node-1', 'node-2']) {
    t.equal((await cli(['ca', 'token', '--dir', caDir, '--node', node, '--out', join(dir, `${node}.jwt`)])).code, 0);
  }
  const ca = startProcess('ca', ['ca', 'serve', '--dir', caDir, '--manifests', manifests, '--listen', '127.208.0.1:15012']);
  t.teardown(() => ca.stop());
  await ca.waitFor((l) => l['msg'] === 'ca serving');
  const daemon = (node: string, socks: string) =>
    startProcess(node, [
      'run', '--node', node, '--manifests', manifests,
      '--ca-url', 'https://127.208.0.1:15012', '--ca-token', join(dir, `${node}.jwt`), '--ca-root', join(caDir, 'root-cert.pem'),
      '--socks5', socks, '--drain-seconds', '2',
      '--admin', socks.replace(':15080', ':15000'), '--metrics', socks.replace(':15080', ':15020'), '--readiness', socks.replace(':15080', ':15021'),
    ]);
  const n1 = daemon('node-1', '127.208.1.254:15080');
  const n2 = daemon('node-2', '127.208.2.254:15080');
  t.teardown(() => Promise.all([n1.stop('SIGKILL'), n2.stop('SIGKILL')]));
  await Promise.all([n1.waitFor((l) => l['msg'] === 'ztunnel-ts ready'), n2.waitFor((l) => l['msg'] === 'ztunnel-ts ready')]);
  await n2.waitFor((l) => l['msg'] === 'workload certificate issued');
  const echo = await startEcho(podIp(plan, 2, 1));
  t.teardown(() => echo.close());

  const { socket } = await SocksClient.createConnection({
    proxy: { host: '127.208.1.254', port: 15080, type: 5 },
    command: 'connect',
    destination: { host: podIp(plan, 2, 1), port: 8080 },
    socket_options: { localAddress: podIp(plan, 1, 1), host: '127.208.1.254', port: 15080 },
  });
  t.equal(String(await exchange(socket, Buffer.from('through two processes'))), 'through two processes');
  const inbound = await n2.waitFor((l) => l['msg'] === 'connection complete' && l['direction'] === 'inbound');
  t.equal(inbound['src.identity'], 'spiffe://cluster.local/ns/app/sa/client');
  t.equal(inbound['dst.identity'], 'spiffe://cluster.local/ns/app/sa/echo');

  const refusedLog = ca.lines.find((l) => String(l['msg']).startsWith('ca refused'));
  t.equal(refusedLog, undefined, 'each daemon asked only for its own pods');

  t.equal(await n1.stop('SIGTERM'), 0, 'node-1 exits 0 after draining');
  t.ok(n1.lines.some((l) => l['msg'] === 'drained'));
});
