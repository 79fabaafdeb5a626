// Writes to a TCP socket batched per turn of the event loop: the first goes out at once, the rest of the
// turn leave together, bytes exact and in order, an end in the same turn after all of them.
import type net from 'node:net';
import { setImmediate as nextTurn } from 'node:timers/promises';
import t from 'tap';
import { batchedWriter } from '../../src/proxy/write-batch.js';
import { socketPair } from '../helpers/socket-pair.js';

/** A socket pair closed when the test ends. */
async function pair(): Promise<[net.Socket, net.Socket]> {
  const [client, peer] = await socketPair('127.211.0.2');
  t.teardown(() => {
    client.destroy();
    peer.destroy();
  });
  return [client, peer];
}

function received(s: net.Socket): Promise<Buffer> {
  const chunks: Buffer[] = [];
  s.on('data', (c: Buffer) => chunks.push(c));
  return new Promise((resolve) => s.once('end', () => resolve(Buffer.concat(chunks))));
}

t.test('the first chunk of a turn goes out at once, the rest of the turn in one writev', async (t) => {
  const [to, peer] = await pair();
  const got = received(peer);
  const writevs: number[] = [];
  const writev = (to as unknown as { _writev: (chunks: { chunk: Buffer }[], cb: () => void) => void })._writev.bind(to);
  (to as unknown as { _writev: typeof writev })._writev = (chunks, cb) => {
    writevs.push(chunks.length);
    writev(chunks, cb);
  };
  const write = batchedWriter(to);
  write(Buffer.from('a'));
  t.equal(to.writableCorked, 0, 'a lone chunk is not held back');
  write(Buffer.alloc(16384, 'b'));
  write(Buffer.alloc(16385, 'c'));
  t.equal(to.writableCorked, 1, 'the later ones of the turn wait for its end');
  await nextTurn();
  t.equal(to.writableCorked, 0);
  t.same(writevs, [2], 'they left in one writev');
  write(Buffer.from('d'));
  t.equal(to.writableCorked, 0, 'the first chunk of the next turn goes at once again');
  write(Buffer.from('e'));
  to.end();
  const bytes = await got;
  t.equal(bytes.length, 1 + 16384 + 16385 + 2);
  t.equal(bytes.toString('latin1'), 'a' + 'b'.repeat(16384) + 'c'.repeat(16385) + 'de', 'in order, and before the end that followed them in the same turn');
});

t.test('two sockets written in one turn each get their first chunk out at once', async (t) => {
  const [one, peerOne] = await pair();
  const [two, peerTwo] = await pair();
  const gotOne = received(peerOne);
  const gotTwo = received(peerTwo);
  const writeOne = batchedWriter(one);
  const writeTwo = batchedWriter(two);
  writeOne(Buffer.from('1'));
  writeTwo(Buffer.from('2'));
  t.equal(one.writableCorked + two.writableCorked, 0);
  writeOne(Buffer.from('1'));
  writeTwo(Buffer.from('2'));
  t.equal(one.writableCorked + two.writableCorked, 2);
  one.end();
  two.end();
  t.equal(String(await gotOne), '11');
  t.equal(String(await gotTwo), '22');
});
