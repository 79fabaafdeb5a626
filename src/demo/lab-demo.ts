// `npm run demo`: the lab, for a person to read. Two nodes of network namespaces with one ztunnel-ts
// daemon each and eBPF capture; pods send ordinary TCP. Shows a request crossing nodes over HBONE with
// both SPIFFE identities in the daemons' logs, then flips the namespace label live, then tears down.
// `npm run demo -- --kube`: the same on a real control plane, the label flipped with kubectl.
// `npm run demo -- --dual-stack`: every pod also has an IPv6 address, and the request crosses nodes over IPv6 too.
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { labKubectl } from '../lab/kube-lab.js';
import { labStatus, labUp, type LabState } from '../lab/lab.js';
import { runLabDemo, say, show, sleep } from './demo-kit.js';
import { probeInPod as inPod, startProbeServers } from '../lab/probe-runner.js';

const KUBE = process.argv.includes('--kube');
const DUAL_STACK = process.argv.includes('--dual-stack');
const MANIFESTS = fileURLToPath(new URL(`../../../manifests/examples/${DUAL_STACK ? 'dual-stack' : 'demo'}/cluster.yaml`, import.meta.url));

function lastConnections(state: LabState, node: string, since: number): Record<string, unknown>[] {
  const log = state.nodes.find((n) => n.name === node)?.log ?? '';
  return readFileSync(log, 'utf8')
    .split('\n')
    .slice(since)
    .filter((l) => l.includes('"connection complete"'))
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

const lineCount = (state: LabState, node: string): number =>
  readFileSync(state.nodes.find((n) => n.name === node)?.log ?? '', 'utf8').split('\n').length - 1;

/** Sets the shop namespace's dataplane mode: in the manifests file the daemons watch, or with kubectl. */
function setMode(state: LabState, mode: 'ambient' | 'none'): void {
  if (state.kube !== undefined) {
    show(`kubectl label --overwrite namespace shop istio.io/dataplane-mode=${mode}`);
    labKubectl(state.kube, ['label', '--overwrite', 'namespace', 'shop', `istio.io/dataplane-mode=${mode}`]);
    return;
  }
  const text = readFileSync(state.manifests, 'utf8');
  writeFileSync(state.manifests, text.replace(/istio\.io\/dataplane-mode: (ambient|none)/, `istio.io/dataplane-mode: ${mode}`));
}

runLabDemo('lab demo', async () => {
  say(
    KUBE
      ? '1. A lab of two nodes on a real control plane (etcd, kube-apiserver, kube-controller-manager), a CA and one daemon per node, all in --kube mode'
      : '1. A lab of two nodes (network namespaces), a standalone CA, one ztunnel-ts daemon per node with eBPF capture',
  );
  const state = await labUp(MANIFESTS, { kube: KUBE, dualStack: DUAL_STACK });
  const s = labStatus();
  if (state.kube !== undefined) for (const line of labKubectl(state.kube, ['get', 'pods', '--all-namespaces', '-o', 'wide']).trimEnd().split('\n')) show(line);
  for (const n of s.nodes) show(`node ${n.name} ${n.ip} daemon pid ${n.pid} ${n.ready ? 'ready' : 'NOT READY'}`);
  for (const p of s.pods) show(`pod  ${p.namespace}/${p.name} ${p.ips.join(' ')} on ${p.node}`);
  startProbeServers(['shop/cart-local', 'shop/cart-remote', 'legacy/old-app']);
  await sleep(500);

  say('2. shop/client (node-1) opens a plain TCP connection to shop/cart-remote (node-2) port 9000');
  let mark1 = lineCount(state, 'node-1');
  let mark2 = lineCount(state, 'node-2');
  show(`reply: ${inPod('shop/client', 'whoami', '10.244.2.10', '9000')}   (seenAs = the client pod's own IP)`);
  await sleep(200);
  for (const [node, mark] of [['node-1', mark1], ['node-2', mark2]] as const) {
    for (const l of lastConnections(state, node, mark)) {
      show(`${node} ${String(l['direction'])}: ${String(l['src.identity'])} -> ${String(l['dst.identity'])} via ${String(l['dst.hbone_addr'])}`);
    }
  }

  if (DUAL_STACK) {
    say('2b. The same over IPv6, to cart-remote\'s fd00:10:244:2::10, and to the Service\'s IPv6 cluster IP');
    mark2 = lineCount(state, 'node-2');
    show(`reply: ${inPod('shop/client', 'whoami', 'fd00:10:244:2::10', '9000')}`);
    show(`reply: ${inPod('shop/client6', 'whoami', 'fd00:10:96::20', '90')}   (shop/client6 has an IPv6 address only)`);
    await sleep(200);
    for (const l of lastConnections(state, 'node-2', mark2)) show(`node-2 inbound: ${String(l['src.addr'])} ${String(l['src.identity'])} -> ${String(l['dst.hbone_addr'])}`);
  }

  say('3. The namespace label istio.io/dataplane-mode flips to "none", live: no restart of anything');
  setMode(state, 'none');
  await sleep(800);
  mark1 = lineCount(state, 'node-1');
  show(`reply: ${inPod('shop/client', 'whoami', '10.244.2.10', '9000')}`);
  await sleep(200);
  show(`node-1 daemon saw ${lastConnections(state, 'node-1', mark1).length} connection(s): the traffic went direct, outside the mesh`);

  say('4. And back to "ambient"');
  setMode(state, 'ambient');
  await sleep(800);
  mark1 = lineCount(state, 'node-1');
  show(`reply: ${inPod('shop/client', 'whoami', '10.244.2.10', '9000')}`);
  await sleep(200);
  show(`node-1 daemon saw ${lastConnections(state, 'node-1', mark1).length} connection(s): captured and tunnelled again`);
}, 5);
