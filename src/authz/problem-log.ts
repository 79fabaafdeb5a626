// Translation problems of AuthorizationPolicies are logged once per version of each policy, like
// istiod's status conditions: neither on every State change, nor never again after an edit.
import type { Logger } from 'pino';
import type { StoredPolicy } from '../model/types.js';
import type { TranslatedPolicy } from './translate.js';

export class PolicyProblemLog {
  readonly #logger: Logger | undefined;
  /** Last version logged per "namespace/name". */
  readonly #logged = new Map<string, string>();

  constructor(logger: Logger | undefined) {
    this.#logger = logger;
  }

  /** translated[i] is stored[i] translated; policies for which mine() is false are someone else's to report. */
  report(stored: readonly StoredPolicy[], translated: readonly TranslatedPolicy[], mine: (t: TranslatedPolicy) => boolean = () => true): void {
    const seen = new Set<string>();
    for (const [i, t] of translated.entries()) {
      if (!mine(t)) continue;
      const key = `${t.namespace}/${t.name}`;
      seen.add(key);
      const version = JSON.stringify(stored[i]?.object);
      if (this.#logged.get(key) === version) continue;
      this.#logged.set(key, version);
      if (t.error !== undefined) {
        this.#logger?.error({ policy: key, file: t.origin, field: t.error }, `authorization policy ${key} in ${t.origin} is malformed: ${t.error}; enforced fail-closed`);
      } else {
        for (const w of t.warnings) this.#logger?.warn({ policy: key, file: t.origin }, `authorization policy ${key}: ${w}`);
      }
    }
    for (const key of [...this.#logged.keys()]) if (!seen.has(key)) this.#logged.delete(key);
  }
}
