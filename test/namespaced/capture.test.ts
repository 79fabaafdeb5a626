// End to end through the eBPF datapath: a two-node dual-stack lab of network namespaces, one daemon per
// node, ordinary TCP from pods. Every case runs over IPv4 and over IPv6; then the cases only dual stack
// has (an IPv6-only pod, an IPv6 CIDR in a policy, a node with IPv6 disabled). Needs root (CI is root);
// skipped with the reason otherwise.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { findPod, labDown, labNetns, labRestartNode, readLabState, type LabState } from '../../src/lab/lab.js';
import { probeInPod, spawnProbe, startProbeServers } from '../../src/lab/probe-runner.js';
import { exclusiveLab, labSkipReason, logLines as logFile, metricsIn, observeLab, waitFor } from '../helpers/lab-test.js';

const MANIFESTS = fileURLToPath(new URL('../../../manifests/examples/dual-stack/cluster.yaml', import.meta.url));

/** The lab's addresses in one family (the dual-stack lab gives pod 10.244.N.H also fd00:10:244:N::H). */
interface Family {
  readonly name: 'IPv4' | 'IPv6';
  readonly CLIENT: string;
  readonly CART_LOCAL: string;
  readonly CART_REMOTE: string;
  readonly OLD_APP: string;
  readonly VIP: string;
  /** How the address is written in a JSON log line or an access log's address field. */
  readonly hostPort: (ip: string, port: number) => string;
}
const IPV4: Family = { name: 'IPv4', CLIENT: '10.244.1.10', CART_LOCAL: '10.244.1.11', CART_REMOTE: '10.244.2.10', OLD_APP: '10.244.2.11', VIP: '10.96.0.20', hostPort: (ip, port) => `${ip}:${port}` };
const IPV6: Family = {
  name: 'IPv6', CLIENT: 'fd00:10:244:1::10', CART_LOCAL: 'fd00:10:244:1::11', CART_REMOTE: 'fd00:10:244:2::10', OLD_APP: 'fd00:10:244:2::11', VIP: 'fd00:10:96::20',
  hostPort: (ip, port) => `[${ip}]:${port}`,
};
const FAMILIES = [IPV4, IPV6] as const;
const escape = (text: string): string => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
/** An IPv6-only pod on node-1. */
const CLIENT6 = 'fd00:10:244:1::99';
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
  for (const [cmd, cmdArgs] of [['iptables-save', []], ['ip6tables-save', []], ['nft', ['list', 'ruleset']]] as const) {
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

/** A DENY of shop/client's identity to the cart pods (both of them, on both nodes). */
const denyClientToCart = (name: string): string => `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: ${name}, namespace: shop }
spec:
  action: DENY
  selector: { matchLabels: { app: cart } }
  rules:
  - from: [{ source: { principals: ["cluster.local/ns/shop/sa/client"] } }]
`;

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

// The other lab tests (faults, upgrades, workers, locality, waypoints) run IPv4 labs; this one needs IPv6.
const ipv6SkipReason = existsSync('/proc/sys/net/ipv6') ? undefined : 'the kernel has no IPv6 (no /proc/sys/net/ipv6): the dual-stack lab cannot be built';

t.test('eBPF capture in a two-node dual-stack lab', { skip: labSkipReason ?? ipv6SkipReason ?? false }, async (t) => {
  const state = await exclusiveLab(t, MANIFESTS, { dualStack: true });
  startProbeServers(['shop/cart-local', 'shop/cart-remote', 'legacy/old-app']);
  await waitFor('probe servers', () => FAMILIES.every((f) => [f.CART_LOCAL, f.CART_REMOTE, f.OLD_APP].every((ip) => probe('shop/client', 'whoami', ip, '9000', '2000').ok)), 15_000);

  for (const f of FAMILIES) {
    t.test(`${f.name}: cross-node captured TCP over HBONE: 64 MiB each way, SHA-256 equal, client IP seen`, async (t) => {
      const before = connections(state, 'node-2').length;
      const r = probe('shop/client', 'send', f.CART_REMOTE, '8080', String(64 * 1024 * 1024));
      // Once, in a full suite run with another file beside it, the IPv6 transfer ended in the probe's 15 s
      // idle timeout; it did not come back in 3 runs alone or beside other files. If it does: what both
      // daemons said about it.
      const trouble = (): string =>
        ['node-1', 'node-2']
          .flatMap((n) => logLines(state, n).filter((l) => Number(l['level']) >= 40 || l['msg'] === 'connection failed').slice(-5).map((l) => `${n}: ${JSON.stringify(l)}`))
          .join('\n');
      if (!t.match(r, { ok: true, received: 64 * 1024 * 1024 })) t.comment(`probe: ${JSON.stringify(r)}\n${trouble()}`);
      t.match(probe('shop/client', 'whoami', f.CART_REMOTE, '9000'), { ok: true, seenAs: f.CLIENT });
      const inbound = connections(state, 'node-2').slice(before).find((l) => l['direction'] === 'inbound');
      t.match(inbound, { 'src.identity': 'spiffe://cluster.local/ns/shop/sa/client', 'dst.identity': 'spiffe://cluster.local/ns/shop/sa/cart' }, 'went through node-2 daemon as HBONE');
      t.match(inbound, { 'dst.hbone_addr': f.hostPort(f.CART_REMOTE, 8080) }, 'addresses written as RFC 3986 host:port');
      t.ok(String(inbound?.['src.addr']).startsWith(f.hostPort(f.CLIENT, 0).slice(0, -1)), `source ${String(inbound?.['src.addr'])} is the client's ${f.name} address`);
    });
  }

  t.test('observe --lab follows both nodes; the eBPF counters are exported', async (t) => {
    const nodes = observeLab(t, 'shop');
    // Keep traffic going until both nodes' followers have reported (they subscribe at their own pace).
    await waitFor('flows from both nodes', () => {
      if (nodes.size < 2) probe('shop/client', 'whoami', IPV4.CART_REMOTE, '9000');
      return nodes.size === 2;
    }, 30_000);
    t.same([...nodes].sort(), ['node-1', 'node-2'], 'events from both nodes');
    const metrics = metricsIn('ztl-node-1');
    const assigned = /ztunnel_ebpf_capture_packets_total\{action="assigned_listener"\} (\d+)/.exec(metrics)?.[1];
    t.ok(Number(assigned) > 0, `capture_pod assigned ${assigned ?? '?'} new flows to listeners`);
  });

  for (const f of FAMILIES) {
    t.test(`${f.name}: same-node captured TCP: byte-exact, client IP seen`, async (t) => {
      t.match(probe('shop/client', 'send', f.CART_LOCAL, '8080', String(8 * 1024 * 1024)), { ok: true, received: 8 * 1024 * 1024 });
      t.match(probe('shop/client', 'whoami', f.CART_LOCAL, '9000'), { ok: true, seenAs: f.CLIENT });
    });

    t.test(`${f.name}: regression: a pod sending from another pod's IP is dropped before any redirection (anti-spoofing)`, async (t) => {
      const client = findPod('shop/client').netns;
      const inClient = (...args: string[]): ReturnType<typeof spawnSync> => spawnSync('nsenter', [`--net=/run/netns/${client}`, ...args], { encoding: 'utf8', timeout: 10_000 });
      // The client pod takes cart-local's address as a second one and connects from it.
      const prefix = f === IPV4 ? 32 : 128;
      inClient('ip', 'addr', 'add', `${f.CART_LOCAL}/${prefix}`, 'dev', 'eth0', ...(f === IPV6 ? ['nodad'] : []));
      t.teardown(() => void inClient('ip', 'addr', 'del', `${f.CART_LOCAL}/${prefix}`, 'dev', 'eth0'));
      const connectFrom = (source: string): string => {
        const script = `const s=require('net').connect({host:'${f.CART_REMOTE}',port:9000,localAddress:'${source}'});s.setTimeout(2000,()=>{console.log('timeout');process.exit(0)});s.on('data',(d)=>{console.log('answered '+d);process.exit(0)});s.on('error',(e)=>{console.log(e.code);process.exit(0)})`;
        return String(inClient(process.execPath, '-e', script).stdout).trim();
      };
      const dropped = (): number => Number(/ztunnel_ebpf_capture_packets_total\{action="dropped_spoofed"\} (\d+)/.exec(metricsIn('ztl-node-1'))?.[1] ?? NaN);
      const before = dropped();
      t.equal(connectFrom(f.CART_LOCAL), 'timeout', "from cart-local's address: nothing comes back");
      t.ok(dropped() > before, `the datapath counted the spoofed packets (${before} -> ${dropped()})`);
      t.match(connectFrom(f.CLIENT), new RegExp(`^answered .*"peer":"${escape(f.CLIENT)}"`), 'from its own address the same pod is answered');
    });

    t.test(`${f.name}: a service VIP spreads over endpoints on both nodes`, async (t) => {
      const answered = new Set<string>();
      for (let i = 0; i < 20; i++) {
        const r = probe('shop/client', 'whoami', f.VIP, '90');
        t.equal(r.seenAs, f.CLIENT);
        if (r.answeredBy !== undefined) answered.add(r.answeredBy);
      }
      t.same([...answered].sort(), [f.CART_LOCAL, f.CART_REMOTE], `the endpoints' ${f.name} addresses answer`);
    });

    t.test(`${f.name}: non-mesh pod to ambient pod goes through 15006 (plaintext inbound)`, async (t) => {
      const before = connections(state, 'node-2').length;
      t.match(probe('legacy/old-app', 'whoami', f.CART_REMOTE, '9000'), { ok: true, seenAs: f.OLD_APP });
      const line = connections(state, 'node-2').slice(before)[0];
      t.match(line, { direction: 'inbound', 'src.workload': 'old-app', 'dst.workload': 'cart-remote', 'dst.addr': f.hostPort(f.CART_REMOTE, 9000) });
      t.equal(line?.['src.identity'], undefined, 'no identity: plaintext');
    });

    t.test(`${f.name}: ambient pod to non-mesh pod goes as plain TCP with its source IP`, async (t) => {
      const before = connections(state, 'node-1').length;
      t.match(probe('shop/client', 'whoami', f.OLD_APP, '9000'), { ok: true, seenAs: f.CLIENT });
      const line = connections(state, 'node-1').slice(before)[0];
      t.match(line, { direction: 'outbound', 'dst.workload': 'old-app' });
      t.equal(line?.['dst.hbone_addr'], undefined, 'not HBONE');
    });

    t.test(`${f.name}: regression: a server that closes first, then a client reusing its port, is not held up by the daemon's TIME_WAIT`, async (t) => {
      // The daemon closes the pod-facing side first and keeps its TIME_WAIT; the client pod has none and may
      // reuse the port at once. Its SYN then goes to the kernel, which retires the TIME_WAIT socket and asks
      // the sk_lookup program for a listener (it used to wait for SYN retransmits, 1 s and 3 s, then fail).
      const handoffs = (): number => Number(/ztunnel_ebpf_capture_packets_total\{action="time_wait_handoff"\} (\d+)/.exec(metricsIn('ztl-node-1'))?.[1] ?? NaN);
      const before = handoffs();
      const retransmits = synRetransmits('shop/client');
      const port = f === IPV4 ? 45678 : 45680;
      t.match(probe('shop/client', 'reuse-port', f.CART_REMOTE, '9000', String(port), '5'), { ok: true }, 'five connections from one port, one after another');
      t.equal(synRetransmits('shop/client') - retransmits, 0, 'none had to retransmit its SYN');
      t.ok(handoffs() - before >= 4, `each reuse met the TIME_WAIT and was handed to the kernel (${handoffs() - before})`);
      t.match(probe('shop/client', 'reuse-port', f.CART_LOCAL, '9000', String(port + 1), '3'), { ok: true }, 'the same to a pod on this node');
    });
  }

  t.test('IPv6 only: a pod with no IPv4 address reaches the dual-stack Service over IPv6, pods on both nodes, with its own address', async (t) => {
    const answered = new Set<string>();
    for (let i = 0; i < 20; i++) {
      const r = probe('shop/client6', 'whoami', IPV6.VIP, '90');
      t.equal(r.seenAs, CLIENT6);
      if (r.answeredBy !== undefined) answered.add(r.answeredBy);
    }
    t.same([...answered].sort(), [IPV6.CART_LOCAL, IPV6.CART_REMOTE]);
    t.match(probe('shop/client6', 'send', IPV6.CART_REMOTE, '8080', String(4 * 1024 * 1024)), { ok: true, received: 4 * 1024 * 1024 });
  });

  t.test('an AuthorizationPolicy with an IPv6 CIDR allows the source it names and refuses the others', async (t) => {
    const original = readFileSync(state.manifests, 'utf8');
    t.teardown(() => writeFileSync(state.manifests, original));
    writeFileSync(
      state.manifests,
      `${original}---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: allow-client-v6, namespace: shop }
spec:
  selector: { matchLabels: { app: cart } }
  action: ALLOW
  rules:
  - from: [{ source: { ipBlocks: ["fd00:10:244:1::10/128"] } }]
`,
    );
    await waitFor('policy in force', () => !probe('shop/client6', 'whoami', IPV6.CART_REMOTE, '9000', '1500').ok, 10_000);
    t.match(probe('shop/client', 'whoami', IPV6.CART_REMOTE, '9000'), { ok: true, seenAs: IPV6.CLIENT }, 'the IPv6 source in the block is allowed');
    t.match(probe('shop/client6', 'whoami', IPV6.CART_REMOTE, '9000', '2000'), { ok: false }, 'another IPv6 source is refused');
    t.match(probe('shop/client', 'whoami', IPV4.CART_REMOTE, '9000', '2000'), { ok: false }, 'the same pod over IPv4 is not in an IPv6 block');
    const refused = connections(state, 'node-2').filter((l) => l['msg'] === 'connection failed' && String(l['src.addr']).startsWith(`[${CLIENT6}]:`));
    t.ok(refused.length > 0, 'node-2 logs the refusal of the IPv6-only pod, by its address');
    writeFileSync(state.manifests, original);
    await waitFor('policy removed', () => probe('shop/client6', 'whoami', IPV6.CART_REMOTE, '9000', '2000').ok, 10_000);
  });

  t.test('flipping the namespace label turns capture off and on for both families, without restarting pods', async (t) => {
    const original = readFileSync(state.manifests, 'utf8');
    // Leave daemon sockets in TIME_WAIT on every tuple the client pod will then use directly: a port range
    // of exactly 300 (for both families), whose ports the client may reuse after 1 s (tcp_tw_reuse).
    const clientSysctl = (...kv: string[]): void => void spawnSync('nsenter', [`--net=/run/netns/${findPod('shop/client').netns}`, 'sysctl', '-qw', ...kv]);
    clientSysctl('net.ipv4.ip_local_port_range=40000 40299', 'net.ipv4.tcp_tw_reuse=1');
    t.teardown(() => clientSysctl('net.ipv4.ip_local_port_range=32768 60999', 'net.ipv4.tcp_tw_reuse=2'));
    for (const f of FAMILIES) t.match(probe('shop/client', 'connrate', f.CART_REMOTE, '8080', '300', '4'), { ok: true, count: 300 }, `${f.name}: 300 connections through the daemon`);
    const flipped = original.replace('istio.io/dataplane-mode: ambient', 'istio.io/dataplane-mode: none');
    t.not(flipped, original);
    writeFileSync(state.manifests, flipped);
    await new Promise((r) => setTimeout(r, 1500));
    await waitFor('capture off', () => logLines(state, 'node-1').filter((l) => l['msg'] === 'captured workloads updated').at(-1)?.['captured']?.toString() === '');
    for (const f of FAMILIES) {
      // The daemon counts a connection as opened before any byte flows, so this read after the reply is final.
      const before = openedBy('node-1');
      t.match(probe('shop/client', 'whoami', f.CART_REMOTE, '9000'), { ok: true, seenAs: f.CLIENT });
      t.equal(openedBy('node-1'), before, `${f.name}: no longer through the daemon`);
      // Regression: the daemon's TIME_WAIT sockets used to take the direct flows' SYN-ACKs, so the client
      // had to retransmit its SYN. Counted by the kernel, so this is no timing check.
      const retransmitsBefore = synRetransmits('shop/client');
      const direct = probe('shop/client', 'connrate', f.CART_REMOTE, '8080', '300', '4') as ProbeResult & { count?: number };
      t.equal(direct.count, 300);
      t.equal(synRetransmits('shop/client') - retransmitsBefore, 0, `${f.name}: no direct connection had to retransmit its SYN`);
    }
    writeFileSync(state.manifests, original);
    await waitFor('capture on', () => {
      const captured = String(logLines(state, 'node-1').filter((l) => l['msg'] === 'captured workloads updated').at(-1)?.['captured'] ?? '').split(',');
      return captured.includes(IPV4.CLIENT) && captured.includes(IPV6.CLIENT);
    });
    for (const f of FAMILIES) {
      const before = openedBy('node-1');
      t.match(probe('shop/client', 'whoami', f.CART_REMOTE, '9000'), { ok: true, seenAs: f.CLIENT });
      t.equal(openedBy('node-1'), before + 1, `${f.name}: through the daemon again`);
    }
  });

  t.test('a DENY policy applied to the running lab closes open connections of both families and blocks new ones; removing it restores', async (t) => {
    const original = readFileSync(state.manifests, 'utf8');
    const holds = FAMILIES.map((f) => {
      const hold = spawnProbe('shop/client', 'hold', f.CART_REMOTE, '8080', '20');
      const h = { f, out: '', exited: new Promise<void>((r) => hold.once('exit', () => r())) };
      hold.stdout?.on('data', (c: Buffer) => (h.out += String(c)));
      return h;
    });
    await waitFor('held connections', () => holds.every((h) => h.out.includes('connected')));
    await new Promise((r) => setTimeout(r, 300));
    writeFileSync(state.manifests, `${original}---\n${denyClientToCart('deny-client')}`);
    for (const h of holds) {
      await h.exited;
      const ended = JSON.parse(h.out.trim().split('\n').at(-1) ?? '{}') as { ended?: string; pongs?: number };
      t.not(ended.ended, 'still open', `${h.f.name}: the open connection was closed (${ended.ended ?? '?'})`);
      t.ok((ended.pongs ?? 0) > 0, `${h.f.name}: it carried traffic before`);
      t.match(probe('shop/client', 'whoami', h.f.CART_REMOTE, '9000', '3000'), { ok: false }, `${h.f.name}: a new connection is refused`);
    }
    t.ok(logLines(state, 'node-2').some((l) => l['policy'] === 'shop/deny-client'), 'node-2 names the deciding policy');
    writeFileSync(state.manifests, original);
    for (const f of FAMILIES) await waitFor(`${f.name}: policy removed`, () => probe('shop/client', 'whoami', f.CART_REMOTE, '9000', '2000').ok, 10_000);
    t.pass('removing the policy restores access');
  });

  t.test('a same-node stream past 256 KiB is carried by the kernel: byte-exact, counted, and a DENY still closes it', async (t) => {
    const splicedOnNode1 = (): number => {
      const dump = spawnSync('nsenter', ['--net=/run/netns/ztl-node-1', process.execPath, '-e', "fetch('http://127.0.0.1:15000/config_dump').then(r=>r.text()).then(t=>process.stdout.write(t))"], { encoding: 'utf8' }).stdout;
      return (JSON.parse(dump) as { limits?: { splicedConnections?: number | null } }).limits?.splicedConnections ?? -1;
    };
    // 3 MiB paced at 1 MiB/s, echoed: open for 3 s, spliced after its first 256 KiB.
    const paced = (): { out: () => string; exited: Promise<void> } => {
      const p = spawnProbe('shop/client', 'send', IPV4.CART_LOCAL, '8080', String(3 << 20), String(1 << 20));
      let out = '';
      p.stdout?.on('data', (c: Buffer) => (out += String(c)));
      return { out: () => out, exited: new Promise((r) => p.once('exit', () => r())) };
    };
    const mark = logLines(state, 'node-1').length;
    const ok = paced();
    await waitFor('the stream spliced', () => splicedOnNode1() >= 1, 3000);
    await ok.exited;
    t.match(JSON.parse(ok.out().trim() || '{}'), { ok: true, received: 3 << 20 }, 'echoed back exactly (SHA-256 equal)');
    const line = logLines(state, 'node-1')
      .slice(mark)
      .find((l) => l['msg'] === 'connection complete' && l['dst.addr'] === `${IPV4.CART_LOCAL}:8080` && l['direction'] === 'outbound');
    t.match(line, { bytes_sent: 3 << 20, bytes_recv: 3 << 20 }, 'the access log counts every byte, the daemon\'s and the kernel\'s');
    t.equal(splicedOnNode1(), 0, 'and it left the splice when it ended');

    const original = readFileSync(state.manifests, 'utf8');
    const denied = paced();
    await waitFor('the second stream spliced', () => splicedOnNode1() >= 1, 3000);
    writeFileSync(state.manifests, `${original}---\n${denyClientToCart('deny-client-spliced')}`);
    await denied.exited;
    t.match(JSON.parse(denied.out().trim() || '{}'), { ok: false }, 'the DENY closed the spliced connection before its end');
    t.equal(splicedOnNode1(), 0, 'nothing left spliced');
    writeFileSync(state.manifests, original);
    await waitFor('policy removed', () => probe('shop/client', 'whoami', IPV4.CART_LOCAL, '9000', '2000').ok, 10_000);
  });

  t.test('lab status --json describes nodes and pods, with every address', async (t) => {
    const r = spawnSync(process.execPath, [CLI, 'lab', 'status', '--json'], { encoding: 'utf8' });
    const status = JSON.parse(r.stdout) as { nodes: Record<string, unknown>[]; pods: Record<string, unknown>[] };
    t.match(status.nodes, [
      { name: 'node-1', netns: 'ztl-node-1', ip: '172.18.0.11', pid: Number, ready: true },
      { name: 'node-2', netns: 'ztl-node-2', ip: '172.18.0.12', pid: Number, ready: true },
    ]);
    t.match(status.pods.find((p) => p['name'] === 'client'), { namespace: 'shop', node: 'node-1', ip: IPV4.CLIENT, ips: [IPV4.CLIENT, IPV6.CLIENT], netns: String });
    t.match(status.pods.find((p) => p['name'] === 'client6'), { ip: CLIENT6, ips: [CLIENT6] });
  });

  t.test('a clean stop removes its tc hooks and ip rules (both families); a restart puts them back', async (t) => {
    const node2 = readLabState()?.nodes.find((n) => n.name === 'node-2');
    const ns = (cmd: string, ...args: string[]): string => spawnSync('nsenter', [`--net=/run/netns/ztl-node-2`, cmd, ...args], { encoding: 'utf8' }).stdout;
    t.match(ns('tc', 'filter', 'show', 'dev', 'eth0', 'ingress'), /capture_uplink/, 'hooked while running');
    t.match(ns('ip', '-6', 'rule', 'show'), /fwmark/, 'an IPv6 fwmark rule while running');
    const sysctl = (key: string): string => ns('sysctl', '-n', key).trim();
    t.same([sysctl('net.ipv4.tcp_early_demux'), sysctl('net.ipv4.tcp_tw_reuse')], ['0', '1'], 'early demux off and TIME_WAIT reuse on while running');
    await stopDaemon(node2?.pid, 'SIGTERM');
    t.equal(ns('tc', 'filter', 'show', 'dev', 'eth0', 'ingress').trim(), '', 'no filter left on the uplink');
    t.notMatch(ns('ip', '-4', 'rule', 'show'), /fwmark/, 'no IPv4 fwmark rule left');
    t.notMatch(ns('ip', '-6', 'rule', 'show'), /fwmark/, 'no IPv6 fwmark rule left');
    t.same([sysctl('net.ipv4.tcp_early_demux'), sysctl('net.ipv4.tcp_tw_reuse')], ['1', '2'], 'both sysctls restored to the namespace defaults');
    await labRestartNode('node-2');
    for (const f of FAMILIES) t.match(probe('shop/client', 'whoami', f.CART_REMOTE, '9000'), { ok: true, seenAs: f.CLIENT });
  });

  t.test('a killed daemon fails closed for both families; a restarted one works again', async (t) => {
    const node1 = readLabState()?.nodes.find((n) => n.name === 'node-1');
    await stopDaemon(node1?.pid, 'SIGKILL');
    for (const f of FAMILIES) t.match(probe('shop/client', 'whoami', f.CART_REMOTE, '9000', '2000'), { ok: false, error: 'timeout' }, `${f.name}: no bypass while the daemon is down`);
    await labRestartNode('node-1');
    for (const f of FAMILIES) t.match(probe('shop/client', 'whoami', f.CART_REMOTE, '9000'), { ok: true, seenAs: f.CLIENT });
  });

  t.test('regression: a node with IPv6 disabled starts, becomes ready and serves IPv4 (and leaves no IPv6 rule)', async (t) => {
    // ztunnel once stayed unready where [::1] could not be bound.
    const node2 = readLabState()?.nodes.find((n) => n.name === 'node-2');
    const ns = (cmd: string, ...args: string[]): string => spawnSync('nsenter', [`--net=/run/netns/ztl-node-2`, cmd, ...args], { encoding: 'utf8' }).stdout;
    await stopDaemon(node2?.pid, 'SIGTERM');
    ns('sysctl', '-qw', 'net.ipv6.conf.all.disable_ipv6=1', 'net.ipv6.conf.default.disable_ipv6=1', 'net.ipv6.conf.lo.disable_ipv6=1', 'net.ipv6.conf.eth0.disable_ipv6=1');
    await labRestartNode('node-2');
    const dump = JSON.parse(spawnSync('nsenter', ['--net=/run/netns/ztl-node-2', process.execPath, '-e', "fetch('http://127.0.0.1:15000/config_dump').then(r=>r.text()).then(t=>process.stdout.write(t))"], { encoding: 'utf8' }).stdout) as { ipv6?: string };
    t.match(dump.ipv6, /^not captured: /, `config_dump says why IPv6 is not captured (${dump.ipv6 ?? '?'})`);
    t.notMatch(ns('ip', '-6', 'rule', 'show'), /fwmark/, 'no half-made IPv6 rule');
    t.match(probe('shop/client', 'whoami', IPV4.CART_REMOTE, '9000'), { ok: true, seenAs: IPV4.CLIENT }, 'IPv4 across nodes still works');
    t.match(probe('legacy/old-app', 'whoami', IPV4.CART_REMOTE, '9000'), { ok: true, seenAs: IPV4.OLD_APP }, 'and plaintext inbound on that node');
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
