// `npm run demo`: the lab, for a person to read. Two nodes of network namespaces with one ztunnel-ts
// daemon each and eBPF capture; pods send ordinary TCP. Shows a request crossing nodes over HBONE with
// both SPIFFE identities in the daemons' logs, then flips the namespace label live, then tears down.
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { labStatus, labUp, type LabState } from '../lab/lab.js';
import { runLabDemo, say, show, sleep } from './demo-kit.js';
import { probeInPod as inPod, startProbeServers } from '../lab/probe-runner.js';

const MANIFESTS = fileURLToPath(new URL('../../../manifests/examples/demo/cluster.yaml', import.meta.url));

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

runLabDemo('lab demo', async () => {
  say('1. A lab of two nodes (network namespaces), a standalone CA, one ztunnel-ts daemon per node with eBPF capture');
  const state = await labUp(MANIFESTS);
  const s = labStatus();
  for (const n of s.nodes) show(`node ${n.name} ${n.ip} daemon pid ${n.pid} ${n.ready ? 'ready' : 'NOT READY'}`);
  for (const p of s.pods) show(`pod  ${p.namespace}/${p.name} ${p.ip} on ${p.node}`);
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

  say('3. The namespace label istio.io/dataplane-mode flips to "none", live: no restart of anything');
  const original = readFileSync(state.manifests, 'utf8');
  writeFileSync(state.manifests, original.replace('istio.io/dataplane-mode: ambient', 'istio.io/dataplane-mode: none'));
  await sleep(800);
  mark1 = lineCount(state, 'node-1');
  show(`reply: ${inPod('shop/client', 'whoami', '10.244.2.10', '9000')}`);
  await sleep(200);
  show(`node-1 daemon saw ${lastConnections(state, 'node-1', mark1).length} connection(s): the traffic went direct, outside the mesh`);

  say('4. And back to "ambient"');
  writeFileSync(state.manifests, original);
  await sleep(800);
  mark1 = lineCount(state, 'node-1');
  show(`reply: ${inPod('shop/client', 'whoami', '10.244.2.10', '9000')}`);
  await sleep(200);
  show(`node-1 daemon saw ${lastConnections(state, 'node-1', mark1).length} connection(s): captured and tunnelled again`);
}, 5);
