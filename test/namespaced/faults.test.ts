// Faults an operator meets, in the two-node lab with eBPF capture: the CA down while certificates come up
// for renewal, a peer daemon killed mid-transfer, a peer daemon frozen (SIGSTOP) for 30 s. Certificates
// live 60 s here (renewal at 30 s), so that a renewal falls inside the outage. Needs root; skipped otherwise.
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { HBONE_SEND_BUFFER_BYTES } from '../../src/hbone/constants.js';
import { labRestartNode, labUpgradeNode, readLabState, type LabState } from '../../src/lab/lab.js';
import { probeInPod, spawnProbe, startProbeServers } from '../../src/lab/probe-runner.js';
import { exclusiveLab, labSkipReason, logLines, waitFor } from '../helpers/lab-test.js';

const MANIFESTS = fileURLToPath(new URL('../../../manifests/examples/demo/cluster.yaml', import.meta.url));
const CART_LOCAL = '10.244.1.11';
const CART_REMOTE = '10.244.2.10';
t.setTimeout(600_000);

const whoami = (ip: string, timeoutMs = 3000): { ok: boolean; error?: string } => {
  try {
    return JSON.parse(probeInPod('shop/client', 'whoami', ip, '9000', String(timeoutMs))) as { ok: boolean };
  } catch {
    return { ok: false, error: 'no answer' };
  }
};

/** node-1's readiness: the status and what it lists as pending. */
function readiness(): { status: number; body: string } {
  const script = "fetch('http://127.0.0.1:15021/healthz/ready').then(async r=>process.stdout.write(JSON.stringify({status:r.status,body:await r.text()})))";
  return JSON.parse(spawnSync('nsenter', ['--net=/run/netns/ztl-node-1', process.execPath, '-e', script], { encoding: 'utf8' }).stdout) as { status: number; body: string };
}

const node1Log = (state: LabState): Record<string, unknown>[] => logLines(state.nodes.find((n) => n.name === 'node-1')?.log ?? '');

/** A held echo connection from the client pod: when it ended, and how. */
function hold(ip: string, seconds: number): { connected: () => boolean; ended: Promise<{ at: number; how: string }> } {
  const p = spawnProbe('shop/client', 'hold', ip, '8080', String(seconds));
  let out = '';
  p.stdout?.on('data', (c: Buffer) => (out += String(c)));
  return {
    connected: () => out.includes('connected'),
    ended: new Promise((r) => p.once('exit', () => r({ at: Date.now(), how: String((JSON.parse(out.trim().split('\n').at(-1) ?? '{}') as { ended?: string }).ended) }))),
  };
}

t.test('faults', { skip: labSkipReason ?? false }, async (t) => {
  const state = await exclusiveLab(t, MANIFESTS, { daemonArgs: ['--cert-ttl', '60'] });
  startProbeServers(['shop/cart-local', 'shop/cart-remote']);
  await waitFor('servers', () => whoami(CART_REMOTE).ok, 10_000);

  t.test('the CA down across a renewal: valid certificates keep serving, renewal backs off, readiness names what cannot start', async (t) => {
    const ca = state.ca.pid;
    const since = node1Log(state).length;
    process.kill(ca, 'SIGSTOP');
    t.teardown(() => void (() => { try { process.kill(ca, 'SIGCONT'); } catch { /* gone */ } })());
    const stoppedAt = Date.now();
    // The renewal at half-life (30 s) fails; the daemon says so and keeps the valid certificate.
    await waitFor('a failed renewal', () => node1Log(state).slice(since).some((l) => l['msg'] === 'certificate fetch failed' && l['keepingValidCertificate'] === true), 45_000);
    const failures = node1Log(state).slice(since).filter((l) => l['msg'] === 'certificate fetch failed').map((l) => Number(l['retryInMs']));
    t.ok(failures.length >= 1 && failures.every((ms, i) => i === 0 || ms >= (failures[i - 1] ?? 0)), `retries back off (${failures.join(', ')} ms)`);
    t.match(whoami(CART_REMOTE), { ok: true }, 'traffic goes on with the valid certificates');
    t.equal(readiness().status, 200, 'and the daemon stays ready: it serves');
    // A pod that arrives during the outage cannot get an identity: readiness says which.
    const original = readFileSync(state.manifests, 'utf8');
    writeFileSync(state.manifests, `${original}---
apiVersion: v1
kind: ServiceAccount
metadata: { name: late, namespace: shop }
---
apiVersion: v1
kind: Pod
metadata: { name: late, namespace: shop }
spec: { nodeName: node-1, serviceAccountName: late, containers: [{ name: app, image: registry.k8s.io/pause:3.10 }] }
status: { podIP: 10.244.1.99 }
`);
    t.teardown(() => writeFileSync(state.manifests, original));
    await waitFor('readiness to name the new identity', () => {
      const r = readiness();
      return r.status === 503 && r.body.includes('spiffe://cluster.local/ns/shop/sa/late');
    }, 5000);
    t.pass(`after ${Math.round((Date.now() - stoppedAt) / 1000)} s of outage, readiness: 503 naming spiffe://cluster.local/ns/shop/sa/late`);
    process.kill(ca, 'SIGCONT');
    await waitFor('the new identity issued', () => readiness().status === 200, 40_000);
    t.ok(node1Log(state).slice(since).some((l) => l['msg'] === 'workload certificate issued' && l['identity'] === 'spiffe://cluster.local/ns/shop/sa/client'), 'the renewal went through once the CA was back');
    t.match(whoami(CART_REMOTE), { ok: true });
  });

  t.test('a peer daemon killed mid-transfer: its streams end at once, the rest goes on, it serves again right after its restart', async (t) => {
    const remote = hold(CART_REMOTE, 30);
    const local = hold(CART_LOCAL, 6);
    await waitFor('held connections', () => remote.connected() && local.connected());
    await new Promise((r) => setTimeout(r, 300));
    const node2 = readLabState()?.nodes.find((n) => n.name === 'node-2');
    if (node2 === undefined) throw new Error('no node-2');
    const killedAt = Date.now();
    process.kill(node2.pid, 'SIGKILL');
    const ended = await remote.ended;
    t.ok(ended.at - killedAt < 1000, `the stream to node-2 ended ${ended.at - killedAt} ms after the kill (within 1 s)`);
    t.match(ended.how, /ECONNRESET/, 'with a reset, never a FIN the pod could take for a complete reply');
    await waitFor('its access log line', () => node1Log(state).some((l) => l['msg'] === 'connection failed' && l['dst.addr'] === `${CART_REMOTE}:8080` && l['response_flags'] !== undefined));
    t.match(node1Log(state).filter((l) => l['msg'] === 'connection failed' && l['dst.addr'] === `${CART_REMOTE}:8080`).at(-1), { response_flags: /^[A-Z_]+$/ }, 'node-1 logs it with a flag');
    t.match(whoami(CART_LOCAL), { ok: true }, 'node-1 keeps serving everything else');
    t.match(whoami(CART_REMOTE, 2000), { ok: false }, 'new connections to node-2 fail closed (no bypass around its dead daemon)');
    t.equal((await local.ended).how, 'still open', 'the same-node connection lasted');
    await labRestartNode('node-2');
    const restarted = Date.now();
    await waitFor('node-2 reachable again', () => whoami(CART_REMOTE, 500).ok, 2000);
    t.pass(`new connections to node-2 work ${Date.now() - restarted} ms after its daemon is ready (within 2 s)`);
  });

  t.test('a peer daemon frozen for 30 s: streams to it time out, the rest goes on, it serves again when thawed', async (t) => {
    const remote = hold(CART_REMOTE, 60);
    await waitFor('held connection', () => remote.connected());
    const node2 = readLabState()?.nodes.find((n) => n.name === 'node-2');
    if (node2 === undefined) throw new Error('no node-2');
    process.kill(node2.pid, 'SIGSTOP');
    t.teardown(() => void (() => { try { process.kill(node2.pid, 'SIGCONT'); } catch { /* gone */ } })());
    const stoppedAt = Date.now();
    t.match(whoami(CART_LOCAL), { ok: true }, 'node-1 serves its own traffic meanwhile');
    const ended = await remote.ended;
    t.ok(ended.at - stoppedAt < 30_000, `the stream to the frozen peer ended ${Math.round((ended.at - stoppedAt) / 1000)} s in, when its PINGs went unanswered (before 30 s)`);
    t.match(ended.how, /ECONNRESET/, 'with a reset');
    await new Promise((r) => setTimeout(r, Math.max(0, 30_000 - (Date.now() - stoppedAt))));
    process.kill(node2.pid, 'SIGCONT');
    await waitFor('node-2 thawed', () => whoami(CART_REMOTE, 1000).ok, 10_000);
    t.pass('new connections work again once it runs');
  });

  t.test('regression: 64 MiB each way through HBONE with small TCP buffers on both nodes arrives; neither session stops reading', async (t) => {
    // Node's HTTP/2 session stops reading its socket while a write to it is in progress. With both TCP
    // pipes full (here: send buffers of 64 KiB at most, receive buffers of 128 KiB), both daemons waited
    // to write and neither read: every echo of 64 MiB stalled at about 4 MiB, until its PINGs timed out.
    const netns = ['ztl-node-1', 'ztl-node-2'];
    const sysctl = (ns: string, ...args: string[]): string => spawnSync('nsenter', [`--net=/run/netns/${ns}`, 'sysctl', '-n', ...args], { encoding: 'utf8' }).stdout.trim();
    const keys = ['net.ipv4.tcp_wmem', 'net.ipv4.tcp_rmem'];
    const saved = netns.map((ns) => keys.map((k) => sysctl(ns, k)));
    // New daemons, so that their listeners and connections are made with the small sizes.
    const renew = async (): Promise<void> => {
      for (const node of ['node-1', 'node-2']) await (await labUpgradeNode(node)).oldExited;
    };
    t.teardown(async () => {
      netns.forEach((ns, i) => keys.forEach((k, j) => sysctl(ns, '-w', `${k}=${saved[i]?.[j] ?? ''}`)));
      await renew();
    });
    for (const ns of netns) sysctl(ns, '-w', 'net.ipv4.tcp_wmem=4096 16384 65536', 'net.ipv4.tcp_rmem=4096 65536 131072');
    await renew();
    await waitFor('node-2 serving', () => whoami(CART_REMOTE, 1000).ok, 10_000);
    const r = JSON.parse(probeInPod('shop/client', 'send', CART_REMOTE, '8080', String(64 << 20))) as { ok: boolean; received?: number; error?: string };
    t.match(r, { ok: true, received: 64 << 20 }, `the echo came back whole (${JSON.stringify(r)})`);
    const ss = spawnSync('nsenter', ['--net=/run/netns/ztl-node-1', 'ss', '-tmH', 'state', 'established', '( dport = :15008 )'], { encoding: 'utf8' }).stdout;
    const sendBuffers = [...ss.matchAll(/tb(\d+)/g)].map((m) => Number(m[1]));
    t.ok(sendBuffers.length > 0 && sendBuffers.every((b) => b >= HBONE_SEND_BUFFER_BYTES), `node-1's HBONE sockets hold what the windows allow, above tcp_wmem (${sendBuffers.join(', ')} bytes)`);
  });
});
