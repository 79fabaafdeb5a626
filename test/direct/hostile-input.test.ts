// What a hostile or broken peer sends to port 15008 never takes the daemon down or leaks a descriptor.
// The daemon runs as a process of its own (its descriptors are counted in /proc); after each abuse a
// legitimate CONNECT still works, and at the end its descriptor count is back to where it started.
import { once } from 'node:events';
import { mkdtempSync, readdirSync, readlinkSync, writeFileSync } from 'node:fs';
import http2 from 'node:http2';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import t, { type Test } from 'tap';
import { CertificateAuthority } from '../../src/identity/ca.js';
import { startChildDaemon } from '../helpers/child-daemon.js';
import { meshManifests, podIp, startEcho } from '../helpers/loopback.js';

const plan = { net: 226 };
const target = podIp(plan, 2, 1);

/** One raw HTTP/2 frame (RFC 9113 §4.1): what a client library would never send. */
function frame(type: number, flags: number, stream: number, payload: Buffer): Buffer {
  const head = Buffer.alloc(9);
  head.writeUIntBE(payload.length, 0, 3);
  head[3] = type;
  head[4] = flags;
  head.writeUInt32BE(stream, 5);
  return Buffer.concat([head, payload]);
}
const FRAME = { data: 0x0, headers: 0x1, settings: 0x4, continuation: 0x9 } as const;
const END_HEADERS = 0x4;

/** HPACK: a literal field without indexing, with the name from the static table (RFC 7541 §6.2.2). */
function literalIndexedName(index: number, value: string): Buffer {
  return Buffer.concat([Buffer.from([index, value.length]), Buffer.from(value)]);
}

async function waitUntil(pred: () => boolean, ms: number): Promise<void> {
  for (const end = Date.now() + ms; !pred() && Date.now() < end; ) await new Promise((r) => setTimeout(r, 20));
}

/** A CONNECT stream whose errors (resets are the point here) are expected. */
function connectStream(s: http2.ClientHttp2Session, authority: string, extra: http2.OutgoingHttpHeaders = {}): http2.ClientHttp2Stream {
  const stream = s.request({ ':method': 'CONNECT', ':authority': authority, ...extra }, { endStream: false });
  stream.on('error', () => undefined);
  return stream;
}

t.test('hostile input on 15008', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'ztunnel-ts-hostile-'));
  const manifests = join(dir, 'mesh.yaml');
  writeFileSync(manifests, meshManifests(plan));
  const caDir = join(dir, 'ca');
  const ca = await CertificateAuthority.loadOrInit(caDir, 'cluster.local');
  const svid = await ca.issue('spiffe://cluster.local/ns/app/sa/client');
  const echo = await startEcho(target);
  t.teardown(() => echo.close());
  const daemon = await startChildDaemon({ node: 'node-2', manifests, caDir });
  t.teardown(async () => {
    daemon.kill('SIGKILL');
    await daemon.exited;
  });
  const pid = daemon.proc.pid ?? 0;
  const fds = (): number => readdirSync(`/proc/${pid}/fd`).length;
  const alive = (): boolean => daemon.proc.exitCode === null && daemon.proc.signalCode === null;

  const session = async (): Promise<http2.ClientHttp2Session> => {
    const socket = tls.connect({ host: target, port: 15008, ca: ca.rootPem, cert: svid.chainPem.join(''), key: svid.keyPem, ALPNProtocols: ['h2'], checkServerIdentity: () => undefined });
    await once(socket, 'secureConnect');
    const s = http2.connect(`https://${target}`, { createConnection: () => socket });
    s.on('error', () => undefined);
    return s;
  };
  /** A CONNECT to the echo pod, answered and echoed: the daemon still serves. */
  const legitimate = async (): Promise<string> => {
    const s = await session();
    try {
      const stream = connectStream(s, `${target}:8080`);
      const [headers] = (await once(stream, 'response')) as [http2.IncomingHttpHeaders];
      if (Number(headers[':status']) !== 200) return `status ${String(headers[':status'])}`;
      stream.end('ping');
      let got = '';
      for await (const c of stream) got += String(c);
      return got;
    } finally {
      s.destroy();
    }
  };
  const check = async (t: Test, what: string): Promise<void> => {
    t.ok(alive(), `${what}: the daemon is alive`);
    t.equal(await legitimate(), 'ping', `${what}: a legitimate CONNECT is answered`);
  };

  t.equal(await legitimate(), 'ping', 'a legitimate CONNECT to start with');
  t.equal(await legitimate(), 'ping', 'and another (everything the daemon opens lazily is open now)');
  await new Promise((r) => setTimeout(r, 1000));
  const fdTargets = (): string[] => readdirSync(`/proc/${pid}/fd`).map((fd) => { try { return readlinkSync(`/proc/${pid}/fd/${fd}`); } catch { return 'gone'; } });
  const before = fdTargets();
  const baseline = before.length;
  let afterRapidReset = baseline;

  t.test('random bytes instead of TLS', async (t) => {
    await Promise.all(
      Array.from({ length: 50 }, async (_, i) => {
        const s = net.connect({ host: target, port: 15008 });
        s.on('error', () => undefined);
        await once(s, 'connect');
        s.resume(); // read, so that the server's alert and FIN are seen
        s.end(Buffer.alloc(1000 + i, i));
        await new Promise((r) => s.once('close', r)); // a reset is a close too (once() would reject)
      }),
    );
    await check(t, 'random bytes');
  });

  t.test('TLS without a client certificate, and plain HTTP/1.1 over TLS', async (t) => {
    for (let i = 0; i < 20; i++) {
      const s = tls.connect({ host: target, port: 15008, ca: ca.rootPem, ALPNProtocols: i % 2 === 0 ? ['h2'] : ['http/1.1'], checkServerIdentity: () => undefined });
      s.on('error', () => undefined);
      await Promise.race([new Promise((r) => s.once('close', r)), new Promise((r) => setTimeout(r, 2000))]);
      s.destroy();
    }
    await check(t, 'no certificate');
  });

  t.test('rapid reset: 5000 CONNECTs cancelled as soon as they are sent', async (t) => {
    const upstreamsBefore = echo.peers.length;
    const s = await session();
    for (let i = 0; i < 5000 && !s.destroyed; i++) {
      connectStream(s, `${target}:8080`).close(http2.constants.NGHTTP2_CANCEL);
      if (i % 100 === 0) await new Promise((r) => setImmediate(r));
    }
    await new Promise((r) => setTimeout(r, 500));
    s.destroy();
    await check(t, 'rapid reset');
    for (const end = Date.now() + 10_000; fds() > baseline && Date.now() < end; ) await new Promise((r) => setTimeout(r, 100));
    afterRapidReset = fds();
    // Regression: nghttp2's own limiter left the session a zombie holding its socket (CLOSE-WAIT, unread),
    // and every reset stream's upstream connect went on (thousands of SYNs to the pod).
    t.ok(afterRapidReset <= baseline, `rapid reset: descriptors back to ${baseline} (${afterRapidReset})`);
    const upstreams = echo.peers.length - upstreamsBefore;
    t.ok(upstreams < 500, `a reset stream's upstream connect is cancelled: ${upstreams} connections reached the pod for 5000 CONNECTs`);
  });

  t.test('more streams than the server advertises (200)', async (t) => {
    const s = await session();
    const streams = Array.from({ length: 300 }, () => connectStream(s, `${target}:8080`));
    const statuses = await Promise.all(
      streams.map((st) => new Promise<number>((resolve) => {
        st.once('response', (h) => resolve(Number(h[':status'])));
        st.once('close', () => resolve(0));
        setTimeout(() => resolve(0), 3000);
      })),
    );
    t.ok(statuses.filter((x) => x === 200).length <= 200, `at most 200 are served at once (${statuses.filter((x) => x === 200).length})`);
    s.destroy();
    await check(t, 'too many streams');
  });

  t.test('malformed CONNECT authorities are refused with 400', async (t) => {
    const s = await session();
    for (const authority of ['', 'no-port', `${target}:`, `${target}:99999`, '[::1', 'a'.repeat(5000), `${target}:8080:1`, '999.1.1.1:80']) {
      const stream = connectStream(s, authority);
      const status = await new Promise<number>((resolve) => {
        stream.once('response', (h) => resolve(Number(h[':status'])));
        stream.once('close', () => resolve(0));
      });
      t.ok(status === 400 || status === 0, `${JSON.stringify(authority.slice(0, 20))}: ${status === 0 ? 'stream reset' : status}`);
    }
    s.destroy();
    await check(t, 'malformed authorities');
  });

  t.test('an oversized header list', async (t) => {
    const s = await session();
    const stream = connectStream(s, `${target}:8080`, { 'x-big': 'x'.repeat(200_000) });
    const ended = await Promise.race([new Promise((r) => stream.once('close', () => r('stream closed'))), new Promise((r) => s.once('close', () => r('session closed'))), new Promise((r) => setTimeout(() => r('nothing'), 3000))]);
    t.not(ended, 'nothing', `the request was refused (${String(ended)})`);
    s.destroy();
    await check(t, 'oversized headers');
  });

  /** A TLS connection that has sent the HTTP/2 preface and an empty SETTINGS, for raw frames; what the
   * server sends is parsed into frames as it comes. */
  const rawSession = async (): Promise<{ socket: tls.TLSSocket; frames: { type: number; stream: number; payload: Buffer }[]; ended: Promise<void>; errors: string[] }> => {
    const socket = tls.connect({ host: target, port: 15008, ca: ca.rootPem, cert: svid.chainPem.join(''), key: svid.keyPem, ALPNProtocols: ['h2'], checkServerIdentity: () => undefined });
    const errors: string[] = [];
    socket.on('error', (err: NodeJS.ErrnoException) => errors.push(err.code ?? err.message));
    const ended = new Promise<void>((r) => {
      socket.once('end', () => r());
      socket.once('close', () => r());
    });
    await once(socket, 'secureConnect');
    const frames: { type: number; stream: number; payload: Buffer }[] = [];
    let pending = Buffer.alloc(0);
    socket.on('data', (c: Buffer) => {
      pending = Buffer.concat([pending, c]);
      while (pending.length >= 9 && pending.length >= 9 + pending.readUIntBE(0, 3)) {
        const length = pending.readUIntBE(0, 3);
        frames.push({ type: pending[3] ?? -1, stream: pending.readUInt32BE(5) & 0x7fffffff, payload: pending.subarray(9, 9 + length) });
        pending = pending.subarray(9 + length);
      }
    });
    socket.write(Buffer.concat([Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'), frame(FRAME.settings, 0, 0, Buffer.alloc(0))]));
    return { socket, frames, ended, errors };
  };
  /** Writes frames until the server closes the connection or count is reached; how many went out. */
  const flood = async (socket: tls.TLSSocket, count: number, next: () => Buffer): Promise<number> => {
    let sent = 0;
    while (sent < count && !socket.destroyed && socket.writable) {
      sent += 1;
      if (!socket.write(next())) {
        await new Promise<void>((r) => {
          socket.once('drain', () => r());
          socket.once('close', () => r());
          socket.once('error', () => r());
        });
      }
    }
    return sent;
  };
  const GOAWAY = 0x7;

  t.test('CONTINUATION flood: a header block that never ends (CVE-2024-27983 class)', async (t) => {
    const { socket, frames, ended, errors } = await rawSession();
    socket.write(frame(FRAME.headers, 0, 1, literalIndexedName(2, 'CONNECT')));
    const field = Buffer.concat([Buffer.from([0x00, 3]), Buffer.from('x-a'), Buffer.from([100]), Buffer.alloc(100, 0x61)]);
    const sent = await flood(socket, 100_000, () => frame(FRAME.continuation, 0, 1, field));
    const closed = await Promise.race([ended.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), 5000))]);
    // How it is cut varies with timing: a GOAWAY; a reset, since the daemon closes with the flood unread
    // and a RST can overtake the GOAWAY; or, twice under a parallel suite, a close with no GOAWAY read.
    const how = frames.some((f) => f.type === GOAWAY) ? 'GOAWAY' : errors.includes('ECONNRESET') ? 'reset' : closed ? 'closed' : 'not at all';
    t.not(how, 'not at all', `the daemon cut the connection: ${how} (after ${sent} CONTINUATION frames were written)`);
    t.ok(sent < 100_000, 'and closed the connection before the flood ended');
    socket.destroy();
    await check(t, 'CONTINUATION flood');
  });

  t.test('empty DATA frames flood on an open tunnel', async (t) => {
    const { socket, frames, ended, errors } = await rawSession();
    const block = Buffer.concat([literalIndexedName(2, 'CONNECT'), literalIndexedName(1, `${target}:8080`)]);
    socket.write(frame(FRAME.headers, END_HEADERS, 1, block));
    // HPACK 0x88 is ":status: 200" from the static table: the tunnel is open before the flood.
    await waitUntil(() => frames.some((f) => f.type === FRAME.headers && f.stream === 1), 5000);
    t.equal(frames.find((f) => f.type === FRAME.headers && f.stream === 1)?.payload[0], 0x88, 'the CONNECT was answered 200');
    const sent = await flood(socket, 100_000, () => frame(FRAME.data, 0, 1, Buffer.alloc(0)));
    const closed = await Promise.race([ended.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), 2000))]);
    // As with the CONTINUATION flood: the daemon closes with the flood unread, so a RST can overtake its
    // GOAWAY (seen once in CI: the flood stopped at 5464 frames and no GOAWAY was read).
    const how = frames.some((f) => f.type === GOAWAY) ? 'GOAWAY' : errors.includes('ECONNRESET') ? 'reset' : closed ? 'closed' : 'not at all';
    t.not(how, 'not at all', `the daemon cut the connection: ${how} (after ${sent} empty DATA frames were written)`);
    t.ok(sent < 100_000, 'and closed the connection before the flood ended');
    socket.destroy();
    await check(t, 'empty DATA flood');
  });

  t.test('PING and SETTINGS as fast as the client library sends them', async (t) => {
    const s = await session();
    let pings = 0;
    for (let i = 0; i < 2000 && !s.destroyed; i++) {
      try {
        s.ping(() => undefined);
        pings += 1;
      } catch {
        await new Promise((r) => setImmediate(r)); // too many outstanding: let them come back
      }
      try {
        s.settings({ initialWindowSize: 65535 + (i % 100) });
      } catch {
        // too many unacknowledged SETTINGS
      }
    }
    t.ok(pings > 0, `${pings} pings sent`);
    s.destroy();
    await check(t, 'ping and settings');
  });

  t.test('regression: a TLS handshake dripped one byte every 2 s is cut at the handshake deadline', async (t) => {
    const s = net.connect({ host: target, port: 15008 });
    s.on('error', () => undefined);
    await once(s, 'connect');
    s.resume();
    const hello = Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03]);
    let sent = 0;
    const drip = setInterval(() => {
      if (!s.destroyed) s.write(hello.subarray(sent % hello.length, (sent % hello.length) + 1));
      sent += 1;
    }, 2000);
    const started = Date.now();
    // A plain listener, not once(): the cut may come as a reset (a dripped byte unread when the daemon
    // closes), and once() would reject on that 'error' instead of waiting for the close.
    await Promise.race([new Promise((r) => s.once('close', r)), new Promise((r) => setTimeout(r, 20_000))]);
    clearInterval(drip);
    t.ok(s.destroyed, `the server closed it after ${Date.now() - started} ms and ${sent} bytes (an idle timer never fires)`);
    s.destroy();
    await check(t, 'dripped handshake');
  });

  t.test('slowloris: 50 tunnels opened and never read or written', async (t) => {
    const s = await session();
    const streams = Array.from({ length: 50 }, () => connectStream(s, `${target}:8080`));
    await Promise.all(streams.map((st) => new Promise((r) => st.once('response', r))));
    await check(t, 'while they sit open');
    s.destroy();
  });

  t.test('descriptors return to where they started', async (t) => {
    const deadline = Date.now() + 10_000;
    while (fds() > Math.max(baseline, afterRapidReset) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    const extra = fdTargets().filter((x) => !before.includes(x));
    // Every abuse after the rapid reset (whose open finding is reported there) gave back all it took.
    t.ok(fds() <= Math.max(baseline, afterRapidReset), `${fds()} descriptors open, ${baseline} before the abuse${extra.length > 0 ? `; new: ${extra.join(' ')}` : ''}`);
    t.ok(alive(), 'and the daemon never died');
  });
});
