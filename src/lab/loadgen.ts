// A fortio-style HTTP/1.1 load generator for the lab, used when fortio is not on PATH (it is not in
// Debian). Open loop at a fixed rate: request i is due at start + i/qps, spread over C keep-alive
// connections, and its latency is measured from when it was due, not when it was sent, so a stalled
// connection cannot hide its queue (no coordinated omission). qps 0 means as fast as possible.
//   loadgen serve PORT BYTES                     HTTP/1.1 server answering every request with BYTES bytes
//   loadgen load URL_HOST PORT QPS CONNS SECONDS  prints JSON: achieved qps, errors, percentiles (ms)
//   loadgen idle HOST PORT N SECONDS             opens N idle connections and holds them
import net from 'node:net';

const [mode, ...args] = process.argv.slice(2);

function percentiles(samples: number[]): Record<string, number> {
  const s = samples.sort((a, b) => a - b);
  const at = (q: number): number => s[Math.min(s.length - 1, Math.floor(q * s.length))] ?? NaN;
  return { p50: at(0.5), p75: at(0.75), p90: at(0.9), p99: at(0.99), p999: at(0.999), max: s.at(-1) ?? NaN };
}

if (mode === 'serve') {
  const [port, bytes] = args;
  const body = Buffer.alloc(Number(bytes ?? 1024), 'x');
  const head = Buffer.from(`HTTP/1.1 200 OK\r\ncontent-length: ${body.length}\r\ncontent-type: text/plain\r\n\r\n`);
  const response = Buffer.concat([head, body]);
  net
    .createServer((s) => {
      s.setNoDelay(true);
      s.on('error', () => undefined);
      let pending = '';
      s.on('data', (c: Buffer) => {
        pending += c.toString('latin1');
        let end: number;
        while ((end = pending.indexOf('\r\n\r\n')) >= 0) {
          // A client that asked to close (fortio -keepalive=false) gets its answer, then the FIN.
          const close = /\r\nconnection:\s*close/i.test(pending.slice(0, end));
          pending = pending.slice(end + 4);
          s.write(response);
          if (close) s.end();
        }
      });
    })
    .listen(Number(port ?? 8080), () => process.stdout.write('serving\n'));
} else if (mode === 'load') {
  const [host = '', port = '8080', qpsText = '1000', connsText = '64', secondsText = '10'] = args;
  const qps = Number(qpsText);
  const conns = Number(connsText);
  const durationMs = Number(secondsText) * 1000;
  const request = Buffer.from(`GET / HTTP/1.1\r\nhost: ${host}\r\nuser-agent: ztunnel-ts-loadgen\r\n\r\n`);
  const latencies: number[] = [];
  let errors = 0;
  let issued = 0;
  const start = performance.now();
  const due: number[] = []; // scheduled times of requests not yet sent
  interface Conn {
    socket: net.Socket;
    busy: boolean;
    sentDue: number;
    buf: string;
    want: number;
  }
  const pool: Conn[] = [];
  const finish = (): void => {
    const seconds = (performance.now() - start) / 1000;
    process.stdout.write(
      `${JSON.stringify({ ok: true, tool: 'ztunnel-ts-loadgen', qpsTarget: qps, connections: conns, seconds, requests: latencies.length, errors, achievedQps: latencies.length / seconds, ...percentiles(latencies) })}\n`,
    );
    process.exit(0);
  };
  const dispatch = (): void => {
    for (const c of pool) {
      if (c.busy || c.socket.destroyed || due.length === 0) continue;
      c.busy = true;
      c.sentDue = due.shift() as number;
      c.socket.write(request);
    }
  };
  const open = (): Conn => {
    const c: Conn = { socket: net.connect({ host, port: Number(port), noDelay: true }), busy: false, sentDue: 0, buf: '', want: -1 };
    c.socket.on('error', () => {
      errors += 1;
      // Reconnect after a pause: a refused port must not turn the generator into a busy loop.
      setTimeout(() => {
        const i = pool.indexOf(c);
        if (i >= 0) pool[i] = open();
        dispatch();
      }, 100);
    });
    c.socket.on('data', (chunk: Buffer) => {
      c.buf += chunk.toString('latin1');
      for (;;) {
        if (c.want < 0) {
          const end = c.buf.indexOf('\r\n\r\n');
          if (end < 0) return;
          const len = /content-length: *(\d+)/i.exec(c.buf.slice(0, end))?.[1];
          if (!c.buf.startsWith('HTTP/1.1 200')) errors += 1;
          c.want = end + 4 + Number(len ?? 0);
        }
        if (c.buf.length < c.want) return;
        c.buf = c.buf.slice(c.want);
        c.want = -1;
        latencies.push(performance.now() - c.sentDue);
        c.busy = false;
        if (qps === 0) due.push(performance.now());
        dispatch();
      }
    });
    return c;
  };
  for (let i = 0; i < conns; i++) pool.push(open());
  if (qps === 0) {
    for (let i = 0; i < conns; i++) due.push(performance.now());
    dispatch();
  } else {
    const tick = (): void => {
      const now = performance.now();
      while (start + (issued * 1000) / qps <= now && now - start < durationMs) {
        due.push(start + (issued * 1000) / qps);
        issued += 1;
      }
      dispatch();
    };
    setInterval(tick, 1);
  }
  setTimeout(finish, durationMs);
} else if (mode === 'idle') {
  // Opens N connections and keeps them open, idle, for SECONDS; prints when all are established.
  const [host = '', port = '8080', nText = '1000', secondsText = '30'] = args;
  const n = Number(nText);
  let connected = 0;
  let failed = 0;
  const sockets: net.Socket[] = [];
  const report = (): void => {
    if (connected + failed === n) process.stdout.write(`${JSON.stringify({ ok: failed === 0, connected, failed })}\n`);
  };
  for (let i = 0; i < n; i++) {
    const s = net.connect({ host, port: Number(port) });
    s.on('connect', () => {
      connected += 1;
      report();
    });
    s.on('error', () => {
      failed += 1;
      report();
    });
    sockets.push(s);
  }
  setTimeout(() => process.exit(0), Number(secondsText) * 1000);
} else {
  process.stderr.write('usage: loadgen serve PORT BYTES | loadgen load HOST PORT QPS CONNS SECONDS\n');
  process.exit(2);
}
