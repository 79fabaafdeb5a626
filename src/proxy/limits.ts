// How many proxied connections a daemon carries at once, in all and per source IP (a pod), so that one
// noisy or hostile pod cannot take every descriptor of the node's daemon. At the limit a new connection
// is refused with CONNECTION_LIMIT (access log and istio_tcp_connections_failed_total); open ones go on.
export interface ConnectionLimits {
  /** 0: no limit. */
  readonly maxConnections: number;
  readonly maxConnectionsPerSource: number;
}

export type Admission = { readonly admitted: true; readonly release: () => void } | { readonly admitted: false; readonly reason: string };

export class ConnectionLimiter {
  readonly #limits: ConnectionLimits;
  readonly #perSource = new Map<string, number>();
  #open = 0;
  /** With worker threads: [0] the daemon-wide count of open connections, [1 + worker] each worker's share of it. */
  readonly #daemonWide: Int32Array | undefined;
  readonly #slot: number;

  constructor(limits: ConnectionLimits, daemonWide?: { buffer: SharedArrayBuffer; worker: number }) {
    this.#limits = limits;
    this.#daemonWide = daemonWide === undefined ? undefined : new Int32Array(daemonWide.buffer);
    this.#slot = 1 + (daemonWide?.worker ?? 0);
  }

  get open(): number {
    return this.#open;
  }

  /** Takes a slot for a connection from source, or says which limit refuses it. */
  admit(source: string): Admission {
    const { maxConnections, maxConnectionsPerSource } = this.#limits;
    const fromSource = this.#perSource.get(source) ?? 0;
    if (maxConnectionsPerSource > 0 && fromSource >= maxConnectionsPerSource) {
      return { admitted: false, reason: `${fromSource} connections open from ${source}, its limit (--max-connections-per-source ${maxConnectionsPerSource})` };
    }
    const shared = this.#daemonWide;
    // Taken first and given back on refusal, so that two workers can never both take the last slot.
    const total = shared === undefined ? this.#open : Atomics.add(shared, 0, 1);
    if (maxConnections > 0 && total >= maxConnections) {
      if (shared !== undefined) Atomics.sub(shared, 0, 1);
      return { admitted: false, reason: `${total} connections open, the daemon's limit (--max-connections ${maxConnections})` };
    }
    this.#open += 1;
    if (shared !== undefined) Atomics.add(shared, this.#slot, 1);
    this.#perSource.set(source, fromSource + 1);
    let released = false;
    return {
      admitted: true,
      release: () => {
        if (released) return;
        released = true;
        this.#open -= 1;
        if (shared !== undefined) Atomics.sub(shared, 0, 1);
        const left = (this.#perSource.get(source) ?? 1) - 1;
        if (left === 0) this.#perSource.delete(source);
        else this.#perSource.set(source, left);
      },
    };
  }
}

/** After worker n died: the connections it held are gone, so is their share of the daemon-wide count. */
export function forgetWorkerConnections(buffer: SharedArrayBuffer, worker: number): void {
  const counts = new Int32Array(buffer);
  Atomics.sub(counts, 0, Atomics.exchange(counts, 1 + worker, 0));
}
