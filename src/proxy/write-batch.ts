// Writes to a TCP socket batched per turn of the event loop. The first chunk a socket is given in a turn
// goes out at once (a request or an answer waits for nothing); the ones after it in the same turn are
// corked and leave together in one writev when the turn ends. An HBONE stream hands over its DATA in
// pieces cut at TLS record boundaries (two per 16 KiB frame), several per socket read, and each write to
// a pod's socket is one system call and one packet through its veth: 8 KiB a write on average in one
// bulk stream before this (strace, bench/README.md).
import type { Writable } from 'node:stream';

/** Counts turns of the event loop in which anything was written; one Immediate per such turn. */
let turn = 0;
let turnEnding = false;
const corkedThisTurn: Writable[] = [];

function endTurn(): void {
  turn += 1;
  turnEnding = false;
  const corked = corkedThisTurn.splice(0);
  for (const w of corked) w.uncork();
}

function thisTurn(): number {
  if (!turnEnding) {
    turnEnding = true;
    setImmediate(endTurn);
  }
  return turn;
}

/** A writer of one direction of a copy into `to`; returns what to.write() returns (false: wait for 'drain'). */
export function batchedWriter(to: Writable): (chunk: Buffer) => boolean {
  let lastTurn = -1;
  let corked = false;
  return (chunk) => {
    const now = thisTurn();
    if (now !== lastTurn) {
      lastTurn = now;
      corked = false;
    } else if (!corked) {
      corked = true;
      to.cork();
      corkedThisTurn.push(to);
    }
    return to.write(chunk);
  };
}
