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

  constructor(limits: ConnectionLimits) {
    this.#limits = limits;
  }

  get open(): number {
    return this.#open;
  }

  /** Takes a slot for a connection from source, or says which limit refuses it. */
  admit(source: string): Admission {
    const { maxConnections, maxConnectionsPerSource } = this.#limits;
    const fromSource = this.#perSource.get(source) ?? 0;
    if (maxConnections > 0 && this.#open >= maxConnections) return { admitted: false, reason: `${this.#open} connections open, the daemon's limit (--max-connections ${maxConnections})` };
    if (maxConnectionsPerSource > 0 && fromSource >= maxConnectionsPerSource) {
      return { admitted: false, reason: `${fromSource} connections open from ${source}, its limit (--max-connections-per-source ${maxConnectionsPerSource})` };
    }
    this.#open += 1;
    this.#perSource.set(source, fromSource + 1);
    let released = false;
    return {
      admitted: true,
      release: () => {
        if (released) return;
        released = true;
        this.#open -= 1;
        const left = (this.#perSource.get(source) ?? 1) - 1;
        if (left === 0) this.#perSource.delete(source);
        else this.#perSource.set(source, left);
      },
    };
  }
}
