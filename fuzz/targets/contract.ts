// What every fuzz target asserts: a parser that takes outside input answers with a result or with its
// own typed error. Anything else (another exception, a broken invariant) is a finding: it is thrown, and
// the fuzzer stops there and writes the input.

export class FuzzFinding extends Error {
  override readonly name = 'FuzzFinding';
}

export function check(ok: boolean, what: string): void {
  if (!ok) throw new FuzzFinding(what);
}

type ErrorClass = abstract new (...args: never[]) => Error;

/** fn's result, or undefined when it threw one of the expected error classes; any other throw escapes. */
export function expecting<T>(fn: () => T, ...expected: ErrorClass[]): T | undefined {
  try {
    return fn();
  } catch (err) {
    if (expected.some((E) => err instanceof E)) return undefined;
    throw err;
  }
}

/** The same for async parsers. */
export async function expectingAsync<T>(fn: () => Promise<T>, ...expected: ErrorClass[]): Promise<T | undefined> {
  try {
    return await fn();
  } catch (err) {
    if (expected.some((E) => err instanceof E)) return undefined;
    throw err;
  }
}
