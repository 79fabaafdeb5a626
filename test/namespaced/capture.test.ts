// End to end through the eBPF datapath: a two-node lab of network namespaces, one daemon per node,
// ordinary TCP from pods. Needs root (CI is root); skipped with the reason otherwise.
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { findPod, labDown, labNetns, labRestartNode, readLabState, type LabState } from '../../src/lab/lab.js';
import { probeInPod, spawnProbe, startProbeServers } from '../../src/lab/probe-runner.js';
import { exclusiveLab, labSkipReason, logLines as logFile, metricsIn, observeLab, waitFor } from '../helpers/lab-test.js';

const MANIFESTS = fileURLToPath(new URL('../../../manifests/examples/demo/cluster.yaml', import.meta.url));
const CLIENT = '10.244.1.10';
const CART_LOCAL = '10.244.1.11';
const CART_REMOTE = '10.244.2.10';
const OLD_APP = '10.244.2.11';
const VIP = '10.96.0.20';
const CLI = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));


interface ProbeResult {
  ok: boolean;
  error?: string;
  seenAs?: string;
  answeredBy?: string;
  received?: number;
  sent?: number;
}

function probe(pod: string, ...args: string[]): ProbeResult {
  const line = probeInPod(pod, ...args);
  try {
    return JSON.parse(line) as ProbeResult;
  } catch {
    return { ok: false, error: `probe printed ${JSON.stringify(line)}` };
  }
}

const logLines = (state: LabState, node: string): Record<string, unknown>[] => logFile(state.nodes.find((x) => x.name === node)?.log ?? '');

const connections = (state: LabState, node: string): Record<string, unknown>[] =>
  logLines(state, node).filter((l) => l['msg'] === 'connection complete' || l['msg'] === 'connection failed');

/** Signals a lab daemon and waits until its process is gone. */
async function stopDaemon(pid: number | undefined, signal: NodeJS.Signals): Promise<void> {
  if (pid === undefined) throw new Error('no daemon pid');
  process.kill(pid, signal);
  await waitFor(`daemon ${pid} gone`, () => {
    try {
      process.kill(pid, 0);
      return false;
    } catch {
      return true;
    }
  });
}

/** Lines of the iptables and nft rulesets (in a namespace, or the host's) that mention the daemon's ports. */
function ourRules(netns: string | undefined): string {
  const out: string[] = [];
  for (const [cmd, cmdArgs] of [['iptables-save', []], ['nft', ['list', 'ruleset']]] as const) {
    const r = spawnSync(netns === undefined ? cmd : 'nsenter', netns === undefined ? [...cmdArgs] : [`--net=/run/netns/${netns}`, cmd, ...cmdArgs], { encoding: 'utf8' });
    // A tool that is missing or fails must fail the check, not make it compare nothing with nothing.
    if (r.status !== 0) throw new Error(`${cmd} did not answer in ${netns ?? 'the host namespace'}: ${r.error?.message ?? r.stderr}`);
    out.push(r.stdout);
  }
  return out.join('\n').split('\n').filter((l) => /1500[168]|ztunnel/i.test(l)).join('\n');
}

/** Connections node's daemon has opened as the source side (its counter, not its end-of-connection log). */
function openedBy(node: string): number {
  return [...metricsIn(`ztl-${node}`).matchAll(/^istio_tcp_connections_opened_total\{[^}]*reporter="source"[^}]*\} (\d+)/gm)].reduce((n, m) => n + Number(m[1]), 0);
}

/** The kernel's count of retransmitted SYNs in a pod's network namespace. */
function synRetransmits(pod: string): number {
  const r = spawnSync('nsenter', [`--net=/run/netns/${findPod(pod).netns}`, 'cat', '/proc/net/netstat'], { encoding: 'utf8' });
  const lines = r.stdout.split('\n').filter((l) => l.startsWith('TcpExt:'));
  const names = lines[0]?.split(/\s+/) ?? [];
  const values = lines[1]?.split(/\s+/) ?? [];
  const i = names.indexOf('TCPSynRetrans');
  if (i < 0) throw new Error(`no TCPSynRetrans counter in ${pod}'s /proc/net/netstat`);
  return Number(values[i]);
}

t.test('eBPF capture in a two-node lab', { skip: labSkipReason ?? false }, async (t) => {
  const state = await exclusiveLab(t, MANIFESTS);
  startProbeServers(['shop/cart-local', 'shop/cart-remote', 'legacy/old-app']);
  await waitFor('probe servers', () => [CART_LOCAL, CART_REMOTE, OLD_APP].every((ip) => probe('shop/client', 'whoami', ip, '9000', '2000').ok), 15_000);

  t.test('cross-node captured TCP over HBONE: 64 MiB each way, SHA-256 equal, client IP seen', async (t) => {
    const before = connections(state, 'node-2').length;
    const r = probe('shop/client', 'send', CART_REMOTE, '8080', String(64 * 1024 * 1024));
    t.match(r, { ok: true, received: 64 * 1024 * 1024 });
    t.match(probe('shop/client', 'whoami', CART_REMOTE, '9000'), { ok: true, seenAs: CLIENT });
    const inbound = connections(state, 'node-2').slice(before).find((l) => l['direction'] === 'inbound');
    t.match(inbound, { 'src.identity': 'spiffe://cluster.local/ns/shop/sa/client', 'dst.identity': 'spiffe://cluster.local/ns/shop/sa/cart' }, 'went through node-2 daemon as HBONE');
  });

  t.test('observe --lab follows both nodes; the eBPF counters are exported', async (t) => {
    const nodes = observeLab(t, 'shop');
    // Keep traffic going until both nodes' followers have reported (they subscribe at their own pace).
    await waitFor('flows from both nodes', () => {
      if (nodes.size < 2) probe('shop/client', 'whoami', CART_REMOTE, '9000');
      return nodes.size === 2;
    }, 30_000);
    t.same([...nodes].sort(), ['node-1', 'node-2'], 'events from both nodes');
    const metrics = metricsIn('ztl-node-1');
    const assigned = /ztunnel_ebpf_capture_packets_total\{action="assigned_listener"\} (\d+)/.exec(metrics)?.[1];
    t.ok(Number(assigned) > 0, `capture_pod assigned ${assigned ?? '?'} new flows to listeners`);
  });

  t.test('same-node captured TCP: byte-exact, client IP seen', async (t) => {
    t.match(probe('shop/client', 'send', CART_LOCAL, '8080', String(8 * 1024 * 1024)), { ok: true, received: 8 * 1024 * 1024 });
    t.match(probe('shop/client', 'whoami', CART_LOCAL, '9000'), { ok: true, seenAs: CLIENT });
  });

  t.test('regression: a pod sending from another pod\'s IP is dropped before any redirection (anti-spoofing)', async (t) => {
    const client = findPod('shop/client').netns;
    const inClient = (...args: string[]): ReturnType<typeof spawnSync> => spawnSync('nsenter', [`--net=/run/netns/${client}`, ...args], { encoding: 'utf8', timeout: 10_000 });
    // The client pod takes cart-local's address as a second one and connects from it.
    inClient('ip', 'addr', 'add', `${CART_LOCAL}/32`, 'dev', 'eth0');
    t.teardown(() => void inClient('ip', 'addr', 'del', `${CART_LOCAL}/32`, 'dev', 'eth0'));
    const connectFrom = (source: string): string => {
      const script = `const s=require('net').connect({host:'${CART_REMOTE}',port:9000,localAddress:'${source}'});s.setTimeout(2000,()=>{console.log('timeout');process.exit(0)});s.on('data',(d)=>{console.log('answered '+d);process.exit(0)});s.on('error',(e)=>{console.log(e.code);process.exit(0)})`;
      return String(inClient(process.execPath, '-e', script).stdout).trim();
    };
    const dropped = (): number => Number(/ztunnel_ebpf_capture_packets_total\{action="dropped_spoofed"\} (\d+)/.exec(metricsIn('ztl-node-1'))?.[1] ?? NaN);
    const before = dropped();
    t.equal(connectFrom(CART_LOCAL), 'timeout', "from cart-local's address: nothing comes back");
    t.ok(dropped() > before, `the datapath counted the spoofed packets (${before} -> ${dropped()})`);
    t.match(connectFrom(CLIENT), /^answered .*"peer":"10\.244\.1\.10"/, 'from its own address the same pod is answered');
  });

  t.test('a service VIP spreads over endpoints on both nodes', async (t) => {
    const answered = new Set<string>();
    for (let i = 0; i < 20; i++) {
      const r = probe('shop/client', 'whoami', VIP, '90');
      t.equal(r.seenAs, CLIENT);
      if (r.answeredBy !== undefined) answered.add(r.answeredBy);
    }
    t.same([...answered].sort(), [CART_LOCAL, CART_REMOTE]);
  });

  t.test('non-mesh pod to ambient pod goes through 15006 (plaintext inbound)', async (t) => {
    const before = connections(state, 'node-2').length;
    t.match(probe('legacy/old-app', 'whoami', CART_REMOTE, '9000'), { ok: true, seenAs: OLD_APP });
    const line = connections(state, 'node-2').slice(before)[0];
    t.match(line, { direction: 'inbound', 'src.workload': 'old-app', 'dst.workload': 'cart-remote' });
    t.equal(line?.['src.identity'], undefined, 'no identity: plaintext');
  });

  t.test('ambient pod to non-mesh pod goes as plain TCP with its source IP', async (t) => {
    const before = connections(state, 'node-1').length;
    t.match(probe('shop/client', 'whoami', OLD_APP, '9000'), { ok: true, seenAs: CLIENT });
    const line = connections(state, 'node-1').slice(before)[0];
    t.match(line, { direction: 'outbound', 'dst.workload': 'old-app' });
    t.equal(line?.['dst.hbone_addr'], undefined, 'not HBONE');
  });

  t.test('regression: a server that closes first, then a client reusing its port, is not held up by the daemon\'s TIME_WAIT', async (t) => {
    // The daemon closes the pod-facing side first and keeps its TIME_WAIT; the client pod has none and may
    // reuse the port at once. Its SYN then goes to the kernel, which retires the TIME_WAIT socket and asks
    // the sk_lookup program for a listener (it used to wait for SYN retransmits, 1 s and 3 s, then fail).
    const handoffs = (): number => Number(/ztunnel_ebpf_capture_packets_total\{action="time_wait_handoff"\} (\d+)/.exec(metricsIn('ztl-node-1'))?.[1] ?? NaN);
    const before = handoffs();
    const retransmits = synRetransmits('shop/client');
    t.match(probe('shop/client', 'reuse-port', CART_REMOTE, '9000', '45678', '5'), { ok: true }, 'five connections from one port, one after another');
    t.equal(synRetransmits('shop/client') - retransmits, 0, 'none had to retransmit its SYN');
    t.ok(handoffs() - before >= 4, `each reuse met the TIME_WAIT and was handed to the kernel (${handoffs() - before})`);
    t.match(probe('shop/client', 'reuse-port', CART_LOCAL, '9000', '45679', '3'), { ok: true }, 'the same to a pod on this node');
  });

  t.test('flipping the namespace label turns capture off and on, without restarting pods', async (t) => {
    const original = readFileSync(state.manifests, 'utf8');
    // Leave daemon sockets in TIME_WAIT on every tuple the client pod will then use directly: a port range
    // of exactly 300, whose ports the client may reuse after 1 s (tcp_tw_reuse).
    const clientSysctl = (...kv: string[]): void => void spawnSync('nsenter', [`--net=/run/netns/${findPod('shop/client').netns}`, 'sysctl', '-qw', ...kv]);
    clientSysctl('net.ipv4.ip_local_port_range=40000 40299', 'net.ipv4.tcp_tw_reuse=1');
    t.teardown(() => clientSysctl('net.ipv4.ip_local_port_range=32768 60999', 'net.ipv4.tcp_tw_reuse=2'));
    t.match(probe('shop/client', 'connrate', CART_REMOTE, '8080', '300', '4'), { ok: true, count: 300 });
    const flipped = original.replace('istio.io/dataplane-mode: ambient', 'istio.io/dataplane-mode: none');
    t.not(flipped, original);
    writeFileSync(state.manifests, flipped);
    await new Promise((r) => setTimeout(r, 1500));
    await waitFor('capture off', () => logLines(state, 'node-1').filter((l) => l['msg'] === 'captured workloads updated').at(-1)?.['captured']?.toString() === '');
    // The daemon counts a connection as opened before any byte flows, so this read after the reply is final.
    let before = openedBy('node-1');
    t.match(probe('shop/client', 'whoami', CART_REMOTE, '9000'), { ok: true, seenAs: CLIENT });
    t.equal(openedBy('node-1'), before, 'no longer through the daemon');
    // Regression: the daemon's TIME_WAIT sockets used to take the direct flows' SYN-ACKs, so the client
    // had to retransmit its SYN. Counted by the kernel, so this is no timing check.
    const retransmitsBefore = synRetransmits('shop/client');
    const direct = probe('shop/client', 'connrate', CART_REMOTE, '8080', '300', '4') as ProbeResult & { count?: number };
    t.equal(direct.count, 300);
    t.equal(synRetransmits('shop/client') - retransmitsBefore, 0, 'no direct connection had to retransmit its SYN');
    writeFileSync(state.manifests, original);
    await waitFor('capture on', () => String(logLines(state, 'node-1').filter((l) => l['msg'] === 'captured workloads updated').at(-1)?.['captured'] ?? '').includes(CLIENT));
    before = openedBy('node-1');
    t.match(probe('shop/client', 'whoami', CART_REMOTE, '9000'), { ok: true, seenAs: CLIENT });
    t.equal(openedBy('node-1'), before + 1, 'through the daemon again');
  });

  t.test('a DENY policy applied to the running lab closes an open connection and blocks new ones; removing it restores', async (t) => {
    const original = readFileSync(state.manifests, 'utf8');
    const hold = spawnProbe('shop/client', 'hold', CART_REMOTE, '8080', '20');
    let out = '';
    hold.stdout?.on('data', (c: Buffer) => (out += String(c)));
    await waitFor('held connection', () => out.includes('connected'));
    await new Promise((r) => setTimeout(r, 300));
    writeFileSync(
      state.manifests,
      `${original}---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: deny-client, namespace: shop }
spec:
  action: DENY
  selector: { matchLabels: { app: cart } }
  rules:
  - from: [{ source: { principals: ["cluster.local/ns/shop/sa/client"] } }]
`,
    );
    await new Promise<void>((r) => hold.once('exit', () => r()));
    const ended = JSON.parse(out.trim().split('\n').at(-1) ?? '{}') as { ended?: string; pongs?: number };
    t.not(ended.ended, 'still open', `the open connection was closed (${ended.ended ?? '?'})`);
    t.ok((ended.pongs ?? 0) > 0, 'it carried traffic before');
    t.match(probe('shop/client', 'whoami', CART_REMOTE, '9000', '3000'), { ok: false }, 'a new connection is refused');
    t.ok(logLines(state, 'node-2').some((l) => l['policy'] === 'shop/deny-client'), 'node-2 names the deciding policy');
    writeFileSync(state.manifests, original);
    await waitFor('policy removed', () => probe('shop/client', 'whoami', CART_REMOTE, '9000', '2000').ok, 10_000);
    t.pass('removing the policy restores access');
  });

  t.test('lab status --json describes nodes and pods', async (t) => {
    const r = spawnSync(process.execPath, [CLI, 'lab', 'status', '--json'], { encoding: 'utf8' });
    const status = JSON.parse(r.stdout) as { nodes: Record<string, unknown>[]; pods: Record<string, unknown>[] };
    t.match(status.nodes, [
      { name: 'node-1', netns: 'ztl-node-1', ip: '172.18.0.11', pid: Number, ready: true },
      { name: 'node-2', netns: 'ztl-node-2', ip: '172.18.0.12', pid: Number, ready: true },
    ]);
    t.match(status.pods.find((p) => p['name'] === 'client'), { namespace: 'shop', node: 'node-1', ip: CLIENT, netns: String });
  });

  t.test('a clean stop removes its tc hooks and ip rule; a restart puts them back', async (t) => {
    const node2 = readLabState()?.nodes.find((n) => n.name === 'node-2');
    const ns = (cmd: string, ...args: string[]): string => spawnSync('nsenter', [`--net=/run/netns/ztl-node-2`, cmd, ...args], { encoding: 'utf8' }).stdout;
    t.match(ns('tc', 'filter', 'show', 'dev', 'eth0', 'ingress'), /capture_uplink/, 'hooked while running');
    const sysctl = (key: string): string => ns('sysctl', '-n', key).trim();
    t.same([sysctl('net.ipv4.tcp_early_demux'), sysctl('net.ipv4.tcp_tw_reuse')], ['0', '1'], 'early demux off and TIME_WAIT reuse on while running');
    await stopDaemon(node2?.pid, 'SIGTERM');
    t.equal(ns('tc', 'filter', 'show', 'dev', 'eth0', 'ingress').trim(), '', 'no filter left on the uplink');
    t.notMatch(ns('ip', 'rule', 'show'), /fwmark/, 'no fwmark rule left');
    t.same([sysctl('net.ipv4.tcp_early_demux'), sysctl('net.ipv4.tcp_tw_reuse')], ['1', '2'], 'both sysctls restored to the namespace defaults');
    await labRestartNode('node-2');
    t.match(probe('shop/client', 'whoami', CART_REMOTE, '9000'), { ok: true, seenAs: CLIENT });
  });

  t.test('a killed daemon fails closed; a restarted one works again', async (t) => {
    const node1 = readLabState()?.nodes.find((n) => n.name === 'node-1');
    await stopDaemon(node1?.pid, 'SIGKILL');
    t.match(probe('shop/client', 'whoami', CART_REMOTE, '9000', '2000'), { ok: false, error: 'timeout' }, 'no bypass while the daemon is down');
    await labRestartNode('node-1');
    t.match(probe('shop/client', 'whoami', CART_REMOTE, '9000'), { ok: true, seenAs: CLIENT });
  });

  t.test('no iptables or nft rule of ours exists', async (t) => {
    for (const ns of [undefined, ...labNetns()]) t.equal(ourRules(ns), '', `rules in ${ns ?? 'the host namespace'}`);
  });

  t.test('lab down removes namespaces, hooks, rules and processes', async (t) => {
    const pids = (readLabState()?.nodes ?? []).map((n) => n.pid);
    await labDown();
    await labDown(); // idempotent
    t.same(labNetns(), []);
    t.equal(readLabState(), undefined);
    for (const pid of pids) t.throws(() => process.kill(pid, 0), `daemon ${pid} is gone`);
  });
});
