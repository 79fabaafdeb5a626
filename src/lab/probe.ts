// A tiny traffic tool to run inside lab pods (`lab exec POD -- node dist/src/lab/probe.js ...`):
//   serve [ECHO_PORT]          echo on :8080 (or ECHO_PORT), "whoami" (the peer's address) on :9000, until killed
//   send IP PORT BYTES [RATE]  send BYTES random bytes (at RATE bytes/s, or at once), half-close, read the
//                              echo; prints JSON with SHA-256s
//   stream IP PORT BYTES       send BYTES random bytes in 1 MiB chunks as fast as the connection takes them,
//                              half-close, hash the echo as it comes (memory stays small: 1 GiB is fine);
//                              prints JSON with both SHA-256s and the rate
//   many IP PORT N BYTES SECONDS  N connections at once (200 opening at a time), each echoing BYTES random
//                              bytes exactly; prints {"established":N,...} when all are, holds them SECONDS,
//                              closes them and prints the result
//   hold IP PORT SECONDS       keep an echo connection busy (a ping every 100 ms); prints how it ended
//   connrate IP PORT COUNT CONC  COUNT connections (CONC at once), each 64 bytes echoed; latency percentiles
//   pingpong IP PORT COUNT     COUNT 64-byte round trips on one connection; latency percentiles
//   whoami IP PORT [TIMEOUT_MS] prints the address the server saw us as, and which server answered
//   reuse-port IP PORT LOCAL_PORT COUNT  COUNT whoami connections one after another, all from LOCAL_PORT
//                              (the server closes first, so each reuses the tuple of a closed one)
//   http-serve NAME [PORT]     HTTP on PORT (9080) answering {name, method, path, peer, xff}
//   http-load IP PORT COUNT [METHOD] [PATH] [fresh] [trace [SECONDS]] COUNT requests, keep-alive unless fresh
//                              (a connection each); counts of statuses and of who answered; with trace also each
//                              request's start time (ms since the epoch) and who answered it, in order, and
//                              no more than SECONDS of them
import { createHash, randomBytes } from 'node:crypto';
import http from 'node:http';
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
  }).listen(Number(args[0] ?? 8080));
  net.createServer((s) => {
    s.on('error', () => undefined);
    s.end(`${JSON.stringify({ peer: unmap(s.remoteAddress), self: unmap(s.localAddress) })}\n`);
  }).listen(9000, () => process.stdout.write('serving\n'));
} else if (mode === 'send') {
  const [ip, port, bytes, rate] = args;
  const data = randomBytes(Number(bytes ?? 1024));
  const s = net.connect({ host: ip ?? '', port: Number(port), allowHalfOpen: true });
  const chunks: Buffer[] = [];
  // Paced: 10 writes a second of RATE/10 bytes each, then the half-close.
  const paced = (): void => {
    const step = Math.max(1, Math.floor(Number(rate) / 10));
    let at = 0;
    const timer = setInterval(() => {
      s.write(data.subarray(at, at + step));
      at += step;
      if (at >= data.length) {
        clearInterval(timer);
        s.end();
      }
    }, 100);
  };
  s.setTimeout(15_000, () => fail('timeout'));
  s.on('error', (e) => fail(e.message));
  s.on('data', (c: Buffer) => chunks.push(c));
  s.on('end', () => {
    const back = Buffer.concat(chunks);
    process.stdout.write(`${JSON.stringify({ ok: sha(back) === sha(data), sent: data.length, received: back.length, sha: sha(data) })}\n`);
    s.end();
  });
  s.on('connect', () => (rate === undefined ? s.end(data) : paced()));
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
} else if (mode === 'reuse-port') {
  const [ip, port, localPort, countText] = args;
  const one = (): Promise<number> =>
    new Promise((resolve, reject) => {
      const t0 = Date.now();
      const s = net.connect({ host: ip ?? '', port: Number(port), localPort: Number(localPort) });
      s.setTimeout(10_000, () => s.destroy(new Error('timeout')));
      s.on('error', reject);
      s.resume();
      s.on('end', () => {
        s.end();
        resolve(Date.now() - t0);
      });
    });
  (async () => {
    const ms: number[] = [];
    for (let i = 0; i < Number(countText ?? 3); i++) {
      ms.push(await one());
      await new Promise((r) => setTimeout(r, 50)); // let the close finish: the next one reuses the tuple
    }
    return ms;
  })().then(
    (ms) => process.stdout.write(`${JSON.stringify({ ok: true, ms })}\n`),
    (e: Error) => fail(e.message),
  );
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
} else if (mode === 'connrate' || mode === 'pingpong') {
  const [ip, port, countText, concText] = args;
  const count = Number(countText ?? 1000);
  const payload = Buffer.alloc(64, 7);
  const samples: number[] = [];
  let begun = 0;
  const started = process.hrtime.bigint();
  const oneConnection = (): Promise<void> =>
    new Promise((resolve, reject) => {
      const t0 = process.hrtime.bigint();
      const s = net.connect({ host: ip ?? '', port: Number(port), noDelay: true });
      let got = 0;
      s.on('error', reject);
      s.on('connect', () => s.write(payload));
      s.on('data', (c: Buffer) => {
        got += c.length;
        if (got >= payload.length) {
          samples.push(Number(process.hrtime.bigint() - t0) / 1e6);
          s.destroy();
          resolve();
        }
      });
    });
  const pingpong = (): Promise<void> =>
    new Promise((resolve, reject) => {
      const s = net.connect({ host: ip ?? '', port: Number(port), noDelay: true });
      let got = 0;
      let t0 = 0n;
      const send = (): void => {
        got = 0;
        t0 = process.hrtime.bigint();
        s.write(payload);
      };
      s.on('error', reject);
      s.on('connect', send);
      s.on('data', (c: Buffer) => {
        got += c.length;
        if (got < payload.length) return;
        samples.push(Number(process.hrtime.bigint() - t0) / 1e6);
        if (samples.length >= count) {
          s.destroy();
          resolve();
        } else send();
      });
    });
  const work =
    mode === 'pingpong'
      ? pingpong()
      : Promise.all(
          Array.from({ length: Number(concText ?? 1) }, async () => {
            while (begun < count) {
              begun += 1;
              await oneConnection();
            }
          }),
        );
  work.then(
    () => {
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      const sorted = [...samples].sort((a, b) => a - b);
      const pct = (q: number): number => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? NaN;
      process.stdout.write(
        `${JSON.stringify({ ok: true, mode, count: sorted.length, perSecond: sorted.length / seconds, p50: pct(0.5), p90: pct(0.9), p99: pct(0.99) })}\n`,
      );
    },
    (e: Error) => fail(e.message),
  );
} else if (mode === 'stream') {
  const [ip, port, bytesText] = args;
  const total = Number(bytesText ?? 0);
  const sent = createHash('sha256');
  const received = createHash('sha256');
  let receivedBytes = 0;
  let written = 0;
  const t0 = process.hrtime.bigint();
  const s = net.connect({ host: ip ?? '', port: Number(port), allowHalfOpen: true });
  s.setTimeout(60_000, () => fail('timeout'));
  s.on('error', (e) => fail(e.message));
  s.on('data', (c: Buffer) => {
    received.update(c);
    receivedBytes += c.length;
  });
  const writeMore = (): void => {
    while (written < total) {
      const chunk = randomBytes(Math.min(1024 * 1024, total - written));
      sent.update(chunk);
      written += chunk.length;
      if (!s.write(chunk)) return void s.once('drain', writeMore);
    }
    s.end();
  };
  s.on('connect', writeMore);
  s.on('end', () => {
    const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
    const [a, b] = [sent.digest('hex'), received.digest('hex')];
    process.stdout.write(`${JSON.stringify({ ok: a === b && receivedBytes === total, sent: written, received: receivedBytes, sha: a, seconds, gbitPerSecondEachWay: (total * 8) / seconds / 1e9 })}\n`);
    s.end();
  });
} else if (mode === 'many') {
  const [ip, port, countText, bytesText, secondsText] = args;
  const count = Number(countText ?? 1000);
  const size = Number(bytesText ?? 64);
  const open: net.Socket[] = [];
  let exact = 0;
  let failed = 0;
  const one = (): Promise<void> =>
    new Promise((resolve) => {
      const data = randomBytes(size);
      const chunks: Buffer[] = [];
      let got = 0;
      const s = net.connect({ host: ip ?? '', port: Number(port), noDelay: true });
      s.setTimeout(30_000, () => s.destroy(new Error('timeout')));
      s.on('error', () => {
        failed += 1;
        resolve();
      });
      s.on('connect', () => s.write(data));
      s.on('data', (c: Buffer) => {
        chunks.push(c);
        got += c.length;
        if (got < size) return;
        if (Buffer.concat(chunks).equals(data)) exact += 1;
        s.setTimeout(0);
        open.push(s);
        resolve();
      });
    });
  (async () => {
    let next = 0;
    await Promise.all(Array.from({ length: Math.min(200, count) }, async () => {
      while (next < count) {
        next += 1;
        await one();
      }
    }));
    process.stdout.write(`${JSON.stringify({ established: open.length, exact, failed })}\n`);
    await new Promise((r) => setTimeout(r, Number(secondsText ?? 10) * 1000));
    const stillOpen = open.filter((s) => !s.destroyed).length;
    for (const s of open) s.destroy();
    process.stdout.write(`${JSON.stringify({ ok: exact === count && stillOpen === count, count, exact, failed, stillOpen })}\n`);
    process.exit(0);
  })();
} else if (mode === 'http-serve') {
  const [name, port] = args;
  http
    .createServer((req, res) => {
      req.resume();
      req.on('end', () =>
        res
          .writeHead(200, { 'content-type': 'application/json', 'x-served-by': name ?? '' })
          .end(JSON.stringify({ name, method: req.method, path: req.url, peer: unmap(req.socket.remoteAddress), xff: req.headers['x-forwarded-for'] ?? null })),
      );
    })
    .listen(Number(port ?? 9080), () => process.stdout.write('serving\n'));
} else if (mode === 'http-load') {
  const [ip, port, countText, method, path, fresh, trace, secondsText] = args;
  const deadline = secondsText === undefined ? Infinity : Date.now() + Number(secondsText) * 1000;
  const agent = new http.Agent({ keepAlive: fresh !== 'fresh', maxSockets: 1 });
  const statuses: Record<string, number> = {};
  const servedBy: Record<string, number> = {};
  const order: [number, string][] = [];
  const one = (): Promise<void> =>
    new Promise((resolve, reject) => {
      const started = Date.now();
      const req = http.request({ host: ip, port: Number(port), method: method ?? 'GET', path: path ?? '/', agent, timeout: 15_000 }, (res) => {
        res.resume();
        res.on('end', () => {
          statuses[String(res.statusCode)] = (statuses[String(res.statusCode)] ?? 0) + 1;
          const by = String(res.headers['x-served-by'] ?? '-');
          servedBy[by] = (servedBy[by] ?? 0) + 1;
          if (trace === 'trace') order.push([started, by]);
          resolve();
        });
      });
      req.on('timeout', () => req.destroy(new Error('timeout')));
      req.on('error', reject);
      req.end(method === 'POST' || method === 'PUT' ? 'payload' : undefined);
    });
  (async () => {
    for (let i = 0; i < Number(countText ?? 1) && Date.now() < deadline; i++) await one();
  })().then(
    () => {
      process.stdout.write(`${JSON.stringify({ ok: true, statuses, servedBy, ...(trace === 'trace' ? { order } : {}) })}\n`);
      agent.destroy();
    },
    (e: Error) => fail(e.message),
  );
} else {
  fail('usage: probe serve | send IP PORT BYTES [RATE] | hold IP PORT SECONDS | connrate IP PORT COUNT CONC | pingpong IP PORT COUNT | whoami IP PORT [TIMEOUT_MS] | reuse-port IP PORT LOCAL_PORT COUNT | http-serve NAME [PORT] | http-load IP PORT COUNT [METHOD] [PATH] [fresh] [trace [SECONDS]]');
}
