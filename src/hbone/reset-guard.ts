// Rapid reset (CVE-2023-44487): a client that opens streams and resets them before they are answered
// makes the server start work (here: an upstream connect) for each, at no cost to itself. nghttp2 has a
// limiter of its own, but when it trips, Node 20 leaves the server session neither closed nor destroyed
// and its socket unread: a zombie that holds its descriptor until the keep-alive PING gives up. So the
// server counts these resets itself, per session, and closes the session first (as hyper's
// max_pending_accept_reset_streams does for ztunnel).

/** More than this many streams reset before an answer, within one window, closes the session. */
export const MAX_UNANSWERED_RESETS = 200;
export const RESET_WINDOW_MS = 10_000;

export class ResetGuard {
  readonly #limit: number;
  readonly #windowMs: number;
  #windowStart = 0;
  #count = 0;

  constructor(limit = MAX_UNANSWERED_RESETS, windowMs = RESET_WINDOW_MS) {
    this.#limit = limit;
    this.#windowMs = windowMs;
  }

  /** Counts one stream the peer reset before it was answered; true when the session must close. */
  reset(now: number): boolean {
    if (now - this.#windowStart >= this.#windowMs) {
      this.#windowStart = now;
      this.#count = 0;
    }
    this.#count += 1;
    return this.#count > this.#limit;
  }
}
