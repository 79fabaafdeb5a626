// The waypoint's authorizer: AuthorizationPolicies with targetRefs (this Gateway, the destination Service,
// or the istio-waypoint GatewayClass from the root namespace), translated with their HTTP attributes and
// evaluated with Istio's DENY-then-ALLOW semantics.
import type { Logger } from 'pino';
import { evaluate, type Decision } from '../authz/evaluate.js';
import type { Authorization, AuthzConnection, TargetRef } from '../authz/model.js';
import { PolicyProblemLog } from '../authz/problem-log.js';
import { translatePolicy, type TranslatedPolicy } from '../authz/translate.js';
import type { State } from '../model/state.js';
import type { Service, Waypoint } from '../model/types.js';
import { WAYPOINT_CLASS } from '../sources/translate.js';

const GATEWAY_GROUP = 'gateway.networking.k8s.io';

export class WaypointPolicies {
  readonly #state: State;
  readonly #root: string;
  readonly #waypoint: Pick<Waypoint, 'name' | 'namespace'>;
  readonly #problems: PolicyProblemLog;
  #translated: TranslatedPolicy[] = [];
  /** As PolicyEngine: translated again on first use after a State change, whoever hears of it first. */
  #from: unknown;
  readonly #onChange = (): void => this.#current();

  constructor(opts: { state: State; rootNamespace: string; waypoint: Pick<Waypoint, 'name' | 'namespace'>; logger?: Logger }) {
    this.#state = opts.state;
    this.#root = opts.rootNamespace;
    this.#waypoint = opts.waypoint;
    this.#problems = new PolicyProblemLog(opts.logger);
    this.#current();
    this.#state.on('change', this.#onChange);
  }

  close(): void {
    this.#state.off('change', this.#onChange);
  }

  #current(): void {
    if (this.#state.policies !== this.#from) {
      this.#from = this.#state.policies;
      this.#load();
    }
  }

  get policies(): readonly TranslatedPolicy[] {
    this.#current();
    return this.#translated;
  }

  /** The policies for traffic to service (undefined: addressed to a workload). */
  applicable(service: Service | undefined): Authorization[] {
    this.#current();
    return this.#translated.flatMap((t) => {
      const a = t.authorization;
      if (a === undefined || a.scope.kind !== 'targets') return [];
      return a.scope.refs.some((ref) => this.#targets(a.namespace, ref, service)) ? [a] : [];
    });
  }

  decide(service: Service | undefined, conn: AuthzConnection): Decision {
    return evaluate(this.applicable(service), conn);
  }

  #targets(policyNamespace: string, ref: TargetRef, service: Service | undefined): boolean {
    if (ref.kind === 'Gateway' && ref.group === GATEWAY_GROUP) {
      return policyNamespace === this.#waypoint.namespace && ref.name === this.#waypoint.name;
    }
    if (ref.kind === 'GatewayClass' && ref.group === GATEWAY_GROUP) return policyNamespace === this.#root && ref.name === WAYPOINT_CLASS;
    if (ref.kind === 'Service' && (ref.group === '' || ref.group === 'core')) {
      return service !== undefined && policyNamespace === service.namespace && ref.name === service.name;
    }
    return false;
  }

  #load(): void {
    const stored = this.#state.policies;
    this.#translated = stored.map((p) => translatePolicy(p, this.#root, 'waypoint'));
    // Policies without targetRefs are ztunnel's: the daemons report them.
    this.#problems.report(stored, this.#translated, (t) => t.authorization !== undefined || t.error !== undefined);
  }
}
