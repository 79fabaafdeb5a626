// Kubernetes mode against a real control plane: etcd and kube-apiserver built from their Go modules, the
// install manifests applied, and two daemons that follow what kubectl changes. Skipped, saying why, only
// where Go is missing (CI has it).
import { mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import t from 'tap';
import { parse } from 'yaml';
import { App } from '../../src/app.js';
import { configFromFlags } from '../../src/config/config.js';
import { CaServer } from '../../src/identity/ca-server.js';
import { CertificateAuthority } from '../../src/identity/ca.js';
import { kubeTokenReviewApi } from '../../src/identity/kube-token-review.js';
import { tokenReviewAuthenticator } from '../../src/identity/node-authenticator.js';
import { RemoteCaSource } from '../../src/identity/source.js';
import { goTool } from '../../src/lab/go-tools.js';
import { kubeApi } from '../../src/sources/kube.js';
import { controlPlaneSkipReason, startControlPlane, type ControlPlane } from '../helpers/control-plane.js';
import { exchange, podIp, socksConnect, startEcho } from '../helpers/loopback.js';

const plan = { net: 224 };
// A cold cache builds etcd, kube-apiserver, kube-controller-manager and kubectl first (~4 minutes here).
t.setTimeout(900_000);
const MANIFESTS = fileURLToPath(new URL('../../../manifests/', import.meta.url));
const IMAGE = 'registry.k8s.io/pause:3.10';

async function until(what: string, pred: () => boolean | Promise<boolean>, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await pred())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** The mesh of test/helpers/loopback.ts as API objects (pods get their IPs through the status subresource). */
function meshObjects(): string {
  const pod = (ns: string, name: string, node: 1 | 2, sa: string): string => `---
apiVersion: v1
kind: Pod
metadata: { name: ${name}, namespace: ${ns}, labels: { app: ${name} } }
spec: { nodeName: node-${node}, serviceAccountName: ${sa}, containers: [{ name: main, image: ${IMAGE}, ports: [{ name: http, containerPort: 8080 }] }] }
`;
  const sa = (ns: string, name: string): string => `---\napiVersion: v1\nkind: ServiceAccount\nmetadata: { name: ${name}, namespace: ${ns} }\n`;
  return `apiVersion: v1
kind: Namespace
metadata: { name: app, labels: { istio.io/dataplane-mode: ambient } }
---
apiVersion: v1
kind: Node
metadata: { name: node-1 }
---
apiVersion: v1
kind: Node
metadata: { name: node-2 }
${sa('app', 'client')}${sa('app', 'echo')}${pod('app', 'client', 1, 'client')}${pod('app', 'echo-a', 2, 'echo')}`;
}

function setStatus(cp: ControlPlane): void {
  const podStatus = (name: string, ip: string): void =>
    void cp.kubectl(['-n', 'app', 'patch', 'pod', name, '--subresource=status', '--type=merge', '-p', JSON.stringify({ status: { phase: 'Running', podIP: ip, podIPs: [{ ip }] } })]);
  podStatus('client', podIp(plan, 1, 1));
  podStatus('echo-a', podIp(plan, 2, 1));
  for (const n of [1, 2] as const) {
    cp.kubectl(['patch', 'node', `node-${n}`, '--subresource=status', '--type=merge', '-p', JSON.stringify({ status: { addresses: [{ type: 'InternalIP', address: `127.${plan.net}.${n}.254` }] } })]);
  }
}

t.test('a real control plane', { skip: controlPlaneSkipReason() ?? false }, async (t) => {
  const cp = await startControlPlane();
  t.teardown(() => cp.close());

  t.test('the install manifests: accepted by a server-side dry run, and RBAC grants exactly the reads', async (t) => {
    cp.kubectl(['apply', '-f', join(MANIFESTS, 'install', '00-namespace.yaml')]);
    cp.kubectl(['apply', '-f', join(MANIFESTS, 'install', '10-crd-authorizationpolicy.yaml')]);
    cp.kubectl(['wait', '--for=condition=Established', '--timeout=60s', 'crd/authorizationpolicies.security.istio.io']);
    cp.kubectl(['apply', '-f', join(MANIFESTS, 'install', '20-rbac.yaml')]);
    for (const f of readdirSync(join(MANIFESTS, 'install')).sort()) {
      t.match(cp.kubectl(['apply', '--dry-run=server', '-f', join(MANIFESTS, 'install', f)]), /(created|configured|unchanged) \(server dry run\)/, `install/${f}`);
    }
    // The Gateway API CRDs, from the sigs.k8s.io/gateway-api module (scripts/go-tool.sh), so that Gateways
    // and HTTPRoutes are checked too.
    const crds = goTool('gateway-api-crds');
    for (const f of readdirSync(crds).sort()) cp.kubectl(['apply', '--server-side', '-f', join(crds, f)]);
    cp.kubectl(['wait', '--for=condition=Established', '--timeout=60s', 'crd', '--all']);
    // The examples need their namespaces.
    for (const f of ['demo/cluster.yaml', 'loopback/mesh.yaml', 'waypoint/bookinfo.yaml', 'waypoint/cluster.yaml', 'locality/zones.yaml', 'dual-stack/cluster.yaml', 'policies.yaml']) {
      const text = readFileSync(join(MANIFESTS, 'examples', f), 'utf8');
      const docs = text.split(/^---$/m);
      // A dry run creates nothing, so the namespaces and service accounts the pods need go in for real.
      const needed = docs.filter((d) => /kind: (Namespace|ServiceAccount)\b/.test(d));
      for (const kind of ['Namespace', 'ServiceAccount']) {
        const some = needed.filter((d) => new RegExp(`kind: ${kind}\\b`).test(d)).join('---\n');
        if (some !== '') cp.kubectl(['apply', '-f', '-'], some);
      }
      for (const d of needed.filter((x) => /kind: Namespace\b/.test(x))) {
        const ns = (parse(d) as { metadata: { name: string } }).metadata.name;
        // The ServiceAccount controller gives each new namespace its "default" account.
        await until(`${ns}/default`, () => cp.kubectlStatus(['-n', ns, 'get', 'serviceaccount', 'default']).status === 0, 30_000);
      }
      t.match(cp.kubectl(['apply', '--dry-run=server', '-f', '-'], docs.join('---\n')), /\(server dry run\)/, `examples/${f}`);
    }
    // A SubjectAccessReview, as `kubectl auth can-i --as` sends.
    const can = (sa: string, verb: string, resource: string): boolean => {
      const [plural, ...group] = resource.split('.');
      const review = {
        apiVersion: 'authorization.k8s.io/v1',
        kind: 'SubjectAccessReview',
        spec: {
          user: `system:serviceaccount:istio-system:${sa}`,
          groups: ['system:serviceaccounts', 'system:serviceaccounts:istio-system', 'system:authenticated'],
          resourceAttributes: { verb, group: group.join('.'), resource: plural },
        },
      };
      return (JSON.parse(cp.kubectl(['create', '-o', 'json', '-f', '-'], JSON.stringify(review))) as { status: { allowed: boolean } }).status.allowed;
    };
    for (const resource of ['namespaces', 'pods', 'services', 'nodes', 'endpointslices.discovery.k8s.io', 'authorizationpolicies.security.istio.io', 'gateways.gateway.networking.k8s.io', 'httproutes.gateway.networking.k8s.io']) {
      for (const verb of ['get', 'list', 'watch']) t.ok(can('ztunnel', verb, resource), `the daemon may ${verb} ${resource}`);
      for (const verb of ['create', 'update', 'delete']) t.notOk(can('ztunnel', verb, resource), `the daemon may not ${verb} ${resource}`);
    }
    t.ok(can('ztunnel-ca', 'create', 'tokenreviews.authentication.k8s.io'), 'the CA may review tokens');
    t.notOk(can('ztunnel', 'create', 'tokenreviews.authentication.k8s.io'), 'the daemon may not');
    t.notOk(can('ztunnel', 'list', 'secrets'), 'and nobody reads secrets');
  });

  cp.kubectl(['apply', '-f', '-'], meshObjects());
  setStatus(cp);
  const dir = mkdtempSync(join(tmpdir(), 'ztunnel-ts-k8s-daemons-'));
  const logs: Record<string, unknown>[] = [];
  const start = (node: string): Promise<App> =>
    App.start(
      configFromFlags({
        node, kube: true, kubeconfig: cp.kubeconfig, caDir: join(dir, 'ca'),
        socks5: '127.0.0.1:0', admin: '127.0.0.1:0', metrics: '127.0.0.1:0', readiness: '127.0.0.1:0', drainSeconds: 1,
      }),
      pino({ level: 'info' }, { write: (l: string) => void logs.push(JSON.parse(l) as Record<string, unknown>) }).child({ node }),
    );
  const node1 = await start('node-1');
  const node2 = await start('node-2');
  t.teardown(() => Promise.all([node1.drain(100), node2.drain(100)]));
  const echo = await startEcho(podIp(plan, 2, 1));
  t.teardown(() => echo.close());
  const client = podIp(plan, 1, 1);
  /** 'ok' when bytes went there and back; otherwise the SOCKS refusal and node-1's flag for it. */
  const attempt = async (): Promise<string> => {
    try {
      const s = await socksConnect(node1, client, podIp(plan, 2, 1), 8080);
      return String(await exchange(s, Buffer.from('hi'))) === 'hi' ? 'ok' : 'wrong bytes';
    } catch (err) {
      const line = logs.filter((l) => l['node'] === 'node-1' && l['msg'] === 'connection failed').at(-1);
      return `${(err as Error).message} [${String(line?.['response_flags'])}]`;
    }
  };

  t.test('list, then watch: both daemons serve what the API server holds', async (t) => {
    await until('first sync', () => node1.pending().length === 0 && node2.pending().length === 0 && node1.state.workloadByIp(podIp(plan, 2, 1)) !== undefined, 30_000);
    t.equal(await attempt(), 'ok', 'HBONE from client to echo-a');
    t.match(logs.filter((l) => l['msg'] === 'connection complete' && l['direction'] === 'inbound').at(-1), { node: 'node-2', 'src.identity': 'spiffe://cluster.local/ns/app/sa/client' });
  });

  t.test('a namespace label flip with kubectl is seen within 1 s, both ways', async (t) => {
    cp.kubectl(['label', 'namespace', 'app', 'istio.io/dataplane-mode-']);
    await until('capture off', () => node1.state.workloadByIp(client)?.captured === false, 1000);
    t.match(await attempt(), /NotAllowed \[UNKNOWN_SOURCE\]/, 'the client is no longer in the mesh');
    cp.kubectl(['label', 'namespace', 'app', 'istio.io/dataplane-mode=ambient']);
    await until('capture on', () => node1.state.workloadByIp(client)?.captured === true, 1000);
    t.equal(await attempt(), 'ok');
  });

  t.test('dual stack from the API server: a pod\'s podIPs and a RequireDualStack Service\'s clusterIPs reach the daemons', async (t) => {
    cp.kubectl(['apply', '-f', '-'], `apiVersion: v1
kind: Service
metadata: { name: dual, namespace: app }
spec:
  ipFamilyPolicy: RequireDualStack
  ipFamilies: [IPv6, IPv4]
  selector: { app: dual }
  ports: [{ port: 80, targetPort: 8080 }]
---
apiVersion: v1
kind: Pod
metadata: { name: dual, namespace: app, labels: { app: dual } }
spec: { nodeName: node-2, serviceAccountName: echo, containers: [{ name: main, image: registry.k8s.io/pause:3.10 }] }
`);
    t.teardown(() => void cp.kubectl(['-n', 'app', 'delete', 'service/dual', 'pod/dual', '--wait=false']));
    const v6 = 'fd00:10:244:2::77';
    cp.kubectl(['-n', 'app', 'patch', 'pod', 'dual', '--subresource=status', '--type=merge', '-p', JSON.stringify({ status: { phase: 'Running', podIP: podIp(plan, 2, 77), podIPs: [{ ip: podIp(plan, 2, 77) }, { ip: 'FD00:10:244:2:0:0:0:77' }] } })]);
    const assigned = (JSON.parse(cp.kubectl(['-n', 'app', 'get', 'service', 'dual', '-o', 'json'])) as { spec: { clusterIPs: string[] } }).spec.clusterIPs;
    t.equal(assigned.length, 2, `the API server assigned a cluster IP of each family (${assigned.join(', ')})`);
    await until('the pod by its IPv6 address', () => node1.state.workloadByIp(v6)?.name === 'dual', 5000);
    t.same(node1.state.workloadByIp(v6)?.ips, [podIp(plan, 2, 77), v6], 'both addresses, IPv6 in RFC 5952 form');
    await until('the service by both cluster IPs', () => assigned.every((ip) => node1.state.serviceByVip(ip)?.uid === 'app/dual'), 5000);
    t.equal(node1.state.serviceByVip(assigned[0] ?? '')?.vip, assigned[0], 'the primary cluster IP is the first family listed (IPv6)');
  });

  t.test('an AuthorizationPolicy applied with kubectl denies, and deleting it allows again', async (t) => {
    cp.kubectl(['apply', '-f', '-'], `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: deny-client, namespace: app }
spec: { action: DENY, rules: [{ from: [{ source: { principals: ["cluster.local/ns/app/sa/client"] } }] }] }
`);
    await until('policy loaded', () => node2.state.policies.length === 1, 5000);
    t.match(await attempt(), /NotAllowed \[DENIED\]/);
    t.match(logs.filter((l) => l['node'] === 'node-2' && l['msg'] === 'connection denied by policy').at(-1), { policy: 'app/deny-client' });
    cp.kubectl(['-n', 'app', 'delete', 'authorizationpolicy', 'deny-client']);
    await until('policy removed', () => node2.state.policies.length === 0, 5000);
    t.equal(await attempt(), 'ok');
  });

  t.test('the API server down for 30 s: the last state keeps serving; after it returns (history compacted) the daemons resync', async (t) => {
    await cp.stopApiServer();
    t.equal(await attempt(), 'ok', 'right after it stopped');
    await new Promise((r) => setTimeout(r, 30_000));
    t.equal(await attempt(), 'ok', '30 s later');
    t.same(node1.pending(), [], 'node-1 still ready');
    t.ok(logs.some((l) => l['msg'] === 'kubernetes watch failed; keeping the last state'), 'the lost watch is logged');
    // The API server's own lease writes moved etcd on; compacting now makes the informers' resource
    // versions too old, so they must list again rather than resume their watches.
    await cp.compact();
    await cp.startApiServer();
    cp.kubectl(['label', 'namespace', 'app', 'istio.io/dataplane-mode-']);
    await until('the change made after the restart', () => node1.state.workloadByIp(client)?.captured === false, 45_000);
    cp.kubectl(['label', 'namespace', 'app', 'istio.io/dataplane-mode=ambient']);
    await until('and the next one', () => node1.state.workloadByIp(client)?.captured === true, 5000);
    t.equal(await attempt(), 'ok', 'traffic flows on the resynced state');
    // Nodes had not changed since long before the stop: their watches resumed from a bookmark's version or,
    // if the compaction removed it, listed again after 410 Gone. Either way a change to one is seen.
    cp.kubectl(['label', 'node', 'node-1', 'topology.kubernetes.io/zone=after-compaction']);
    await until('the Node change', () => node1.state.node('node-1')?.locality.zone === 'after-compaction' && node2.state.node('node-1')?.locality.zone === 'after-compaction', 10_000);
    cp.kubectl(['label', 'node', 'node-1', 'topology.kubernetes.io/zone-']);
    await until('and its removal', () => node1.state.node('node-1')?.locality.zone === undefined, 10_000);
    t.pass('the Node watches serve changes after the compaction');
  });

  t.test('the CA in cluster mode: a real projected ServiceAccount token bound to a pod on node-1', async (t) => {
    cp.kubectl(['apply', '-f', '-'], `apiVersion: v1
kind: Pod
metadata: { name: ztunnel-n1, namespace: istio-system }
spec: { nodeName: node-1, hostNetwork: true, serviceAccountName: ztunnel, containers: [{ name: ztunnel, image: ${IMAGE} }] }
`);
    const token = (sa: string, ns: string, pod: string, audience: string): string =>
      cp.kubectl(['-n', ns, 'create', 'token', sa, `--audience=${audience}`, '--bound-object-kind=Pod', `--bound-object-name=${pod}`, '--duration=10m']).trim();
    const ca = await CertificateAuthority.create('cluster.local');
    const server = new CaServer({
      ca, state: node1.state, trustDomain: 'cluster.local', logger: pino({ level: 'silent' }), host: '127.224.0.1', port: 0, maxTtlMs: 3600_000,
      authenticate: tokenReviewAuthenticator(kubeTokenReviewApi(kubeApi(cp.kubeconfig)), ['istio-system/ztunnel']),
    });
    const addr = await server.start();
    t.teardown(() => server.close());
    const fetchWith = (tok: string, identity: string): Promise<unknown> => {
      const file = join(dir, `${Math.random()}.jwt`);
      writeFileSync(file, tok);
      return new RemoteCaSource({ url: `https://127.224.0.1:${addr.port}`, tokenFile: file, rootPem: ca.rootPem, ttlMs: 600_000 }).fetch(identity);
    };
    const daemonToken = token('ztunnel', 'istio-system', 'ztunnel-n1', 'istio-ca');
    t.match(await fetchWith(daemonToken, 'spiffe://cluster.local/ns/app/sa/client'), { identity: 'spiffe://cluster.local/ns/app/sa/client' }, 'a pod on the token pod’s node');
    await t.rejects(fetchWith(daemonToken, 'spiffe://cluster.local/ns/app/sa/echo'), { code: 'CA_FORBIDDEN' }, 'echo-a runs on node-2: refused');
    await t.rejects(fetchWith(token('ztunnel', 'istio-system', 'ztunnel-n1', 'kubernetes'), 'spiffe://cluster.local/ns/app/sa/client'), { code: 'CA_UNAUTHENTICATED' }, 'a token for another audience');
  });
});
