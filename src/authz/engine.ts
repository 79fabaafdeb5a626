// The daemon's authorizer: keeps the translated policies in step with the State and evaluates each
// connection against the policies that apply to its destination workload.
import type { Logger } from 'pino';
import type { State } from '../model/state.js';
import type { StoredPolicy } from '../model/types.js';
import type { AuthzDecision, AuthzRequest, Authorizer } from './hook.js';
import { applicablePolicies, evaluate, type Decision } from './evaluate.js';
import type { Authorization } from './model.js';
import { PolicyProblemLog } from './problem-log.js';
import { DEFAULT_ROOT_NAMESPACE, translatePolicy, type TranslatedPolicy } from './translate.js';

export interface PolicyEngineOptions {
  readonly state: State;
  readonly rootNamespace?: string;
  readonly logger?: Logger;
}

export class PolicyEngine implements Authorizer {
  readonly #state: State;
  readonly #root: string;
  readonly #problems: PolicyProblemLog;
  #translated: TranslatedPolicy[] = [];
  #enforced: Authorization[] = [];
  /** The policies last translated: a new State snapshot's are translated on first use, so nothing depends on
   * whether this engine heard of the change before the code that asks it (re-authorization on change). */
  #from: readonly StoredPolicy[] | undefined;
  readonly #onChange = (): void => this.#current();

  constructor(opts: PolicyEngineOptions) {
    this.#state = opts.state;
    this.#root = opts.rootNamespace ?? DEFAULT_ROOT_NAMESPACE;
    this.#problems = new PolicyProblemLog(opts.logger);
    this.#current();
    // Eager too, so that a bad policy is logged when it arrives, not at the next connection.
    this.#state.on('change', this.#onChange);
  }

  /** Stops following the State. */
  close(): void {
    this.#state.off('change', this.#onChange);
  }

  get policies(): readonly TranslatedPolicy[] {
    this.#current();
    return this.#translated;
  }

  #current(): void {
    const stored = this.#state.policies;
    if (stored !== this.#from) this.#load(stored);
  }

  authorize(req: AuthzRequest): AuthzDecision {
    return this.decide(req);
  }

  decide(req: AuthzRequest): Decision {
    this.#current();
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
    this.#from = stored;
    this.#translated = stored.map((p) => translatePolicy(p, this.#root));
    this.#enforced = this.#translated.flatMap((t) => (t.authorization === undefined ? [] : [t.authorization]));
    this.#problems.report(stored, this.#translated);
  }
}
