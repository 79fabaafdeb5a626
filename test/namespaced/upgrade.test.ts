// Upgrading a node's daemon under load, in the two-node lab: the new daemon joins the reuseport listener
// groups, swaps its program onto the hooks and tells the old one to drain. No new connection may be
// refused or reset (none even needs a SYN retransmit), long connections and a slow transfer survive
// byte-exact until the drain deadline, and once the old daemon has gone the hooks, the ip rule and the
// sysctls are still in place. Needs root; skipped otherwise.
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { findPod, labDown, labUpgradeNode, readLabState } from '../../src/lab/lab.js';
import { spawnProbe, startProbeServers } from '../../src/lab/probe-runner.js';
import { NODE_CONFIG_DIR } from '../../src/datapath/node-config.js';
import { exclusiveLab, labSkipReason, logLines } from '../helpers/lab-test.js';

const MANIFESTS = fileURLToPath(new URL('../../../manifests/examples/demo/cluster.yaml', import.meta.url));
const CART_LOCAL = '10.244.1.11';
const CART_REMOTE = '10.244.2.10';

/** The kernel's count of retransmitted SYNs in a pod's network namespace. */
function synRetransmits(pod: string): number {
  const r = spawnSync('nsenter', [`--net=/run/netns/${findPod(pod).netns}`, 'cat', '/proc/net/netstat'], { encoding: 'utf8' });
  const lines = r.stdout.split('\n').filter((l) => l.startsWith('TcpExt:'));
  const i = (lines[0]?.split(/\s+/) ?? []).indexOf('TCPSynRetrans');
  if (i < 0) throw new Error('no TCPSynRetrans counter');
  return Number(lines[1]?.split(/\s+/)[i]);
}

function inNode(node: string, cmd: string, args: string[]): string {
  return spawnSync('nsenter', [`--net=/run/netns/ztl-${node}`, cmd, ...args], { encoding: 'utf8' }).stdout;
}

/** A probe running in the client pod; resolves with its last JSON line. */
function running(...args: string[]): { started: Promise<void>; result: Promise<Record<string, unknown>> } {
  const p = spawnProbe('shop/client', ...args);
  let out = '';
  let onStart: () => void = () => undefined;
  const started = new Promise<void>((r) => (onStart = r));
  p.stdout?.on('data', (c: Buffer) => {
    out += String(c);
    if (out.includes('connected')) onStart();
  });
  const result = new Promise<Record<string, unknown>>((resolve) =>
    p.once('exit', () => {
      onStart();
      resolve(JSON.parse(out.trim().split('\n').at(-1) ?? '{}') as Record<string, unknown>);
    }),
  );
  return { started, result };
}

t.test('upgrading a daemon under load', { skip: labSkipReason ?? false }, async (t) => {
  await exclusiveLab(t, MANIFESTS);
  startProbeServers(['shop/cart-local', 'shop/cart-remote']);
  await new Promise((r) => setTimeout(r, 500));

  for (const [node, target, what] of [['node-2', CART_REMOTE, 'the destination node (inbound HBONE)'], ['node-1', CART_LOCAL, 'the source node (outbound, same node)']] as const) {
    t.test(`${node}: ${what}`, async (t) => {
      const retransmits = synRetransmits('shop/client');
      // Long connections first: pings for 4 s (the drain deadline is 5 s), and 6 MiB at 1.5 MiB/s.
      const hold = running('hold', target, '8080', '4');
      await hold.started;
      const transfer = running('send', target, '8080', String(6 * 1024 * 1024), String(1.5 * 1024 * 1024));
      // New connections throughout: 4 at a time, about 3 s of them.
      const fresh = running('connrate', target, '8080', '3000', '4');
      await new Promise((r) => setTimeout(r, 300));
      const before = readLabState()?.nodes.find((n) => n.name === node)?.pid;
      const upgrade = await labUpgradeNode(node);
      t.not(upgrade.pid, before, `a new daemon serves after ${upgrade.readyMs} ms`);
      const made = await fresh.result;
      t.match(made, { ok: true, count: 3000 }, `all 3000 new connections made it: none refused or reset (${String(made['error'] ?? 'ok')})`);
      t.equal(synRetransmits('shop/client') - retransmits, 0, 'and none had to retransmit its SYN (no captured SYN found no listener)');
      t.match(await hold.result, { ok: true, ended: 'still open' }, 'the long connection lasted its 4 s');
      t.ok(Number((await hold.result)['pongs']) > 30, 'and carried pings all along');
      t.match(await transfer.result, { ok: true, sent: 6 * 1024 * 1024, received: 6 * 1024 * 1024 }, 'the slow transfer came back byte-exact (SHA-256)');
      await upgrade.oldExited;
      const log = logLines(readLabState()?.nodes.find((n) => n.name === node)?.log ?? '');
      t.ok(log.some((l) => l['pid'] === upgrade.previous && l['msg'] === 'handing over to the new daemon; draining'), 'the old daemon drained as a hand-over');
      t.match(log.filter((l) => l['pid'] === upgrade.previous && l['msg'] === 'drained').at(-1), { cutConnections: 0 }, 'and cut nothing: its connections ended before the deadline');
      // The old one is gone; what it set up stays for the new one.
      t.match(inNode(node, 'tc', ['filter', 'show', 'dev', 'eth0', 'ingress']), /capture_uplink/, 'the uplink hook is in place');
      t.match(inNode(node, 'ip', ['rule', 'show']), /fwmark 0x400\/0xfff lookup 100/, 'the ip rule too');
      t.equal(inNode(node, 'cat', ['/proc/sys/net/ipv4/tcp_early_demux']).trim(), '0', 'and the sysctls');
      t.match(await running('connrate', target, '8080', '200', '4').result, { ok: true, count: 200 }, 'the new daemon alone serves');
    });
  }

  t.test('lab down still removes everything, the node settings\' originals included', async (t) => {
    await labDown();
    t.same(spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' }).stdout.split('\n').filter((l) => l.startsWith('ztl-')), [], 'no lab namespace left');
    const left = existsSync(NODE_CONFIG_DIR) ? readdirSync(NODE_CONFIG_DIR).filter((f) => f.startsWith('node-config.')) : [];
    t.same(left, [], 'no saved originals left behind');
  });
});
