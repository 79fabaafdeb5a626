// The daemon's worker threads, seen from its control plane: each gets the State and every SVID as they
// change, asks for a certificate it lacks, reports its counters for /metrics and config_dump, and is
// started again if it dies (its connections are lost; the others' go on, and the eBPF lookup finds only
// live listeners, so captured traffic never passes unproxied).
import type { EventEmitter } from 'node:events';
import { Worker } from 'node:worker_threads';
import type { Logger } from 'pino';
import type { MetricObjectWithValues, MetricValue } from 'prom-client';
import type { Config } from '../config/config.js';
import type { CaptureListener, DataplaneStats } from '../dataplane.js';
import type { CertManager } from '../identity/cert-manager.js';
import type { Svid } from '../identity/svid.js';
import type { State } from '../model/state.js';
import type { Snapshot } from '../model/types.js';
import type { FlowBus } from '../telemetry/flows.js';
import { forgetWorkerConnections } from '../proxy/limits.js';
import type { FromWorker, ToWorker, WorkerData } from './messages.js';

const ENTRY = new URL('./worker-main.js', import.meta.url);
const LISTEN_TIMEOUT_MS = 30_000;
const STATS_TIMEOUT_MS = 2000;
const RESTART_MIN_MS = 200;
const RESTART_MAX_MS = 10_000;

export interface WorkerSetOptions {
  readonly count: number;
  readonly config: Config;
  readonly state: State;
  readonly certs: CertManager;
  readonly flows: FlowBus;
  readonly logger: Logger;
  readonly logLevel: () => string;
  /** A worker's transparent listeners are up (again), with their descriptors. */
  readonly onListening?: (worker: number, listeners: readonly CaptureListener[]) => void;
}

interface Slot {
  readonly id: number;
  worker: Worker;
  listening: boolean;
  restarts: number;
  startedAt: number;
}

export interface WorkerReport {
  readonly id: number;
  readonly stats: DataplaneStats;
  readonly metrics: MetricObjectWithValues<MetricValue<string>>[];
}

export class WorkerSet {
  readonly #o: WorkerSetOptions;
  readonly #slots: Slot[] = [];
  readonly #asks = new Map<number, (r: WorkerReport | undefined) => void>();
  readonly #listeners = new Map<number, () => void>();
  readonly #drained = new Map<number, (cut: number) => void>();
  #nextAsk = 0;
  #closing = false;
  #takeover = false;
  /** The daemon-wide open-connection count the workers' limiters share. */
  readonly #sharedConnections: SharedArrayBuffer;

  readonly #unsubscribe: () => void;

  constructor(o: WorkerSetOptions) {
    this.#o = o;
    this.#sharedConnections = new SharedArrayBuffer(4 * (1 + o.count));
    const onState = (snapshot: Snapshot): void => this.#broadcast({ type: 'state', snapshot });
    const onSvid = (svid: Svid): void => this.#broadcast({ type: 'svid', svid });
    const watch = (): void => void setImmediate(() => this.#broadcast({ type: 'watch-flows', on: o.flows.watched }));
    o.state.on('change', onState);
    o.certs.on('updated', onSvid);
    // Followers come and go on the control plane's /flows: the workers build events only while there are some.
    const untyped = o.flows as unknown as EventEmitter;
    untyped.on('newListener', watch);
    untyped.on('removeListener', watch);
    this.#unsubscribe = () => {
      o.state.off('change', onState);
      o.certs.off('updated', onSvid);
      untyped.off('newListener', watch);
      untyped.off('removeListener', watch);
    };
  }

  get count(): number {
    return this.#o.count;
  }

  /** Workers whose listeners are up right now. */
  get listening(): number {
    return this.#slots.filter((s) => s.listening).length;
  }

  /** Starts every worker; resolves once all of them listen. */
  async start(opts: { takeover: boolean }): Promise<void> {
    this.#takeover = opts.takeover;
    await Promise.all(Array.from({ length: this.#o.count }, (_, id) => this.#spawn(id, 0)));
  }

  #spawn(id: number, restarts: number): Promise<void> {
    const { config, logger } = this.#o;
    const data: WorkerData = { id, config, logLevel: this.#o.logLevel(), takeover: this.#takeover && restarts === 0, sharedConnections: this.#sharedConnections };
    const worker = new Worker(ENTRY, { workerData: data });
    const slot: Slot = { id, worker, listening: false, restarts, startedAt: Date.now() };
    const existing = this.#slots.findIndex((s) => s.id === id);
    if (existing >= 0) this.#slots[existing] = slot;
    else this.#slots.push(slot);
    const listening = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`worker ${id}: not listening after ${LISTEN_TIMEOUT_MS} ms`)), LISTEN_TIMEOUT_MS);
      this.#listeners.set(id, () => {
        clearTimeout(timer);
        resolve();
      });
      worker.once('exit', () => clearTimeout(timer));
    });
    worker.on('message', (m: FromWorker) => this.#onMessage(slot, m));
    worker.on('error', (err) => logger.error({ worker: id, err: err.message }, 'worker failed'));
    worker.on('exit', (code) => this.#onExit(slot, code));
    // The State first: a worker serves nothing before it has it. Then every certificate there is.
    if (this.#o.state.loaded) worker.postMessage({ type: 'state', snapshot: this.#o.state.snapshot } satisfies ToWorker);
    for (const svid of this.#o.certs.snapshot()) worker.postMessage({ type: 'svid', svid } satisfies ToWorker);
    if (this.#o.flows.watched) worker.postMessage({ type: 'watch-flows', on: true } satisfies ToWorker);
    return listening;
  }

  #onMessage(slot: Slot, m: FromWorker): void {
    switch (m.type) {
      case 'listening':
        slot.listening = true;
        this.#o.onListening?.(slot.id, m.listeners);
        this.#listeners.get(slot.id)?.();
        return;
      case 'svid-request':
        this.#o.certs.get(m.identity).then(
          (svid) => slot.worker.postMessage({ type: 'svid-reply', id: m.id, svid } satisfies ToWorker),
          (err: Error) => slot.worker.postMessage({ type: 'svid-reply', id: m.id, error: err.message } satisfies ToWorker),
        );
        return;
      case 'stats':
        this.#asks.get(m.id)?.({ id: slot.id, stats: m.stats, metrics: m.metrics });
        return;
      case 'flow':
        this.#o.flows.publish(m.event);
        return;
      case 'drained':
        this.#drained.get(slot.id)?.(m.cut);
        return;
      case 'failed':
        this.#o.logger.error({ worker: slot.id, err: m.error }, 'worker could not listen');
        return;
    }
  }

  #onExit(slot: Slot, code: number): void {
    slot.listening = false;
    forgetWorkerConnections(this.#sharedConnections, slot.id);
    if (this.#closing || this.#slots.find((s) => s.id === slot.id) !== slot) return;
    // A worker that lived a while restarts at once; one that keeps dying waits longer each time.
    const restarts = Date.now() - slot.startedAt > 60_000 ? 0 : slot.restarts + 1;
    const delay = restarts === 0 ? 0 : Math.min(RESTART_MAX_MS, RESTART_MIN_MS * 2 ** (restarts - 1));
    this.#o.logger.error({ worker: slot.id, code, restartInMs: delay }, 'worker exited; its connections are lost, the others go on; starting it again');
    setTimeout(() => {
      if (!this.#closing) this.#spawn(slot.id, restarts).catch((err: Error) => this.#o.logger.error({ worker: slot.id, err: err.message }, 'worker restart failed'));
    }, delay).unref();
  }

  /** Every live worker's counters and pool, for /metrics and config_dump. */
  async reports(): Promise<WorkerReport[]> {
    const live = this.#slots.filter((s) => s.listening);
    const answers = await Promise.all(
      live.map(
        (slot) =>
          new Promise<WorkerReport | undefined>((resolve) => {
            const id = this.#nextAsk++;
            const timer = setTimeout(() => {
              this.#asks.delete(id);
              resolve(undefined);
            }, STATS_TIMEOUT_MS);
            this.#asks.set(id, (r) => {
              clearTimeout(timer);
              this.#asks.delete(id);
              resolve(r);
            });
            slot.worker.postMessage({ type: 'stats', id } satisfies ToWorker);
          }),
      ),
    );
    return answers.flatMap((a) => (a === undefined ? [] : [a]));
  }

  setLogLevel(level: string): void {
    this.#broadcast({ type: 'log-level', level });
  }

  /** Every worker stops accepting at once (a takeover: their queues move to the successor's listeners). */
  closeListeners(): void {
    this.#broadcast({ type: 'close-listeners' });
  }

  /** Drains every worker (no more restarts); resolves with the connections cut at the deadline. */
  async drain(deadlineMs: number): Promise<number> {
    this.#closing = true;
    this.#unsubscribe();
    const cuts = await Promise.all(
      this.#slots.map(
        (slot) =>
          new Promise<number>((resolve) => {
            const timer = setTimeout(() => void slot.worker.terminate().then(() => resolve(0)), deadlineMs + 5000);
            this.#drained.set(slot.id, (cut) => {
              clearTimeout(timer);
              resolve(cut);
            });
            slot.worker.once('exit', () => {
              clearTimeout(timer);
              resolve(0);
            });
            slot.worker.postMessage({ type: 'drain', deadlineMs } satisfies ToWorker);
          }),
      ),
    );
    return cuts.reduce((a, b) => a + b, 0);
  }

  /** Ends worker n as a crash would (admin POST /workers/kill): its connections are lost, and it is started again. */
  kill(n: number): boolean {
    const slot = this.#slots.find((s) => s.id === n);
    if (slot === undefined || this.#closing) return false;
    this.#o.logger.warn({ worker: n }, 'worker killed on request');
    slot.worker.postMessage({ type: 'crash' } satisfies ToWorker);
    // One that does not answer (a busy loop) is ended from outside; its sockets then close without a reset.
    const stuck = setTimeout(() => void slot.worker.terminate(), 2000);
    slot.worker.once('exit', () => clearTimeout(stuck));
    return true;
  }

  #broadcast(m: ToWorker): void {
    for (const s of this.#slots) s.worker.postMessage(m);
  }
}
