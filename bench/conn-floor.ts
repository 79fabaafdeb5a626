// `node dist/bench/conn-floor.js [--seconds 8 --rounds 3]`: what a new tunnelled connection costs the
// daemons, against what the same shape costs in plain Node. On loopback, a client opens connections 8 at a
// time (SOCKS5 CONNECT, 64 bytes echoed, close) to an echo server, measured in turn as:
//   direct      client -> echo (which closes first, after the echo)
//   floor       client -> a bare SOCKS5-to-HBONE proxy -> a bare HBONE-to-TCP proxy -> echo: one pooled
//               HTTP/2 session over mutual TLS 1.3, CONNECT, pipe(); no policy, no logs, no metrics
//   ztunnel-ts  client -> node-1's daemon (SOCKS5) -> node-2's daemon -> echo (manifests/examples/loopback)
// Both proxies of a mode run with the daemons' node flags in their own processes; their CPU per connection
// comes from /proc. Writes bench/results/DATE/conn-floor.{json,md}.
import { execFileSync, fork, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http2 from 'node:http2';
import net from 'node:net';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command } from 'commander';
import { DAEMON_NODE_FLAGS } from '../src/cli/node-flags.js';
import { CLI, startProcess, type Proc } from '../src/demo/processes.js';
import { CertificateAuthority } from '../src/identity/ca.js';
import { TLS_BASE, tlsCredentials } from '../src/hbone/tls.js';
import { cpuSeconds, median } from './lab-load.js';

const MANIFESTS = fileURLToPath(new URL('../../manifests/examples/loopback/mesh.yaml', import.meta.url));
const RESULTS = fileURLToPath(new URL('../../bench/results/', import.meta.url));
const SELF = fileURLToPath(import.meta.url);
const CLIENT_IP = '127.77.1.1';
const ECHO = { host: '127.77.2.1', port: 8080 };
const FLOOR_OUT = { host: '127.77.3.1', port: 15080 };
const FLOOR_IN = { host: '127.77.3.2', port: 15008 };
const PAYLOAD = Buffer.alloc(64, 'x');
const CONCURRENCY = 8;
const MODES = ['direct', 'floor', 'ztunnel-ts'] as const;
type Mode = (typeof MODES)[number];

// ---- the child roles: echo, and the two bare proxies ----

/** Echoes the 64 bytes and closes first, so that TIME_WAIT is the server's: the client binds its pod IP, and
 * bind() cannot reuse a port of its own in TIME_WAIT (thousands a second would exhaust them). */
function echo(): void {
  net
    .createServer((s) => {
      s.on('error', () => undefined);
      let got = 0;
      s.on('data', (d) => {
        got += d.length;
        s.write(d);
        if (got >= PAYLOAD.length) s.end();
      });
    })
    .listen(ECHO.port, ECHO.host, () => process.send?.('ready'));
}

function floorIn(creds: { cert: string; key: string; ca: string[] }): void {
  http2
    .createSecureServer({ ...TLS_BASE, ...creds, requestCert: true, rejectUnauthorized: true })
    .on('stream', (stream, headers) => {
      const [host, port] = String(headers[':authority']).split(':');
      const up = net.connect({ host: host ?? '', port: Number(port) });
      up.once('connect', () => {
        stream.respond({ ':status': 200 });
        stream.pipe(up);
        up.pipe(stream);
      });
      up.on('error', () => stream.destroy());
      stream.on('error', () => up.destroy());
    })
    .listen(FLOOR_IN.port, FLOOR_IN.host, () => process.send?.('ready'));
}

function floorOut(creds: { cert: string; key: string; ca: string[] }): void {
  const session = http2.connect(`https://${FLOOR_IN.host}:${FLOOR_IN.port}`, { ...TLS_BASE, ...creds, servername: 'localhost', checkServerIdentity: () => undefined });
  net
    .createServer((c) => {
      c.on('error', () => undefined);
      // SOCKS5: greeting (3 bytes), then CONNECT with an IPv4 address (10 bytes); both arrive at once here.
      let got = Buffer.alloc(0);
      let greeted = false;
      const onData = (d: Buffer): void => {
        got = Buffer.concat([got, d]);
        if (!greeted && got.length >= 3) {
          greeted = true;
          c.write(Buffer.from([5, 0]));
        }
        if (got.length < 13) return;
        c.off('data', onData);
        const dst = `${got[7]}.${got[8]}.${got[9]}.${got[10]}:${got.readUInt16BE(11)}`;
        const stream = session.request({ ':method': 'CONNECT', ':authority': dst });
        stream.once('response', () => {
          c.write(Buffer.from([5, 0, 0, 1, 0, 0, 0, 0, 0, 0]));
          c.pipe(stream);
          stream.pipe(c);
        });
        stream.on('error', () => c.destroy());
        c.on('error', () => stream.destroy());
      };
      c.on('data', onData);
    })
    .listen(FLOOR_OUT.port, FLOOR_OUT.host, () => process.send?.('ready'));
}

// ---- the load ----

/** One connection: (SOCKS5 CONNECT to the echo server,) 64 bytes there and back, closed by the server. */
function once(via: { host: string; port: number } | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    const target = via ?? ECHO;
    const s = net.connect({ host: target.host, port: target.port, localAddress: CLIENT_IP });
    let stage = via === undefined ? 2 : 0;
    let got = 0;
    s.on('error', reject);
    s.on('connect', () => {
      if (via === undefined) s.write(PAYLOAD);
      else s.write(Buffer.concat([Buffer.from([5, 1, 0]), Buffer.from([5, 1, 0, 1, 127, 77, 2, 1, ECHO.port >> 8, ECHO.port & 255])]));
    });
    s.on('data', (d: Buffer) => {
      if (stage === 0) {
        // method reply (2 bytes) and CONNECT reply (10 bytes), together or apart
        got += d.length;
        if (got < 12) return;
        stage = 2;
        s.write(PAYLOAD);
      }
    });
    s.on('close', () => resolve());
  });
}

async function connRate(via: { host: string; port: number } | undefined, seconds: number): Promise<number> {
  const until = Date.now() + seconds * 1000;
  let done = 0;
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (Date.now() < until) {
        await once(via);
        done += 1;
      }
    }),
  );
  return done / seconds;
}

function child(role: string, creds?: object, nodeArgs: readonly string[] = []): Promise<ChildProcess> {
  const c = fork(SELF, ['--role', role], { execArgv: [...DAEMON_NODE_FLAGS, ...nodeArgs], env: { ...process.env, CREDS: JSON.stringify(creds ?? {}) } });
  return new Promise((resolve, reject) => {
    c.once('message', () => resolve(c));
    c.once('exit', (code) => reject(new Error(`${role} exited ${code}`)));
  });
}

async function main(): Promise<void> {
  const o = new Command()
    .option('--seconds <n>', 'per measurement', '8')
    .option('--rounds <n>', 'rounds', '3')
    .option('--modes <list>', 'which, in turn (comma-separated; writes no results unless all three)', MODES.join(','))
    .option('--daemon-node-args <flags>', 'extra node flags for the daemons and the bare proxies, e.g. "--cpu-prof --cpu-prof-dir=/tmp/p"', '')
    .option('--role <r>')
    .parse(process.argv)
    .opts<{ seconds: string; rounds: string; modes: string; daemonNodeArgs: string; role?: string }>();
  if (o.role !== undefined) {
    process.on('SIGTERM', () => process.exit(0)); // exits, so that --cpu-prof writes its profile
    const creds = JSON.parse(process.env['CREDS'] ?? '{}') as { cert: string; key: string; ca: string[] };
    if (o.role === 'echo') echo();
    else if (o.role === 'floor-in') floorIn(creds);
    else floorOut(creds);
    return;
  }
  const nodeArgs = o.daemonNodeArgs.split(' ').filter((a) => a !== '');
  const modes = o.modes.split(',').filter((m): m is Mode => (MODES as readonly string[]).includes(m));
  const seconds = Number(o.seconds);
  const rounds = Number(o.rounds);
  const dir = mkdtempSync(join(tmpdir(), 'ztunnel-ts-conn-floor-'));
  const kids: ChildProcess[] = [];
  const procs: Proc[] = [];
  try {
    const ca = await CertificateAuthority.create('cluster.local');
    const creds = async (id: string): Promise<object> => tlsCredentials(await ca.issue(id));
    kids.push(await child('echo'));
    const fIn = await child('floor-in', await creds('spiffe://cluster.local/ns/shop/sa/cart'), nodeArgs);
    const fOut = await child('floor-out', await creds('spiffe://cluster.local/ns/shop/sa/frontend'), nodeArgs);
    kids.push(fIn, fOut);

    const caDir = join(dir, 'ca');
    execFileSync(process.execPath, [CLI, 'ca', 'init', '--dir', caDir]);
    for (const node of ['node-1', 'node-2']) execFileSync(process.execPath, [CLI, 'ca', 'token', '--dir', caDir, '--node', node, '--out', join(dir, `${node}.jwt`)]);
    const caProc = startProcess('ca', ['ca', 'serve', '--dir', caDir, '--manifests', MANIFESTS, '--listen', '127.77.0.1:15012']);
    procs.push(caProc);
    await caProc.waitFor((l) => l['msg'] === 'ca serving');
    const daemons: Proc[] = [];
    for (const [node, ip] of [['node-1', '127.77.1.254'], ['node-2', '127.77.2.254']] as const) {
      // Logs at warn: both modes then pay no log line per connection, as the floor writes none.
      const d = startProcess(node, [
        'run', '--node', node, '--manifests', MANIFESTS, '--log-level', 'warn',
        '--ca-url', 'https://127.77.0.1:15012', '--ca-token', join(dir, `${node}.jwt`), '--ca-root', join(caDir, 'root-cert.pem'),
        '--socks5', `${ip}:15080`, '--admin', `${ip}:15000`, '--metrics', `${ip}:15020`, '--readiness', `${ip}:15021`,
      ], undefined, nodeArgs);
      procs.push(d);
      daemons.push(d);
    }
    await new Promise((r) => setTimeout(r, 3000));
    const pids: Record<Mode, number[]> = {
      direct: [],
      floor: [fOut.pid ?? 0, fIn.pid ?? 0],
      'ztunnel-ts': daemons.map((d) => d.child.pid ?? 0),
    };
    const via: Record<Mode, { host: string; port: number } | undefined> = { direct: undefined, floor: FLOOR_OUT, 'ztunnel-ts': { host: '127.77.1.254', port: 15080 } };
    for (const m of modes) await connRate(via[m], 1); // warm-up: sessions, certificates, JIT
    const results: Record<Mode, { rate: number[]; cpuMsPerConn: number[] }> = { direct: { rate: [], cpuMsPerConn: [] }, floor: { rate: [], cpuMsPerConn: [] }, 'ztunnel-ts': { rate: [], cpuMsPerConn: [] } };
    for (let r = 1; r <= rounds; r++) {
      for (const m of modes) {
        const before = pids[m].map(cpuSeconds);
        const rate = await connRate(via[m], seconds);
        const cpu = pids[m].map(cpuSeconds).reduce((a, b, i) => a + b - (before[i] ?? 0), 0);
        results[m].rate.push(rate);
        results[m].cpuMsPerConn.push(pids[m].length === 0 ? 0 : (cpu * 1000) / (rate * seconds));
        process.stdout.write(`round ${r}/${rounds} ${m.padEnd(10)} ${rate.toFixed(0)} conn/s, proxies' CPU ${((cpu * 1000) / (rate * seconds)).toFixed(3)} ms per connection\n`);
      }
    }
    if (modes.length !== MODES.length) return;
    const summary = Object.fromEntries(MODES.map((m) => [m, { connPerSecond: median(results[m].rate), cpuMsPerConnection: median(results[m].cpuMsPerConn), rounds: results[m] }]));
    const date = new Date().toISOString().slice(0, 10);
    const out = join(RESULTS, date);
    mkdirSync(out, { recursive: true });
    writeFileSync(join(out, 'conn-floor.json'), `${JSON.stringify({ date, seconds, rounds, concurrency: CONCURRENCY, cpus: cpus().length, cpu: cpus()[0]?.model, node: process.version, summary }, null, 2)}\n`);
    const row = (m: Mode): string => {
      const s = summary[m] as { connPerSecond: number; cpuMsPerConnection: number };
      return `| ${m} | ${s.connPerSecond.toFixed(0)} | ${((100 * s.connPerSecond) / (summary['direct'] as { connPerSecond: number }).connPerSecond).toFixed(0)}% | ${m === 'direct' ? '—' : s.cpuMsPerConnection.toFixed(3)} |`;
    };
    writeFileSync(
      join(out, 'conn-floor.md'),
      [
        `# New connections on loopback: ztunnel-ts against a bare Node HBONE pipeline`,
        '',
        `\`node dist/bench/conn-floor.js --seconds ${seconds} --rounds ${rounds}\`: ${CONCURRENCY} at a time, SOCKS5 CONNECT, 64 bytes echoed, close; medians of ${rounds} rounds in turn. ${cpus().length} × ${cpus()[0]?.model ?? '?'}, Node ${process.version}. The client, the echo server and both proxies share the cores.`,
        '',
        '| mode | connections/s | of direct | both proxies\' CPU per connection (ms) |',
        '|---|---|---|---|',
        ...MODES.map(row),
        '',
      ].join('\n'),
    );
    process.stdout.write(readFileSync(join(out, 'conn-floor.md'), 'utf8'));
  } finally {
    for (const p of procs.reverse()) await p.stop();
    for (const k of kids) k.kill();
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
