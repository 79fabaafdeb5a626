// A worker's certificates: the control plane's CertManager fetches and renews (one CSR per identity for
// the whole daemon) and pushes each SVID here; a miss asks it once and waits.
import { EventEmitter } from 'node:events';
import type { Certificates, CertManagerEvents } from '../identity/cert-manager.js';
import type { Svid } from '../identity/svid.js';

export class CertReplica extends EventEmitter<CertManagerEvents> implements Certificates {
  readonly #svids = new Map<string, Svid>();
  readonly #ask: (identity: string) => Promise<Svid>;
  readonly #asking = new Map<string, Promise<Svid>>();

  constructor(ask: (identity: string) => Promise<Svid>) {
    super();
    this.#ask = ask;
  }

  /** A certificate from the control plane (issued or renewed). */
  apply(svid: Svid): void {
    this.#svids.set(svid.identity, svid);
    this.emit('updated', svid);
  }

  peek(identity: string): Svid | undefined {
    const svid = this.#svids.get(identity);
    return svid !== undefined && svid.notAfter.getTime() > Date.now() ? svid : undefined;
  }

  get(identity: string): Promise<Svid> {
    const have = this.peek(identity);
    if (have !== undefined) return Promise.resolve(have);
    let p = this.#asking.get(identity);
    if (p === undefined) {
      p = this.#ask(identity).then(
        (svid) => {
          this.#asking.delete(identity);
          this.apply(svid);
          return svid;
        },
        (err: unknown) => {
          this.#asking.delete(identity);
          throw err;
        },
      );
      this.#asking.set(identity, p);
    }
    return p;
  }
}
