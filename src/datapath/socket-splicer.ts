// Moves the bytes of plain TCP connections between their two sockets with splice(2), through a pipe per
// direction, so they never enter JavaScript: the kernel hands pages from one socket to the other. One
// epoll set (edge-triggered) watches every spliced socket; epoll_wait runs on a libuv pool thread and
// the splices, which never block, run here when it reports. Backpressure is the kernel's: a full pipe
// stops the reads from its source, whose receive window then closes.
import { DatapathError } from './errors.js';
import { c, errno } from './ffi.js';

const EPOLL_CTL_ADD = 1;
const EPOLL_CTL_DEL = 2;
const EPOLLIN = 0x1;
const EPOLLOUT = 0x4;
const EPOLLRDHUP = 0x2000;
const EPOLLET = 0x80000000;
/** struct epoll_event is packed on x86-64: u32 events, u64 data. */
const EVENT_SIZE = 12;
const MAX_EVENTS = 256;
/** Empty pipes kept for the next burst: a pipe is held only while bytes are in it. */
const SPARE_PIPES = 64;
/**
 * A wait with nothing to report ends after this (and is not renewed while nothing is spliced). It holds
 * one of libuv's four pool threads while it lasts, which file reads, WebCrypto and every worker's own
 * splicer also need: short waits let their work in between (UV_THREADPOOL_SIZE cannot be raised once
 * Node runs).
 */
const WAIT_MS = 20;
const O_NONBLOCK = 0o4000;
const O_CLOEXEC = 0o2000000;
const F_SETPIPE_SZ = 1031;
/** Bytes in flight per direction: the pipe's size (the default pipe-max-size allows it). */
export const PIPE_BYTES = 1 << 20;
const SPLICE_F_MOVE = 1;
const SPLICE_F_NONBLOCK = 2;
const SHUT_WR = 1;
const EAGAIN = 11;

export interface SpliceBytes {
  /** Bytes delivered from a to b. */
  aToB: number;
  bToA: number;
}

export interface SpliceWatcher {
  /**
   * Whether side 0 (a) or 1 (b) is still open. A socket closed by its owner has left the epoll set with
   * its descriptor, and that number may already be another socket's: it is never touched again.
   */
  open(side: 0 | 1): boolean;
  /** Both directions ended (each end's FIN carried on as a shutdown of the other). */
  done(bytes: SpliceBytes): void;
  /** A read or write failed (a reset, a broken pipe): the caller resets both sockets. */
  failed(err: Error, bytes: SpliceBytes): void;
}

export interface SpliceHandle {
  /** Stops splicing at once (a socket is being closed by someone else); no callback follows. */
  cancel(): SpliceBytes;
}

/** One direction: src's bytes go through the pipe to dst. */
interface Direction {
  readonly src: number;
  readonly dst: number;
  pipe: [number, number] | undefined;
  inPipe: number;
  eof: boolean;
  shut: boolean;
  moved: number;
}

interface Pair {
  readonly fds: [number, number];
  readonly ab: Direction;
  readonly ba: Direction;
  readonly watcher: SpliceWatcher;
}

function direction(src: number, dst: number): Direction {
  return { src, dst, pipe: undefined, inPipe: 0, eof: false, shut: false, moved: 0 };
}

export class SocketSplicer {
  readonly #epfd: number;
  readonly #pairs = new Map<number, Pair>();
  readonly #events = Buffer.alloc(EVENT_SIZE * MAX_EVENTS);
  readonly #spare: [number, number][] = [];
  #nextId = 1;
  #waiting = false;
  #closed = false;

  private constructor(epfd: number) {
    this.#epfd = epfd;
  }

  static open(): SocketSplicer {
    const epfd = c.epollCreate(O_CLOEXEC) as number;
    if (epfd < 0) throw new DatapathError('DATAPATH_SOCKET', 'epoll_create1', errno());
    return new SocketSplicer(epfd);
  }

  get spliced(): number {
    return this.#pairs.size;
  }

  /** Starts moving bytes between two connected, non-blocking sockets nothing else reads or writes now. */
  add(a: number, b: number, watcher: SpliceWatcher): SpliceHandle {
    if (this.#closed) throw new DatapathError('DATAPATH_SOCKET', 'the splicer is closed');
    const id = this.#nextId++;
    const pair: Pair = { fds: [a, b], ab: direction(a, b), ba: direction(b, a), watcher };
    for (const [i, fd] of pair.fds.entries()) {
      const ev = Buffer.alloc(EVENT_SIZE);
      ev.writeUInt32LE((EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET) >>> 0, 0);
      ev.writeBigUInt64LE(BigInt(id * 2 + i), 4);
      if ((c.epollCtl(this.#epfd, EPOLL_CTL_ADD, fd, ev) as number) !== 0) {
        const e = errno();
        if (i === 1) c.epollCtl(this.#epfd, EPOLL_CTL_DEL, a, null);
        throw new DatapathError('DATAPATH_SOCKET', 'epoll_ctl ADD', e);
      }
    }
    this.#pairs.set(id, pair);
    // Bytes may be waiting already (a client's request): no need to wait for the first report.
    this.#run(id, pair);
    this.#wait();
    return {
      cancel: () => {
        this.#remove(id);
        return this.#bytes(pair);
      },
    };
  }

  /** Ends the splicer: pairs still open are failed, so that their owners reset them. */
  close(): void {
    this.#closed = true;
    for (const [id, pair] of [...this.#pairs]) {
      this.#remove(id);
      pair.watcher.failed(new DatapathError('DATAPATH_SOCKET', 'the splicer closed'), this.#bytes(pair));
    }
    for (const [r, w] of this.#spare.splice(0)) {
      c.close(r);
      c.close(w);
    }
    // The pool thread may still be in epoll_wait on this set: it is closed when that wait returns.
    if (!this.#waiting) c.close(this.#epfd);
  }

  #wait(): void {
    if (this.#waiting || this.#closed || this.#pairs.size === 0) return;
    this.#waiting = true;
    c.epollWait.async(this.#epfd, this.#events, MAX_EVENTS, WAIT_MS, (err: unknown, n: number) => {
      this.#waiting = false;
      if (this.#closed) {
        c.close(this.#epfd);
        return;
      }
      if (err === null && n > 0) {
        const ready = new Set<number>();
        for (let i = 0; i < n; i++) ready.add(Number(this.#events.readBigUInt64LE(i * EVENT_SIZE + 4) >> 1n));
        for (const id of ready) {
          const pair = this.#pairs.get(id);
          if (pair !== undefined) this.#run(id, pair);
        }
      }
      this.#wait();
    });
  }

  #run(id: number, pair: Pair): void {
    // Closed under us: its owner's close handling ends the copy.
    if (!pair.watcher.open(0) || !pair.watcher.open(1)) return this.#remove(id);
    try {
      this.#step(pair.ab);
      this.#step(pair.ba);
    } catch (err) {
      this.#remove(id);
      pair.watcher.failed(err as Error, this.#bytes(pair));
      return;
    }
    if (pair.ab.shut && pair.ba.shut) {
      this.#remove(id);
      pair.watcher.done(this.#bytes(pair));
    }
  }

  /** As far as this direction can go without blocking: the pipe out to dst, then src into the pipe. */
  #step(d: Direction): void {
    for (;;) {
      if (d.inPipe > 0) {
        const n = this.#splice(d.pipe?.[0] ?? -1, d.dst, d.inPipe, 'write');
        if (n < 0) return; // dst is full: its EPOLLOUT comes back here
        d.inPipe -= n;
        d.moved += n;
        continue;
      }
      if (d.eof) {
        this.#release(d);
        if (!d.shut) {
          d.shut = true;
          c.shutdown(d.dst, SHUT_WR); // ENOTCONN (the peer is gone) shows on its reads
        }
        return;
      }
      d.pipe ??= this.#spare.pop() ?? this.#pipe();
      const n = this.#splice(d.src, d.pipe[1], PIPE_BYTES, 'read');
      if (n < 0) {
        this.#release(d); // nothing to read: src's EPOLLIN comes back here
        return;
      }
      if (n === 0) d.eof = true;
      d.inPipe += n;
    }
  }

  /** Bytes moved, or -1 for "would block". */
  #splice(from: number, to: number, len: number, what: 'read' | 'write'): number {
    const n = Number(c.splice(from, null, to, null, len, SPLICE_F_MOVE | SPLICE_F_NONBLOCK));
    if (n >= 0) return n;
    const e = errno();
    if (e === EAGAIN) return -1;
    throw new DatapathError('DATAPATH_SOCKET', `splice (${what})`, e);
  }

  #pipe(): [number, number] {
    const fds = [0, 0];
    if ((c.pipe2(fds, O_NONBLOCK | O_CLOEXEC) as number) !== 0) throw new DatapathError('DATAPATH_SOCKET', 'pipe2', errno());
    c.fcntl(fds[1] ?? -1, F_SETPIPE_SZ, PIPE_BYTES); // a smaller pipe (the default 64 KiB) still works
    return [fds[0] ?? -1, fds[1] ?? -1];
  }

  /** An empty pipe goes back to the spares (or is closed); one with bytes in it is dropped with them. */
  #release(d: Direction): void {
    if (d.pipe === undefined) return;
    if (d.inPipe === 0 && this.#spare.length < SPARE_PIPES && !this.#closed) this.#spare.push(d.pipe);
    else {
      c.close(d.pipe[0]);
      c.close(d.pipe[1]);
    }
    d.pipe = undefined;
    d.inPipe = 0;
  }

  #bytes(pair: Pair): SpliceBytes {
    return { aToB: pair.ab.moved, bToA: pair.ba.moved };
  }

  #remove(id: number): void {
    const pair = this.#pairs.get(id);
    if (pair === undefined) return;
    this.#pairs.delete(id);
    pair.fds.forEach((fd, side) => {
      if (pair.watcher.open(side as 0 | 1)) c.epollCtl(this.#epfd, EPOLL_CTL_DEL, fd, null);
    });
    this.#release(pair.ab);
    this.#release(pair.ba);
  }
}
