// Bad input from the command line or its files: one clear line, exit code 2.
import { ConfigError } from '../config/config.js';
import { IdentityError } from '../identity/errors.js';
import { LabError } from '../lab/shell.js';
import { ManifestError } from '../sources/errors.js';

export const EXIT_USAGE = 2;

export class UsageError extends Error {
  readonly code = 'USAGE';

  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

/** True for errors that mean "the input is wrong", as opposed to a bug or an outage. */
export function isInputError(err: unknown): err is Error {
  return (
    err instanceof UsageError ||
    err instanceof LabError ||
    err instanceof ConfigError ||
    (err instanceof ManifestError && err.code === 'MANIFEST_PATH') ||
    (err instanceof IdentityError && err.code === 'CA_LOAD') ||
    (err instanceof Error && 'code' in err && (err.code === 'ENOENT' || err.code === 'EACCES'))
  );
}
