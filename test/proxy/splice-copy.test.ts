// The kernel's copy of a proxied plain TCP connection (splice(2) through pipes), between real loopback
// sockets set up as the daemon sets them up: bytes exact and in order both ways, half-close, resets,
// counts, a reader that stops stops the writer, and a socket closed by someone else ends the splice.
import { createHash, randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import t, { type Test } from 'tap';
import { SocketSplicer } from '../../src/datapath/socket-splicer.js';
import type { CopyResult } from '../../src/proxy/copy.js';
import { copyConnection, SPLICE_AFTER, spliceBidirectional } from '../../src/proxy/splice-copy.js';
import { PlainSocketFactory } from '../../src/proxy/sockets.js';

const HOST = '127.234.0.1';
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

interface Proxy {
  readonly port: number;
  /** Each connection's splice, in order, with the two sockets the proxy holds. */
  readonly conns: { spliced: boolean; done: Promise<CopyResult>; client: net.Socket; upstream: net.Socket }[];
}

/** An upstream connection Node has not read from: paused before its first read, which starts on 'connect'. */
function connectUnread(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: HOST, port, allowHalfOpen: true });
    s.once('error', reject);
    s.once('connect', () => {
      s.pause();
      resolve(s);
    });
  });
}

/** Spliced from the first byte: the client accepted paused, the upstream unread. */
async function proxy(t: Test, splicer: SocketSplicer, upstreamPort: number): Promise<Proxy> {
  const conns: Proxy['conns'] = [];
  const sockets = new PlainSocketFactory();
  const server = await sockets.listen({ host: HOST, port: 0, pauseOnConnect: true }, (client) => {
    client.on('error', () => undefined);
    void connectUnread(upstreamPort).then((upstream) => {
      const r = spliceBidirectional(client, upstream, splicer);
      r.done.catch(() => undefined);
      conns.push({ ...r, client, upstream });
    });
  });
  t.teardown(() => server.close());
  return { port: (server.address() as net.AddressInfo).port, conns };
}

/** The daemon's way: its own copy first, the kernel's once a direction passes SPLICE_AFTER. */
async function hybridProxy(t: Test, splicer: SocketSplicer, upstreamPort: number): Promise<{ port: number; done: Promise<CopyResult>[] }> {
  const done: Promise<CopyResult>[] = [];
  const sockets = new PlainSocketFactory();
  const server = await sockets.listen({ host: HOST, port: 0, pauseOnConnect: true }, (client) => {
    client.on('error', () => undefined);
    void sockets.connect({ ip: HOST, port: upstreamPort }, undefined, AbortSignal.timeout(5000)).then((upstream) => {
      const d = copyConnection(splicer, client, upstream, { aToB: 0, bToA: 0 });
      d.catch(() => undefined);
      done.push(d);
    });
  });
  t.teardown(() => server.close());
  return { port: (server.address() as net.AddressInfo).port, done };
}

async function listen(t: Test, onConnection: (s: net.Socket) => void): Promise<number> {
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    s.on('error', () => undefined);
    onConnection(s);
  });
  await new Promise<void>((r) => server.listen(0, HOST, r));
  t.teardown(() => server.close());
  return (server.address() as net.AddressInfo).port;
}

/** A server that answers what it read with its SHA-256 and a random payload of the same size (kept by size). */
async function answeringServer(t: Test): Promise<{ upstream: number; replies: Map<number, Buffer> }> {
  const replies = new Map<number, Buffer>();
  const upstream = await listen(t, (s) => {
    void readAll(s).then((got) => {
      const reply = randomBytes(got.length);
      replies.set(got.length, reply);
      s.end(Buffer.concat([Buffer.from(sha(got)), reply]));
    });
  });
  return { upstream, replies };
}

function readAll(s: net.Socket): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    s.on('data', (c: Buffer) => chunks.push(c));
    s.on('end', () => resolve(Buffer.concat(chunks)));
    s.on('error', reject);
  });
}

async function waitUntil(pred: () => boolean): Promise<void> {
  while (!pred()) await new Promise((r) => setTimeout(r, 5));
}

function connect(port: number): net.Socket {
  const c = net.connect({ host: HOST, port, allowHalfOpen: true });
  c.on('error', () => undefined);
  return c;
}

t.test('splice', async (t) => {
  const splicer = SocketSplicer.open();
  t.teardown(() => splicer.close());

  t.test('bytes exact both ways, whenever the client sends; the counts are what each side sent', async (t) => {
    const { upstream, replies } = await answeringServer(t);
    const p = await proxy(t, splicer, upstream);
    for (const size of [1, 16 * 1024 - 1, 16 * 1024, 16 * 1024 + 1, 1 << 20, 64 << 20]) {
      for (const when of ['at once', 'once connected'] as const) {
        const payload = randomBytes(size);
        const c = connect(p.port);
        // At once: bytes and FIN are queued before the splice starts. Once connected: they flow through it.
        if (when === 'at once') c.end(payload);
        else c.once('connect', () => setTimeout(() => c.end(payload), 20));
        const back = await readAll(c);
        t.equal(back.subarray(0, 64).toString(), sha(payload), `${size} bytes sent ${when} reached the server exactly`);
        t.ok(back.subarray(64).equals(replies.get(size) ?? Buffer.alloc(0)), `and its ${size}-byte answer came back exactly`);
        const r = p.conns.at(-1);
        t.ok(r?.spliced, 'spliced by the kernel');
        t.same(await r?.done, { aToB: size, bToA: 64 + size }, 'counts equal what each side sent');
      }
    }
    t.equal(splicer.spliced, 0, 'every finished connection left the splicer');
  });

  t.test('a client that half-closes still gets the answer sent after its FIN', async (t) => {
    const upstream = await listen(t, (s) => {
      s.on('data', () => undefined);
      s.once('end', () => setTimeout(() => s.end('reply after your FIN'), 50));
    });
    const p = await proxy(t, splicer, upstream);
    const c = connect(p.port);
    c.once('connect', () => setTimeout(() => c.end('request'), 50));
    t.equal(String(await readAll(c)), 'reply after your FIN');
    t.same(await p.conns[0]?.done, { aToB: 7, bToA: 20 });
  });

  t.test('a server that speaks first is heard, and a dialogue goes both ways', async (t) => {
    const upstream = await listen(t, (s) => {
      s.write('220 hello\r\n');
      s.on('data', (d: Buffer) => s.write(String(d).includes('QUIT') ? '221 bye\r\n' : `250 ${String(d).trim()}\r\n`));
      s.on('end', () => s.end());
    });
    const p = await proxy(t, splicer, upstream);
    const c = connect(p.port);
    const lines: string[] = [];
    c.setEncoding('utf8');
    const said = ['HELO a\r\n', 'MAIL b\r\n', 'QUIT\r\n'];
    c.on('data', (d: string) => {
      lines.push(d);
      const next = said.shift();
      if (next !== undefined) c.write(next);
      else c.end();
    });
    await new Promise((r) => c.once('end', r));
    t.same(lines, ['220 hello\r\n', '250 HELO a\r\n', '250 MAIL b\r\n', '221 bye\r\n']);
  });

  t.test('a reset on either side resets the other', async (t) => {
    const serverSide: net.Socket[] = [];
    const serverSaw: string[] = [];
    const upstream = await listen(t, (s) => {
      serverSide.push(s);
      s.on('data', () => undefined);
      s.on('error', (e: NodeJS.ErrnoException) => serverSaw.push(e.code ?? e.message));
    });
    const p = await proxy(t, splicer, upstream);
    const c1 = connect(p.port);
    await new Promise((r) => c1.once('connect', r));
    c1.write('x');
    await new Promise((r) => setTimeout(r, 100));
    const closed = new Promise((r) => serverSide[0]?.once('close', r));
    c1.resetAndDestroy();
    await closed;
    t.same(serverSaw, ['ECONNRESET'], 'the client reset: the server got a reset, never a FIN it could take for the end');
    await t.rejects(p.conns[0]?.done.then(() => undefined) ?? Promise.resolve(), 'and the copy reports it');

    const c2 = connect(p.port);
    const clientSaw = new Promise<string>((r) => c2.once('error', (e: NodeJS.ErrnoException) => r(e.code ?? e.message)));
    await new Promise((r) => c2.once('connect', r));
    c2.write('y');
    await new Promise((r) => setTimeout(r, 100));
    serverSide[1]?.resetAndDestroy();
    t.equal(await clientSaw, 'ECONNRESET', 'the server reset: the client got a reset');
    t.equal(splicer.spliced, 0);
  });

  t.test('a reader that stops stops the writer; nothing is lost or reordered when it reads again', async (t) => {
    let serverSide: net.Socket | undefined;
    const upstream = await listen(t, (s) => {
      serverSide = s;
      s.pause();
    });
    const p = await proxy(t, splicer, upstream);
    const c = connect(p.port);
    await new Promise((r) => c.once('connect', r));
    const chunk = randomBytes(1 << 20);
    const hash = createHash('sha256');
    let written = 0;
    let stop = false;
    const pump = (): void => {
      for (;;) {
        if (stop) return;
        hash.update(chunk);
        written += chunk.length;
        if (!c.write(chunk)) break;
      }
      c.once('drain', pump);
    };
    pump();
    await new Promise((r) => setTimeout(r, 1500));
    stop = true;
    t.ok(written < 64 << 20, `the writer was held back: ${(written / 2 ** 20).toFixed(0)} MiB written in 1.5 s towards a reader that reads nothing`);
    c.end();
    const got = await readAll(serverSide?.resume() ?? c);
    t.equal(got.length, written, 'everything written arrives once the reader reads');
    t.equal(sha(got), hash.digest('hex'), 'in order');
    serverSide?.end();
    c.resume();
    t.same(await p.conns[0]?.done, { aToB: written, bToA: 0 }, 'counted');
  });

  t.test('a socket closed by its owner (a policy change) ends the splice and resets the other side', async (t) => {
    let serverClosed: Promise<unknown> = Promise.resolve();
    const upstream = await listen(t, (s) => {
      s.on('data', () => undefined);
      serverClosed = new Promise((r) => s.once('end', r));
    });
    const p = await proxy(t, splicer, upstream);
    const c = connect(p.port);
    const clientSaw = new Promise<string>((r) => c.once('error', (e: NodeJS.ErrnoException) => r(e.code ?? e.message)));
    await new Promise((r) => c.once('connect', r));
    c.write('before');
    await new Promise((r) => setTimeout(r, 100));
    p.conns[0]?.upstream.destroy(new Error('closed after a policy change'));
    t.equal(await clientSaw, 'ECONNRESET', 'the client got a reset');
    await t.rejects(p.conns[0]?.done.then(() => undefined) ?? Promise.resolve());
    t.equal(splicer.spliced, 0, 'the pair left the splicer');
    await serverClosed; // the pod's side ended with the socket its owner closed
    // Descriptors are reused at once: the next connections must not be disturbed by the closed pair.
    const again = await listen(t, (s) => void readAll(s).then((got) => s.end(sha(got))));
    const p2 = await proxy(t, splicer, again);
    const results = await Promise.all(
      Array.from({ length: 20 }, async () => {
        const payload = randomBytes(100_000);
        const c2 = connect(p2.port);
        c2.end(payload);
        return String(await readAll(c2)) === sha(payload);
      }),
    );
    t.same(results, Array(20).fill(true), '20 more connections right after it, each exact');
  });

  t.test("the daemon's copy hands a connection to the kernel once it carries bulk, losing nothing", async (t) => {
    const { upstream, replies } = await answeringServer(t);
    const p = await hybridProxy(t, splicer, upstream);
    for (const size of [1, 1000, SPLICE_AFTER - 1, SPLICE_AFTER, SPLICE_AFTER + 1, 1 << 20, 64 << 20]) {
      let most = 0;
      const watch = setInterval(() => (most = Math.max(most, splicer.spliced)), 1);
      const payload = randomBytes(size);
      const c = connect(p.port);
      // Written in pieces, as a client streams: the handover happens while bytes flow.
      c.once('connect', () => {
        let off = 0;
        const next = (): void => {
          while (off < size) {
            const piece = payload.subarray(off, off + 65536);
            off += piece.length;
            if (!c.write(piece)) return void c.once('drain', next);
          }
          c.end();
        };
        next();
      });
      const back = await readAll(c);
      clearInterval(watch);
      t.equal(back.subarray(0, 64).toString(), sha(payload), `${size} bytes reached the server exactly`);
      t.ok(back.subarray(64).equals(replies.get(size) ?? Buffer.alloc(0)), `and its ${size}-byte answer came back exactly`);
      t.same(await p.done.at(-1), { aToB: size, bToA: 64 + size }, 'counts cover both movers');
      if (size < SPLICE_AFTER) t.equal(most, 0, `${size} bytes: the daemon's copy all along`);
      if (size >= 1 << 20) t.ok(most > 0, `${size} bytes: handed to the kernel`);
    }
  });

  t.test('a request and its answer below the threshold never leave the daemon, a reset still resets', async (t) => {
    const serverSide: net.Socket[] = [];
    const upstream = await listen(t, (s) => {
      serverSide.push(s);
      s.on('data', (d: Buffer) => s.write(d));
    });
    const p = await hybridProxy(t, splicer, upstream);
    const c = connect(p.port);
    const clientSaw = new Promise<string>((r) => c.once('error', (e: NodeJS.ErrnoException) => r(e.code ?? e.message)));
    await new Promise((r) => c.once('connect', r));
    for (let i = 0; i < 20; i++) {
      c.write(`ping ${i}`);
      await new Promise((r) => c.once('data', r));
    }
    t.equal(splicer.spliced, 0, 'not spliced');
    serverSide[0]?.resetAndDestroy();
    t.equal(await clientSaw, 'ECONNRESET');
  });

  t.test("idle spliced connections in four data paths leave libuv's pool to other work", async (t) => {
    // Each splicer's wait holds a pool thread; four of them (four workers) hold all four. File reads,
    // WebCrypto and DNS must still get through between waits, not once a second.
    const upstream = await listen(t, (s) => s.on('data', () => undefined));
    const splicers = Array.from({ length: 4 }, () => SocketSplicer.open());
    t.teardown(() => splicers.forEach((s) => s.close()));
    for (const sp of splicers) {
      const p = await proxy(t, sp, upstream);
      const c = connect(p.port);
      await new Promise((r) => c.once('connect', r));
      await waitUntil(() => p.conns.length === 1);
      t.teardown(() => c.destroy());
    }
    t.same(splicers.map((s) => s.spliced), [1, 1, 1, 1], 'four idle spliced connections, one in each');
    const slowest = Math.max(
      ...(await Promise.all(
        Array.from({ length: 5 }, async () => {
          const t0 = Date.now();
          await readFile(fileURLToPath(import.meta.url));
          return Date.now() - t0;
        }),
      )),
    );
    t.ok(slowest < 500, `five file reads through the pool, the slowest in ${slowest} ms (a wait of a second would hold them a second)`);
  });

  t.test('a splicer that will not take the sockets (closed) leaves the connection to the daemon', async (t) => {
    const { upstream, replies } = await answeringServer(t);
    const closed = SocketSplicer.open();
    closed.close();
    const p = await proxy(t, closed, upstream);
    const payload = randomBytes(300_000);
    const c = connect(p.port);
    c.once('connect', () => setTimeout(() => c.end(payload), 20));
    const back = await readAll(c);
    t.equal(back.subarray(0, 64).toString(), sha(payload), 'the request arrived exactly');
    t.ok(back.subarray(64).equals(replies.get(payload.length) ?? Buffer.alloc(0)), 'and the answer');
    t.equal(p.conns[0]?.spliced, false, 'copied by the daemon');
    t.same(await p.conns[0]?.done, { aToB: payload.length, bToA: 64 + payload.length });
  });

  t.test('a socket the daemon has read from is not spliced, and the daemon copies it', async (t) => {
    const upstream = await listen(t, (s) => void readAll(s).then((got) => s.end(sha(got))));
    const sockets = new PlainSocketFactory();
    const results: { spliced: boolean; done: Promise<CopyResult> }[] = [];
    const server = await sockets.listen({ host: HOST, port: 0 }, (client) => {
      // Not paused: Node is reading it (as a SOCKS5 client whose request the daemon has read).
      void connectUnread(upstream).then((up) => results.push(spliceBidirectional(client, up, splicer)));
    });
    t.teardown(() => server.close());
    const payload = randomBytes(200_000);
    const c = connect((server.address() as net.AddressInfo).port);
    c.end(payload);
    t.equal(String(await readAll(c)), sha(payload), 'exact');
    t.equal(results[0]?.spliced, false, 'copied by the daemon');
  });
});
