// Caches one SVID per identity, renews it at half its life, and keeps a still-valid certificate when a
// renewal fails (retrying with backoff), so a CA outage does not take identities away.
import { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import type { CertificateSource } from './source.js';
import { renewalTime, type Svid } from './svid.js';

const RETRY_MIN_MS = 500;
const RETRY_MAX_MS = 60_000;

interface Entry {
  svid: Svid | undefined;
  inflight: Promise<Svid> | undefined;
  timer: NodeJS.Timeout | undefined;
  failures: number;
}

export interface CertManagerEvents {
  updated: [svid: Svid];
}

/** What the data path needs of certificates: the daemon's CertManager, or a worker's replica of it. */
export interface Certificates {
  get(identity: string): Promise<Svid>;
  peek(identity: string): Svid | undefined;
  on(event: 'updated', listener: (svid: Svid) => void): unknown;
  off(event: 'updated', listener: (svid: Svid) => void): unknown;
}

export class CertManager extends EventEmitter<CertManagerEvents> {
  readonly #source: CertificateSource;
  readonly #logger: Logger;
  readonly #entries = new Map<string, Entry>();
  #closed = false;

  constructor(source: CertificateSource, logger: Logger) {
    super();
    this.#source = source;
    this.#logger = logger;
  }

  /** A valid certificate for identity, fetching one if none is cached. */
  async get(identity: string): Promise<Svid> {
    const entry = this.#entry(identity);
    if (entry.svid !== undefined && entry.svid.notAfter.getTime() > Date.now()) return entry.svid;
    return this.#fetch(identity, entry);
  }

  /** The cached certificate, if any, without fetching. */
  peek(identity: string): Svid | undefined {
    const svid = this.#entries.get(identity)?.svid;
    return svid !== undefined && svid.notAfter.getTime() > Date.now() ? svid : undefined;
  }

  /** Keeps certificates for exactly these identities: fetches new ones, forgets the rest. */
  track(identities: Iterable<string>): void {
    const wanted = new Set(identities);
    for (const [id, entry] of this.#entries) {
      if (!wanted.has(id)) {
        clearTimeout(entry.timer);
        this.#entries.delete(id);
      }
    }
    for (const id of wanted) {
      const entry = this.#entry(id);
      if (entry.svid === undefined && entry.inflight === undefined) {
        this.#fetch(id, entry).catch(() => undefined); // logged and retried in #fetch
      }
    }
  }

  snapshot(): Svid[] {
    return [...this.#entries.values()].flatMap((e) => (e.svid === undefined ? [] : [e.svid]));
  }

  close(): void {
    this.#closed = true;
    for (const e of this.#entries.values()) clearTimeout(e.timer);
    this.#entries.clear();
  }

  #entry(identity: string): Entry {
    let entry = this.#entries.get(identity);
    if (entry === undefined) {
      entry = { svid: undefined, inflight: undefined, timer: undefined, failures: 0 };
      this.#entries.set(identity, entry);
    }
    return entry;
  }

  #fetch(identity: string, entry: Entry): Promise<Svid> {
    if (entry.inflight !== undefined) return entry.inflight;
    const p = this.#source.fetch(identity).then(
      (svid) => {
        entry.inflight = undefined;
        entry.failures = 0;
        if (this.#closed || this.#entries.get(identity) !== entry) return svid;
        entry.svid = svid;
        const now = Date.now();
        this.#schedule(identity, entry, Math.max(0, renewalTime(svid, now) - now));
        this.#logger.info(
          { identity, serial: svid.serial, notAfter: svid.notAfter.toISOString() },
          'workload certificate issued',
        );
        this.emit('updated', svid);
        return svid;
      },
      (err: unknown) => {
        entry.inflight = undefined;
        entry.failures += 1;
        const delay = Math.min(RETRY_MAX_MS, RETRY_MIN_MS * 2 ** (entry.failures - 1));
        const keeping = entry.svid !== undefined && entry.svid.notAfter.getTime() > Date.now();
        this.#logger.warn(
          { identity, err: (err as Error).message, retryInMs: delay, keepingValidCertificate: keeping },
          'certificate fetch failed',
        );
        if (!this.#closed && this.#entries.get(identity) === entry) this.#schedule(identity, entry, delay);
        throw err;
      },
    );
    entry.inflight = p;
    return p;
  }

  #schedule(identity: string, entry: Entry, delayMs: number): void {
    clearTimeout(entry.timer);
    entry.timer = setTimeout(() => {
      this.#fetch(identity, entry).catch(() => undefined);
    }, delayMs);
    entry.timer.unref();
  }
}
