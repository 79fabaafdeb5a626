// A tiny traffic tool to run inside lab pods (`lab exec POD -- node dist/src/lab/probe.js ...`):
//   serve                      echo on :8080, "whoami" (the peer's address) on :9000, until killed
//   send IP PORT BYTES         send BYTES random bytes, half-close, read the echo; prints JSON with SHA-256s
//   hold IP PORT SECONDS       keep an echo connection busy (a ping every 100 ms); prints how it ended
//   whoami IP PORT [TIMEOUT_MS] prints the address the server saw us as, and which server answered
import { createHash, randomBytes } from 'node:crypto';
import net from 'node:net';

const [mode, ...args] = process.argv.slice(2);
const unmap = (ip: string | undefined): string => (ip ?? '').replace(/^::ffff:/, '');
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

function fail(msg: string): never {
  process.stdout.write(`${JSON.stringify({ ok: false, error: msg })}\n`);
  process.exit(1);
}

if (mode === 'serve') {
  net.createServer({ allowHalfOpen: true }, (s) => {
    s.on('error', () => undefined);
    s.pipe(s);
  }).listen(8080);
  net.createServer((s) => {
    s.on('error', () => undefined);
    s.end(`${JSON.stringify({ peer: unmap(s.remoteAddress), self: unmap(s.localAddress) })}\n`);
  }).listen(9000, () => process.stdout.write('serving\n'));
} else if (mode === 'send') {
  const [ip, port, bytes] = args;
  const data = randomBytes(Number(bytes ?? 1024));
  const s = net.connect({ host: ip ?? '', port: Number(port), allowHalfOpen: true });
  const chunks: Buffer[] = [];
  s.setTimeout(15_000, () => fail('timeout'));
  s.on('error', (e) => fail(e.message));
  s.on('data', (c: Buffer) => chunks.push(c));
  s.on('end', () => {
    const back = Buffer.concat(chunks);
    process.stdout.write(`${JSON.stringify({ ok: sha(back) === sha(data), sent: data.length, received: back.length, sha: sha(data) })}\n`);
    s.end();
  });
  s.on('connect', () => s.end(data));
} else if (mode === 'whoami') {
  const [ip, port, timeoutMs] = args;
  const s = net.connect({ host: ip ?? '', port: Number(port) });
  let text = '';
  s.setTimeout(Number(timeoutMs ?? 15_000), () => fail('timeout'));
  s.on('error', (e) => fail(e.message));
  s.on('data', (c: Buffer) => (text += String(c)));
  s.on('end', () => {
    const seen = JSON.parse(text) as { peer: string; self: string };
    process.stdout.write(`${JSON.stringify({ ok: true, seenAs: seen.peer, answeredBy: seen.self })}\n`);
  });
} else if (mode === 'hold') {
  const [ip, port, seconds] = args;
  const s = net.connect({ host: ip ?? '', port: Number(port), allowHalfOpen: true });
  let pongs = 0;
  const end = (how: string): void => {
    process.stdout.write(`${JSON.stringify({ ok: true, ended: how, pongs })}\n`);
    process.exit(0);
  };
  s.on('data', () => (pongs += 1));
  s.on('error', (e) => end(`error: ${e.message}`));
  s.on('end', () => end('closed by peer'));
  s.on('connect', () => {
    process.stdout.write('connected\n');
    setInterval(() => s.write('ping'), 100);
    setTimeout(() => end('still open'), Number(seconds ?? 10) * 1000);
  });
} else {
  fail(`usage: probe serve | send IP PORT BYTES | hold IP PORT SECONDS | whoami IP PORT [TIMEOUT_MS]`);
}
