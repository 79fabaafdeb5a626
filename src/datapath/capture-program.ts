// The capture program (bpf/capture.bpf.o) loaded through libbpf: its maps and its tc ingress hooks.
import { closeSync, openSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { addressFromKey, addressKey, ipFamily, ipOfFamily } from '../model/address.js';
import { DatapathError } from './errors.js';
import { BPF_ANY, BPF_TC_F_REPLACE, BPF_TC_INGRESS, TC_HOOK_SIZE, TC_OPTS_SIZE, bpf, c, errno, withSignalsBlocked } from './ffi.js';

export const DEFAULT_OBJECT = fileURLToPath(new URL('../../../bpf/capture.bpf.o', import.meta.url));

/** Mirrors enum capture_stat in bpf/lib/maps.h. */
export const STAT_NAMES = ['assigned_established', 'assigned_listener', 'dropped_no_listener', 'passed', 'errors', 'dropped_spoofed', 'time_wait_handoff', 'lookup_assigned', 'dropped_unparsed'] as const;
export type StatName = (typeof STAT_NAMES)[number];

export const WORKLOAD_CAPTURED = 0x1;

/** Mirrors LISTENER_* and LISTENER_SLOTS in bpf/lib/maps.h. */
export const LISTENER_KINDS = { outbound: 0, hbone: 1, inboundPlain: 2 } as const;
export type ListenerKind = keyof typeof LISTENER_KINDS;
export const LISTENER_SLOTS = 16;
export type HookKind = 'pod' | 'uplink';

// Kernel program names are cut at 15 characters; these are what tc and bpftool show.
const PROGRAMS: Record<HookKind, string> = { pod: 'capture_pod', uplink: 'capture_uplink' };
/** The sk_lookup program: listener lookups in this network namespace (a SYN that met our TIME_WAIT socket). */
const LOOKUP_PROGRAM = 'capture_lookup';

export interface CaptureConfig {
  readonly outboundPort: number;
  readonly inboundPlainPort: number;
  readonly hbonePort: number;
  readonly daemonMark: number;
  readonly assignMark: number;
}

/** struct capture_config: 3 × u16 ports, u16 pad, u32 daemon_mark, u32 assign_mark = 16 bytes. */
export function encodeConfig(cfg: CaptureConfig): Buffer {
  const b = Buffer.alloc(16);
  b.writeUInt16LE(cfg.outboundPort, 0);
  b.writeUInt16LE(cfg.inboundPlainPort, 2);
  b.writeUInt16LE(cfg.hbonePort, 4);
  b.writeUInt32LE(cfg.daemonMark, 8);
  b.writeUInt32LE(cfg.assignMark, 12);
  return b;
}

/** struct addr_key: an address of either family as the maps key it (IPv4 as IPv4-mapped IPv6). */
export function ipKey(ip: string): Buffer {
  const key = addressKey(ip);
  if (key === undefined) throw new DatapathError('DATAPATH_MAP', `not an IP address: ${ip}`);
  return key;
}

/** struct pod_addrs: the pod's IPv4 address (4 bytes) and IPv6 address (16), zero where it has none. */
export function encodePodAddrs(ips: readonly string[]): Buffer {
  const b = Buffer.alloc(20);
  const v4 = ipOfFamily(ips, 4);
  const v6 = ipOfFamily(ips, 6);
  if (v4 !== undefined) ipKey(v4).copy(b, 0, 12, 16);
  if (v6 !== undefined) ipKey(v6).copy(b, 4);
  for (const ip of ips) if (ipFamily(ip) === 4 ? ip !== v4 : ip !== v6) throw new DatapathError('DATAPATH_MAP', `a pod has one address of each family at most, not ${ips.join(', ')}`);
  return b;
}

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n >>> 0, 0);
  return b;
}

function tcHook(ifindex: number): Buffer {
  const b = Buffer.alloc(TC_HOOK_SIZE);
  b.writeBigUInt64LE(BigInt(TC_HOOK_SIZE), 0);
  b.writeInt32LE(ifindex, 8);
  b.writeInt32LE(BPF_TC_INGRESS, 12);
  return b;
}

function tcOpts(progFd: number, flags: number): Buffer {
  const b = Buffer.alloc(TC_OPTS_SIZE);
  b.writeBigUInt64LE(BigInt(TC_OPTS_SIZE), 0);
  b.writeInt32LE(progFd, 8);
  b.writeUInt32LE(flags, 12);
  b.writeUInt32LE(1, 20); // handle
  b.writeUInt32LE(1, 24); // priority
  return b;
}

interface MapFds {
  readonly listeners: number;
  readonly config: number;
  readonly workloads: number;
  readonly nodeIps: number;
  readonly stats: number;
  readonly podIfaces: number;
}

export class CaptureProgram {
  readonly #obj: unknown;
  readonly #progFds: Record<HookKind, number>;
  readonly #lookupProgram: unknown;
  readonly #maps: MapFds;
  readonly #attached = new Map<string, number>();
  #lookupLink: unknown;
  #closed = false;

  private constructor(obj: unknown, progFds: Record<HookKind, number>, lookupProgram: unknown, maps: MapFds) {
    this.#obj = obj;
    this.#progFds = progFds;
    this.#lookupProgram = lookupProgram;
    this.#maps = maps;
  }

  /** Opens and loads (verifies) the object; the maps start empty. */
  static load(path = DEFAULT_OBJECT): CaptureProgram {
    const obj = bpf.objectOpenFile(path, null);
    const openErr = Number(bpf.getError(obj));
    if (obj === null || openErr !== 0) throw new DatapathError('DATAPATH_LOAD', `bpf_object__open_file ${path}`, openErr || -errno());
    const rc = withSignalsBlocked(() => bpf.objectLoad(obj) as number);
    if (rc !== 0) {
      bpf.objectClose(obj);
      throw new DatapathError('DATAPATH_LOAD', `bpf_object__load ${path} (is this root, with BPF enabled?)`, rc);
    }
    // libbpf prints every kernel notice (e.g. EEXIST from an existing clsact); errors are reported by us.
    bpf.setPrint(null);
    const prog = (name: string): number => {
      const p = bpf.findProgram(obj, name);
      const fd = p === null ? -1 : (bpf.programFd(p) as number);
      if (fd < 0) throw new DatapathError('DATAPATH_LOAD', `program ${name} not found in ${path}`);
      return fd;
    };
    const map = (name: string): number => {
      const fd = bpf.findMapFd(obj, name) as number;
      if (fd < 0) throw new DatapathError('DATAPATH_LOAD', `map ${name} not found in ${path}`, fd);
      return fd;
    };
    prog(LOOKUP_PROGRAM);
    return new CaptureProgram(
      obj,
      { pod: prog(PROGRAMS.pod), uplink: prog(PROGRAMS.uplink) },
      bpf.findProgram(obj, LOOKUP_PROGRAM),
      {
        listeners: map('ztunnel_listeners'),
        config: map('ztunnel_config'),
        workloads: map('ztunnel_workloads'),
        nodeIps: map('ztunnel_node_ips'),
        stats: map('ztunnel_stats'),
        podIfaces: map('ztunnel_pod_ifaces'),
      },
    );
  }

  configure(cfg: CaptureConfig): void {
    this.#update(this.#maps.config, u32(0), encodeConfig(cfg), 'ztunnel_config');
  }

  setWorkload(ip: string, flags: number): void {
    this.#update(this.#maps.workloads, ipKey(ip), u32(flags), 'ztunnel_workloads');
  }

  deleteWorkload(ip: string): void {
    bpf.mapDelete(this.#maps.workloads, ipKey(ip)); // ENOENT is fine
  }

  /** Addresses currently in the workloads map. */
  workloadIps(): string[] {
    const out: string[] = [];
    let prev: Buffer | null = null;
    const next = Buffer.alloc(16);
    while ((bpf.mapGetNextKey(this.#maps.workloads, prev, next) as number) === 0) {
      out.push(addressFromKey(next));
      prev = Buffer.from(next);
    }
    return out;
  }

  setNodeIp(ip: string): void {
    this.#update(this.#maps.nodeIps, ipKey(ip), u32(1), 'ztunnel_node_ips');
  }

  /** Per-CPU counters summed. */
  stats(): Record<StatName, bigint> {
    const cpus = bpf.numPossibleCpus() as number;
    const out = {} as Record<StatName, bigint>;
    STAT_NAMES.forEach((name, i) => {
      const value = Buffer.alloc(8 * cpus);
      const rc = bpf.mapLookup(this.#maps.stats, u32(i), value) as number;
      let sum = 0n;
      if (rc === 0) for (let cpu = 0; cpu < cpus; cpu++) sum += value.readBigUInt64LE(cpu * 8);
      out[name] = sum;
    });
    return out;
  }

  /** The pod behind a veth we attached to may send only from its own addresses (anti-spoofing). */
  setPodInterface(ifname: string, ips: readonly string[]): void {
    const ifindex = this.#attached.get(ifname);
    if (ifindex === undefined) throw new DatapathError('DATAPATH_MAP', `${ifname} is not attached`);
    this.#update(this.#maps.podIfaces, u32(ifindex), encodePodAddrs(ips), 'ztunnel_pod_ifaces');
  }

  /** Puts one of the daemon's transparent listeners (a socket fd of this process) where capture_lookup finds it. */
  setListener(kind: ListenerKind, slot: number, fd: number): void {
    if (slot < 0 || slot >= LISTENER_SLOTS) throw new DatapathError('DATAPATH_MAP', `listener slot ${slot} is out of range (0..${LISTENER_SLOTS - 1})`);
    const value = Buffer.alloc(8);
    value.writeBigUInt64LE(BigInt(fd), 0);
    this.#update(this.#maps.listeners, u32(LISTENER_KINDS[kind] * LISTENER_SLOTS + slot), value, 'ztunnel_listeners');
  }

  /** Attaches capture_lookup to this network namespace's listener lookups (detached when this process exits). */
  attachLookup(): void {
    if (this.#lookupLink !== undefined) return;
    const netns = openSync('/proc/self/ns/net', 'r');
    try {
      const link = bpf.attachNetns(this.#lookupProgram, netns);
      const err = Number(bpf.getError(link));
      if (link === null || err !== 0) throw new DatapathError('DATAPATH_ATTACH', `bpf_program__attach_netns (${LOOKUP_PROGRAM})`, err || -errno());
      this.#lookupLink = link;
    } finally {
      closeSync(netns);
    }
  }

  /** Attaches to tc ingress of an interface of the current network namespace (replacing ours). */
  attach(ifname: string, kind: HookKind): void {
    const ifindex = c.ifNameToIndex(ifname) as number;
    if (ifindex === 0) throw new DatapathError('DATAPATH_ATTACH', `${ifname}: if_nametoindex`, errno());
    const hook = tcHook(ifindex);
    const created = bpf.tcHookCreate(hook) as number;
    if (created !== 0 && created !== -17) throw new DatapathError('DATAPATH_ATTACH', `${ifname}: bpf_tc_hook_create`, created);
    const rc = bpf.tcAttach(hook, tcOpts(this.#progFds[kind], BPF_TC_F_REPLACE)) as number;
    if (rc !== 0) throw new DatapathError('DATAPATH_ATTACH', `${ifname}: bpf_tc_attach (${PROGRAMS[kind]})`, rc);
    this.#attached.set(ifname, ifindex);
  }

  /** Detaches and removes the clsact hook of an interface we attached to. Missing interfaces are fine. */
  detach(ifname: string): void {
    const ifindex = this.#attached.get(ifname);
    if (ifindex === undefined) return;
    this.#attached.delete(ifname);
    bpf.mapDelete(this.#maps.podIfaces, u32(ifindex)); // ENOENT (an uplink) is fine
    if ((c.ifNameToIndex(ifname) as number) !== ifindex) return; // the veth went away with its pod
    const hook = tcHook(ifindex);
    bpf.tcDetach(hook, tcOpts(0, 0));
    bpf.tcHookDestroy(hook);
  }

  get attached(): readonly string[] {
    return [...this.#attached.keys()];
  }

  /** Closes the object without touching the hooks (a successor's program is on them; its lookup is attached too). */
  release(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#attached.clear();
    this.#detachLookup();
    bpf.objectClose(this.#obj);
  }

  #detachLookup(): void {
    if (this.#lookupLink !== undefined) bpf.linkDestroy(this.#lookupLink);
    this.#lookupLink = undefined;
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#detachLookup();
    for (const ifname of [...this.#attached.keys()]) this.detach(ifname);
    bpf.objectClose(this.#obj);
  }

  #update(fd: number, key: Buffer, value: Buffer, name: string): void {
    const rc = bpf.mapUpdate(fd, key, value, BPF_ANY) as number;
    if (rc !== 0) throw new DatapathError('DATAPATH_MAP', `bpf_map_update_elem ${name}`, rc);
  }
}
