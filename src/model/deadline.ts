// A bound on one wait whose timer ends with the wait. AbortSignal.timeout's timer cannot be cleared: each
// connection's 10 s connect bound lived its full 10 s, so a burst of 1500 connections a second kept
// 15,000 timers and signals alive, which survived young-generation collections into the old space.

export interface Deadline {
  readonly signal: AbortSignal;
  /** The wait is over: the timer and the link to `also` go now. Idempotent. */
  done(): void;
}

/**
 * A signal that aborts after ms (reason: a DOMException named TimeoutError, as AbortSignal.timeout's), or
 * with `also`'s reason when `also` aborts first.
 */
export function deadline(ms: number, also?: AbortSignal): Deadline {
  const controller = new AbortController();
  if (also?.aborted === true) {
    controller.abort(also.reason);
    return { signal: controller.signal, done: () => undefined };
  }
  const onAlso = (): void => {
    clearTimeout(timer);
    controller.abort(also?.reason);
  };
  const timer = setTimeout(() => {
    also?.removeEventListener('abort', onAlso);
    controller.abort(new DOMException('The operation was aborted due to timeout', 'TimeoutError'));
  }, ms);
  also?.addEventListener('abort', onAlso, { once: true });
  return {
    signal: controller.signal,
    done: () => {
      clearTimeout(timer);
      also?.removeEventListener('abort', onAlso);
    },
  };
}

/** Runs wait with a deadline that ends when wait settles. */
export async function withDeadline<T>(ms: number, also: AbortSignal | undefined, wait: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const bound = deadline(ms, also);
  try {
    return await wait(bound.signal);
  } finally {
    bound.done();
  }
}
