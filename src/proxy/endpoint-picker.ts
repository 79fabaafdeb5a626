// The state behind endpoint choice in one process: open connections per endpoint (for power of two
// choices) and ClientIP session affinity. The decision itself is chooseEndpoint (pure).
import type { Workload } from '../model/types.js';
import { chooseEndpoint, type Choice, type ChoiceClient, type ChoicePolicy } from './endpoint-choice.js';

/** What is chosen for: a Service (its uid keys affinity) or a waypoint's pods. */
export type ChoiceTarget = ChoicePolicy & { readonly uid: string };

const SWEEP_EVERY_MS = 60_000;

export class EndpointPicker {
  readonly #open = new Map<string, number>();
  readonly #sticky = new Map<string, { uid: string; expires: number }>();
  readonly #random: () => number;
  readonly #now: () => number;
  #lastSweep = 0;

  constructor(opts: { random?: () => number; now?: () => number } = {}) {
    this.#random = opts.random ?? Math.random;
    this.#now = opts.now ?? Date.now;
  }

  choose<T>(target: ChoiceTarget, candidates: readonly { readonly endpoint: Workload; readonly value: T }[], client: ChoiceClient): Choice<T> {
    const now = this.#now();
    this.#sweep(now);
    const key = target.sessionAffinity !== undefined && client.ip !== undefined ? `${target.uid}|${client.ip}` : undefined;
    const entry = key === undefined ? undefined : this.#sticky.get(key);
    const sticky = entry !== undefined && entry.expires > now ? entry.uid : undefined;
    const choice = chooseEndpoint(target, candidates, client, { load: (uid) => this.load(uid), sticky, random: this.#random });
    // Every new connection renews the client's affinity, as kube-proxy's does.
    if (choice.ok && key !== undefined && target.sessionAffinity !== undefined) {
      this.#sticky.set(key, { uid: choice.endpoint.uid, expires: now + target.sessionAffinity.timeoutSeconds * 1000 });
    }
    return choice;
  }

  /** Counts a connection (or request) to an endpoint until the returned function is called (once is enough). */
  opened(uid: string): () => void {
    this.#open.set(uid, (this.#open.get(uid) ?? 0) + 1);
    let done = false;
    return () => {
      if (done) return;
      done = true;
      const n = (this.#open.get(uid) ?? 1) - 1;
      if (n <= 0) this.#open.delete(uid);
      else this.#open.set(uid, n);
    };
  }

  load(uid: string): number {
    return this.#open.get(uid) ?? 0;
  }

  /** Open connections per endpoint uid, for config_dump. */
  loads(): Record<string, number> {
    return Object.fromEntries(this.#open);
  }

  get affinityEntries(): number {
    return this.#sticky.size;
  }

  #sweep(now: number): void {
    if (now - this.#lastSweep < SWEEP_EVERY_MS) return;
    this.#lastSweep = now;
    for (const [k, e] of this.#sticky) if (e.expires <= now) this.#sticky.delete(k);
  }
}
