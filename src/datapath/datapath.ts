// Keeps the capture program in step with the State: the program on the uplink and on every local pod's
// veth, and the map of captured local pods, so a namespace label flip takes effect with no pod restart.
import type { Logger } from 'pino';
import type { State } from '../model/state.js';
import { CaptureProgram, DEFAULT_OBJECT, WORKLOAD_CAPTURED, type ListenerKind, type StatName } from './capture-program.js';
import { ASSIGN_MARK, NodeConfig, interfaceFor } from './node-config.js';
import { DAEMON_MARK } from './transparent-sockets.js';

export const OUTBOUND_PORT = 15001;
export const INBOUND_PLAIN_PORT = 15006;

export interface EbpfDatapathOptions {
  readonly state: State;
  readonly nodeName: string;
  readonly uplinks: readonly string[];
  readonly hbonePort: number;
  readonly logger: Logger;
  readonly objectPath?: string;
}

export class EbpfDatapath {
  readonly #opts: EbpfDatapathOptions;
  readonly #nodeConfig = new NodeConfig();
  #program: CaptureProgram | undefined;
  /** Hooks are attached (or replaced) only once the maps are full: never a moment of a program with empty maps. */
  #attached = false;
  #captured = new Set<string>();
  /** "captured", or why IPv6 is not (config_dump). */
  #ipv6 = 'not started';
  readonly #podInterfaces = new Map<string, string>();
  /** The data path's transparent listeners by slot (a worker each), for the sk_lookup program. */
  readonly #listeners = new Map<number, readonly { kind: ListenerKind; fd: number }[]>();

  constructor(opts: EbpfDatapathOptions) {
    this.#opts = opts;
  }

  /** Loads the program and fills its maps from the State; attach() then puts it on the hooks. */
  prepare(): void {
    const { hbonePort } = this.#opts;
    const program = CaptureProgram.load(this.#opts.objectPath ?? DEFAULT_OBJECT);
    this.#program = program;
    program.configure({ outboundPort: OUTBOUND_PORT, inboundPlainPort: INBOUND_PLAIN_PORT, hbonePort, daemonMark: DAEMON_MARK, assignMark: ASSIGN_MARK });
    const { ipv6 } = this.#nodeConfig.apply();
    this.#ipv6 = ipv6;
    this.#opts.logger.info({ ipv6 }, ipv6 === 'captured' ? 'node settings applied (IPv4 and IPv6)' : 'node settings applied (IPv4 only)');
    for (const [slot, list] of this.#listeners) this.#writeListeners(program, slot, list);
    this.sync();
  }

  /** A data path's listeners came up (again): slot is its worker (0 without workers). */
  setListeners(slot: number, list: readonly { kind: ListenerKind; fd: number }[]): void {
    this.#listeners.set(slot, list);
    if (this.#program !== undefined) this.#writeListeners(this.#program, slot, list);
  }

  #writeListeners(program: CaptureProgram, slot: number, list: readonly { kind: ListenerKind; fd: number }[]): void {
    for (const l of list) program.setListener(l.kind, slot, l.fd);
  }

  /**
   * Attaches to every local pod's veth and to the uplinks, replacing whatever program is there (a previous
   * daemon's, during an upgrade): one atomic swap per hook, so captured traffic never passes unproxied.
   */
  attach(): void {
    const { logger, uplinks } = this.#opts;
    this.#attached = true;
    // Listener lookups first: from the moment the hooks are ours, a SYN that meets our TIME_WAIT finds a listener.
    this.#program?.attachLookup();
    this.sync();
    for (const uplink of uplinks) this.#program?.attach(uplink, 'uplink');
    logger.info({ uplinks, pods: this.#podInterfaces.size, captured: this.#captured.size }, 'ebpf capture attached');
  }

  start(): void {
    this.prepare();
    this.attach();
  }

  /** Applies the current State: hooks on local pods' veths, captured flags in the map. */
  sync(): void {
    const program = this.#program;
    if (program === undefined) return;
    const { state, nodeName, logger } = this.#opts;
    const node = state.node(nodeName);
    for (const ip of node?.ips ?? []) program.setNodeIp(ip);
    const local = state.workloadsOnNode(nodeName);
    // Every address of a dual-stack pod is captured.
    const captured = new Set(local.filter((w) => w.captured).flatMap((w) => w.ips));
    for (const ip of this.#captured) if (!captured.has(ip)) program.deleteWorkload(ip);
    for (const ip of captured) if (!this.#captured.has(ip)) program.setWorkload(ip, WORKLOAD_CAPTURED);
    if (captured.size !== this.#captured.size || [...captured].some((ip) => !this.#captured.has(ip))) {
      logger.info({ captured: [...captured] }, 'captured workloads updated');
    }
    this.#captured = captured;
    if (!this.#attached) return;
    const present = new Set(local.map((w) => w.ip));
    for (const [ip, ifname] of this.#podInterfaces) {
      if (!present.has(ip)) {
        program.detach(ifname);
        this.#podInterfaces.delete(ip);
      }
    }
    for (const w of local) {
      if (this.#podInterfaces.has(w.ip)) continue;
      const ifname = interfaceFor(w.ip);
      if (ifname === undefined) {
        logger.warn({ pod: w.uid, ip: w.ip }, 'no interface routes to this pod yet; will retry on the next change');
        continue;
      }
      try {
        program.attach(ifname, 'pod');
        program.setPodInterface(ifname, w.ips);
        this.#podInterfaces.set(w.ip, ifname);
      } catch (err) {
        logger.error({ pod: w.uid, err: (err as Error).message }, 'cannot attach capture to pod interface');
      }
    }
  }

  /** Whether IPv6 is captured on this node, or why not. */
  get ipv6(): string {
    return this.#ipv6;
  }

  stats(): Record<StatName, bigint> | undefined {
    return this.#program?.stats();
  }

  /** Clean stop: hooks, maps and node settings go. (A killed daemon leaves the hooks: fail closed.) */
  stop(): void {
    this.#program?.close();
    this.#program = undefined;
    this.#podInterfaces.clear();
    this.#nodeConfig.remove();
  }

  /** After an upgrade: the hooks run the successor's program now; leave them, the ip rule and the sysctls. */
  handOver(): void {
    this.#program?.release();
    this.#program = undefined;
    this.#podInterfaces.clear();
    this.#nodeConfig.release();
  }
}
