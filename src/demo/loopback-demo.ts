// `npm run demo`: a standalone CA and two node daemons as real processes on loopback. The frontend pod
// on node-1 calls the cart service; the connection crosses to node-2 as mTLS HBONE, and both daemons
// log both SPIFFE identities. Everything it starts is stopped at the end.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { SocksClient } from 'socks';
import { CLI, startProcess, type Proc } from './processes.js';

const MANIFESTS = fileURLToPath(new URL('../../../manifests/examples/loopback/mesh.yaml', import.meta.url));
const say = (text: string): void => void process.stdout.write(`\n\x1b[1m${text}\x1b[0m\n`);
const show = (text: string): void => void process.stdout.write(`  ${text}\n`);

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'ztunnel-ts-demo-'));
  const caDir = join(dir, 'ca');
  const procs: Proc[] = [];
  let cart: net.Server | undefined;
  try {
    say('1. A root CA for trust domain cluster.local (Istio cacerts layout), and a token per node');
    execFileSync(process.execPath, [CLI, 'ca', 'init', '--dir', caDir], { stdio: 'inherit' });
    for (const node of ['node-1', 'node-2']) {
      execFileSync(process.execPath, [CLI, 'ca', 'token', '--dir', caDir, '--node', node, '--out', join(dir, `${node}.jwt`)]);
    }

    say('2. The CA on its own (port 15012), and one ztunnel-ts daemon per node');
    const ca = startProcess('ca', ['ca', 'serve', '--dir', caDir, '--manifests', MANIFESTS, '--listen', '127.77.0.1:15012']);
    procs.push(ca);
    await ca.waitFor((l) => l['msg'] === 'ca serving');
    show('ca serving on https://127.77.0.1:15012');
    for (const [node, ip] of [['node-1', '127.77.1.254'], ['node-2', '127.77.2.254']] as const) {
      const d = startProcess(node, [
        'run', '--node', node, '--manifests', MANIFESTS,
        '--ca-url', 'https://127.77.0.1:15012', '--ca-token', join(dir, `${node}.jwt`), '--ca-root', join(caDir, 'root-cert.pem'),
        '--socks5', `${ip}:15080`, '--admin', `${ip}:15000`, '--metrics', `${ip}:15020`, '--readiness', `${ip}:15021`,
      ]);
      procs.push(d);
      await d.waitFor((l) => l['msg'] === 'ztunnel-ts ready');
      const cert = await d.waitFor((l) => l['msg'] === 'workload certificate issued');
      show(`${node}: ready; SVID issued for ${String(cert['identity'])}`);
    }

    say('3. The cart pod (node-2, 127.77.2.1:8080) answers with what it sees');
    cart = net.createServer((s) => {
      s.on('error', () => undefined);
      s.once('data', (req) => s.end(`cart-0 here. You asked "${String(req).trim()}" and you come from ${s.remoteAddress}\n`));
    });
    await new Promise<void>((r) => cart?.listen(8080, '127.77.2.1', r));

    say('4. The frontend pod (node-1, 127.77.1.1) connects to the cart Service VIP 10.96.77.10:80');
    const raw = net.connect({ host: '127.77.1.254', port: 15080, localAddress: '127.77.1.1' });
    await new Promise((r, j) => raw.once('connect', r).once('error', j));
    const { socket } = await SocksClient.createConnection({
      proxy: { host: '127.77.1.254', port: 15080, type: 5 },
      command: 'connect',
      destination: { host: '10.96.77.10', port: 80 },
      existing_socket: raw,
    });
    const reply = await new Promise<string>((resolve, reject) => {
      let text = '';
      socket.on('data', (c: Buffer) => (text += String(c)));
      socket.on('end', () => resolve(text));
      socket.on('error', reject);
      socket.write('GET /cart/42');
    });
    show(`reply: ${reply.trim()}`);

    say('5. What the daemons logged: one line per connection, both SPIFFE identities');
    for (const d of procs.slice(1)) {
      const line = await d.waitFor((l) => l['msg'] === 'connection complete');
      show(
        `${d.name} (${String(line['direction'])}): ${String(line['src.identity'])} -> ${String(line['dst.identity'])} ` +
          `dst=${String(line['dst.addr'])} hbone=${String(line['dst.hbone_addr'])} sent=${String(line['bytes_sent'])}B recv=${String(line['bytes_recv'])}B`,
      );
    }
    say('Done: the bytes crossed nodes over mutual TLS (TLS 1.3, HTTP/2 CONNECT) and the pod saw the client IP.');
  } finally {
    cart?.close();
    await Promise.all(procs.map((p) => p.stop()));
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`demo failed: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
