// `node dist/bench/node-floor.js [--connections 5000]`: what Node 20 itself costs per held connection, the
// floor under the daemons' RSS per connection. In a child process (run with the daemons' node flags) on
// loopback, N connections are held with 64 bytes echoed on each, and the child's RSS grows by:
//   tcp     one accepted net.Socket each (what the destination daemon holds towards a pod, and the
//           source daemon towards its client)
//   h2      one HTTP/2 server stream each, over one session (what each daemon holds per tunnel)
// A tunnelled connection costs each daemon one of each, so their sum is the least it can take with
// net.Socket and node:http2. Writes bench/results/DATE/node-floor.{json,md}.
import { fork } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import http2 from 'node:http2';
import net from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command } from 'commander';
import { DAEMON_NODE_FLAGS } from '../src/cli/node-flags.js';

type Mode = 'tcp' | 'h2';
const PAYLOAD = Buffer.alloc(64, 'x');
const rssKiB = (): number => Number(/VmRSS:\s+(\d+)/.exec(readFileSync('/proc/self/status', 'utf8'))?.[1] ?? NaN);
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** The child: a server holding what arrives, echoing it; answers "rss" with its RSS after a full GC. */
function serve(mode: Mode): void {
  const held: unknown[] = [];
  const server =
    mode === 'tcp'
      ? net.createServer((c) => {
          held.push(c);
          c.on('data', (d) => c.write(d));
        })
      : http2.createServer({ settings: { maxConcurrentStreams: 1_000_000 } }).on('stream', (s) => {
          held.push(s);
          s.respond({ ':status': 200 });
          s.on('data', (d: Buffer) => s.write(d));
        });
  server.listen(0, '127.0.0.1', () => process.send?.({ port: (server.address() as net.AddressInfo).port }));
  process.on('message', () => {
    (globalThis as { gc?: () => void }).gc?.();
    process.send?.({ rssKiB: rssKiB(), held: held.length });
  });
}

async function measure(mode: Mode, n: number): Promise<{ mode: Mode; held: number; kibPerConnection: number }> {
  const child = fork(fileURLToPath(import.meta.url), ['--serve', mode], { execArgv: [...DAEMON_NODE_FLAGS, '--expose-gc'] });
  const next = <T>(): Promise<T> => new Promise((r) => child.once('message', (m) => r(m as T)));
  const { port } = await next<{ port: number }>();
  const ask = async (): Promise<{ rssKiB: number; held: number }> => {
    const answer = next<{ rssKiB: number; held: number }>();
    child.send('rss');
    return answer;
  };
  await sleep(500);
  const before = await ask();
  const open: { destroy: () => void }[] = [];
  if (mode === 'tcp') {
    for (let i = 0; i < n; i++) {
      const c = net.connect(port, '127.0.0.1');
      await new Promise((r) => c.once('connect', r));
      c.on('data', () => undefined).write(PAYLOAD);
      open.push(c);
    }
  } else {
    const session = http2.connect(`http://127.0.0.1:${port}`, { settings: { maxConcurrentStreams: 1_000_000 } });
    for (let i = 0; i < n; i++) {
      const s = session.request({ ':method': 'POST', ':path': '/' }, { endStream: false });
      s.on('data', () => undefined).write(PAYLOAD);
      open.push(s);
      if (i % 100 === 99) await sleep(5);
    }
    open.push(session);
  }
  await sleep(3000);
  const after = await ask();
  open.forEach((o) => o.destroy());
  child.kill();
  return { mode, held: after.held, kibPerConnection: Math.round(((after.rssKiB - before.rssKiB) / after.held) * 100) / 100 };
}

async function main(): Promise<void> {
  const o = new Command().option('--connections <n>', 'connections held', '5000').parse().opts<{ connections: string }>();
  const n = Number(o.connections);
  const rows = [await measure('tcp', n), await measure('h2', n)];
  const sum = rows.reduce((a, r) => a + r.kibPerConnection, 0);
  const date = new Date().toISOString().slice(0, 10);
  const dir = join(fileURLToPath(new URL('../../bench/results/', import.meta.url)), date);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'node-floor.json'), JSON.stringify({ node: process.version, flags: DAEMON_NODE_FLAGS, connections: n, rows, sumKiB: sum }, null, 2) + '\n');
  const md = [
    `# Node's own cost per held connection (${process.version}, ${DAEMON_NODE_FLAGS.join(' ')})`,
    '',
    `\`node dist/bench/node-floor.js --connections ${n}\`: RSS growth of one process holding ${n} connections on loopback, 64 bytes echoed on each, after a full GC.`,
    '',
    '| what is held | KiB of RSS each |',
    '|---|---|',
    ...rows.map((r) => `| ${r.mode === 'tcp' ? 'an accepted net.Socket' : 'an HTTP/2 server stream (one session)'} | ${r.kibPerConnection} |`),
    `| both: the least a daemon holds per tunnelled connection | ${Math.round(sum * 100) / 100} |`,
    '',
  ].join('\n');
  writeFileSync(join(dir, 'node-floor.md'), md);
  console.log(md);
}

if (process.argv[2] === '--serve') serve(process.argv[3] as Mode);
else void main();
