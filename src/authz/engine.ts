// The daemon's authorizer: keeps the translated policies in step with the State and evaluates each
// connection against the policies that apply to its destination workload.
import type { Logger } from 'pino';
import type { State } from '../model/state.js';
import type { StoredPolicy } from '../model/types.js';
import type { AuthzDecision, AuthzRequest, Authorizer } from './hook.js';
import { applicablePolicies, evaluate, type Decision } from './evaluate.js';
import type { Authorization } from './model.js';
import { DEFAULT_ROOT_NAMESPACE, translatePolicy, type TranslatedPolicy } from './translate.js';

export interface PolicyEngineOptions {
  readonly state: State;
  readonly rootNamespace?: string;
  readonly logger?: Logger;
}

export class PolicyEngine implements Authorizer {
  readonly #state: State;
  readonly #root: string;
  readonly #logger: Logger | undefined;
  /** What was last logged per policy, so warnings appear once per version of a policy. */
  readonly #logged = new Map<string, string>();
  #translated: TranslatedPolicy[] = [];
  #enforced: Authorization[] = [];

  constructor(opts: PolicyEngineOptions) {
    this.#state = opts.state;
    this.#root = opts.rootNamespace ?? DEFAULT_ROOT_NAMESPACE;
    this.#logger = opts.logger;
    this.#load(this.#state.policies);
    this.#state.on('change', (s) => this.#load(s.policies));
  }

  get policies(): readonly TranslatedPolicy[] {
    return this.#translated;
  }

  authorize(req: AuthzRequest): AuthzDecision {
    return this.decide(req);
  }

  decide(req: AuthzRequest): Decision {
    return evaluate(applicablePolicies(this.#enforced, req.dstWorkload, this.#root), {
      srcIp: req.src.ip,
      srcIdentity: req.srcIdentity,
      dstIp: req.dst.ip,
      dstPort: req.dst.port,
    });
  }

  /** Translation warnings of the policies that apply to a workload (for `authz check`). */
  warningsFor(req: Pick<AuthzRequest, 'dstWorkload'>): string[] {
    const w = req.dstWorkload;
    return this.#translated
      .filter((t) => t.authorization === undefined || applicablePolicies([t.authorization], w, this.#root).length > 0)
      .filter((t) => t.authorization !== undefined || t.namespace === w.namespace || t.namespace === this.#root)
      .flatMap((t) => t.warnings.map((msg) => `${t.namespace}/${t.name}: ${msg}`));
  }

  #load(stored: readonly StoredPolicy[]): void {
    this.#translated = stored.map((p) => translatePolicy(p, this.#root));
    this.#enforced = this.#translated.flatMap((t) => (t.authorization === undefined ? [] : [t.authorization]));
    const seen = new Set<string>();
    for (const [i, t] of this.#translated.entries()) {
      const key = `${t.namespace}/${t.name}`;
      seen.add(key);
      const version = JSON.stringify(stored[i]?.object);
      if (this.#logged.get(key) === version) continue;
      this.#logged.set(key, version);
      if (t.error !== undefined) {
        this.#logger?.error({ policy: key, file: t.origin, field: t.error }, `authorization policy ${key} in ${t.origin} is malformed: ${t.error}; enforced fail-closed`);
      }
      for (const w of t.warnings) {
        if (t.error === undefined) this.#logger?.warn({ policy: key, file: t.origin }, `authorization policy ${key}: ${w}`);
      }
    }
    for (const key of [...this.#logged.keys()]) if (!seen.has(key)) this.#logged.delete(key);
  }
}
