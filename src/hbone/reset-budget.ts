// A mirror of the peer's limit on the RST_STREAM frames it takes from us. nghttp2 (Node's HTTP/2, so every
// ztunnel-ts daemon and waypoint) lets a client send 1000 at once, refilled at 33 a second, and past that
// ends the whole connection with GOAWAY INTERNAL_ERROR: every stream on it fails. It counts every reset,
// also of streams long answered (a pod whose connection ended in a TCP RST), and Node 20 cannot change it.
// A pooled session whose streams are reset that often retires first: it takes no new stream and ends when
// its last one does, while the streams still on it can each be reset once more within the peer's limit.
export const PEER_RESET_BURST = 1000;
export const PEER_RESET_RATE_PER_SECOND = 33;

export class ResetBudget {
  #tokens = PEER_RESET_BURST;
  /** The whole second the tokens were last refilled at: nghttp2 counts time in seconds. */
  #refilledAt: number;

  constructor(nowMs: number) {
    this.#refilledAt = Math.floor(nowMs / 1000);
  }

  /** One reset sent at nowMs; returns the resets the peer will still take from this connection. */
  spend(nowMs: number): number {
    const now = Math.floor(nowMs / 1000);
    if (now > this.#refilledAt) {
      this.#tokens = Math.min(PEER_RESET_BURST, this.#tokens + (now - this.#refilledAt) * PEER_RESET_RATE_PER_SECOND);
      this.#refilledAt = now;
    }
    this.#tokens = Math.max(0, this.#tokens - 1);
    return this.#tokens;
  }
}

/** Retire once the resets left would not cover one more for each stream the connection may carry. */
export function shouldRetire(resetsLeft: number, maxStreams: number): boolean {
  return resetsLeft <= maxStreams;
}
