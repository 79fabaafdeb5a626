// Daemon settings: every source (flags, environment) ends as one validated, frozen Config.
import { isIP } from 'node:net';
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { z } from 'zod';
import { DEFAULT_TRUST_DOMAIN } from '../model/identity.js';

export class ConfigError extends Error {
  readonly code = 'CONFIG_INVALID';

  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

export const DEFAULT_SOCKS5 = { host: '127.0.0.1', port: 15080 } as const;

function parseHostPort(v: string, ctx: z.RefinementCtx): { host: string; port: number } {
  const m = /^(.*):(\d{1,5})$/.exec(v);
  const host = m?.[1]?.replace(/^\[(.*)\]$/, '$1') ?? '';
  const port = Number(m?.[2]);
  if (m === null || isIP(host) === 0 || port > 65535) {
    ctx.addIssue({ code: 'custom', message: `expected IP:PORT, got "${v}"` });
    return z.NEVER;
  }
  return { host, port };
}

const hostPort = z.union([z.literal(true), z.string()]).transform((v, ctx) => (v === true ? DEFAULT_SOCKS5 : parseHostPort(v, ctx)));
export const address = (fallback: string) => z.string().default(fallback).transform(parseHostPort);
/** One or more IP:PORT, comma-separated (a listener on each address of a dual-stack pod). */
export const addresses = (fallback: string) =>
  z
    .string()
    .default(fallback)
    .transform((v, ctx) => v.split(',').map((part) => parseHostPort(part.trim(), ctx)));

export const seconds = (name: string) =>
  z.coerce.number({ error: `${name} must be a number of seconds` }).positive(`${name} must be positive`);

const count = (name: string) => z.coerce.number({ error: `${name} must be a number` }).int(`${name} must be a whole number`).min(0, `${name} must not be negative`);

/** Flags the node daemon and the waypoint share: where state and certificates come from, logging. */
export const sharedFlags = {
  manifests: z.string().min(1).optional(),
  kube: z.boolean().default(false),
  kubeconfig: z.string().min(1).optional(),
  rootNamespace: z.string().regex(/^[a-z0-9-]+$/, 'root namespace must be a Kubernetes namespace name').default('istio-system'),
  trustDomain: z.string().regex(/^[a-z0-9.-]+$/, 'trust domain must be lowercase letters, digits, dots and dashes').default(DEFAULT_TRUST_DOMAIN),
  caDir: z.string().min(1).optional(),
  caUrl: z.url({ protocol: /^https$/, error: '--ca-url must be an https:// URL' }).optional(),
  caToken: z.string().min(1).optional(),
  caRoot: z.string().min(1).optional(),
  certTtl: seconds('--cert-ttl').default(24 * 3600),
  drainSeconds: seconds('--drain-seconds').default(5),
  logLevel: z.enum(['trace', 'debug', 'info', 'warn', 'error']).default('info'),
  logFormat: z.enum(['json', 'pretty']).default('json'),
  memoryTrim: count('--memory-trim').default(10),
};

type SharedFlags = { caUrl?: string | undefined; caDir?: string | undefined; caToken?: string | undefined; caRoot?: string | undefined; manifests?: string | undefined; kube: boolean };

export function checkSharedFlags(f: SharedFlags, ctx: z.RefinementCtx): void {
  if (f.caUrl !== undefined && f.caDir !== undefined) {
    ctx.addIssue({ code: 'custom', message: 'use either --ca-dir or --ca-url, not both' });
  }
  if ((f.manifests === undefined) === !f.kube) {
    ctx.addIssue({ code: 'custom', message: 'give either --manifests PATH or --kube' });
  }
  if (f.caUrl !== undefined && (f.caToken === undefined || f.caRoot === undefined)) {
    ctx.addIssue({ code: 'custom', message: '--ca-url needs --ca-token FILE and --ca-root FILE' });
  }
}

export function caConfigOf(f: SharedFlags): CaConfig {
  return f.caUrl !== undefined
    ? { mode: 'remote', url: f.caUrl, tokenFile: f.caToken as string, rootFile: f.caRoot as string }
    : { mode: 'embedded', dir: f.caDir ?? 'certs' };
}

/** Validates with schema; throws ConfigError with one line naming the flag at fault. */
export function parseFlags<T>(schema: z.ZodType<T>, raw: Record<string, unknown>): T {
  const r = schema.safeParse(raw);
  if (!r.success) {
    const issue = r.error.issues[0];
    const flag = issue?.path[0] === undefined ? '' : `--${String(issue.path[0]).replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}: `;
    throw new ConfigError(`${issue?.message.startsWith('--') === true ? '' : flag}${issue?.message ?? 'invalid flags'}`);
  }
  return r.data;
}

export const runFlagsSchema = z
  .object({
    node: z.string({ error: '--node is required' }).min(1, '--node is required'),
    ...sharedFlags,
    socks5: hostPort.optional(),
    capture: z.enum(['none', 'ebpf'], { error: '--capture must be none or ebpf' }).default('none'),
    uplink: z.array(z.string().min(1)).default([]),
    admin: address('127.0.0.1:15000'),
    metrics: address('0.0.0.0:15020'),
    readiness: address('0.0.0.0:15021'),
    maxConnections: count('--max-connections').default(0),
    maxConnectionsPerSource: count('--max-connections-per-source').default(0),
    maxHboneStreams: count('--max-hbone-streams').min(1, '--max-hbone-streams must be at least 1').default(200),
    takeover: z.boolean().default(false),
    splice: z.boolean().default(true),
    workers: z.union([z.literal('auto'), count('--workers').min(1, '--workers must be at least 1 (or auto)').max(16, '--workers must be at most 16')], { error: '--workers must be a number or auto' }).default('auto'),
  })
  .superRefine((f, ctx) => {
    checkSharedFlags(f, ctx);
    if (f.takeover && f.capture !== 'ebpf') ctx.addIssue({ code: 'custom', message: '--takeover needs --capture ebpf (it joins the transparent listeners)' });
    if (typeof f.workers === 'number' && f.workers > 1 && f.capture !== 'ebpf') {
      ctx.addIssue({ code: 'custom', message: '--workers above 1 needs --capture ebpf (the workers share the transparent listeners through SO_REUSEPORT)' });
    }
    if (f.capture === 'ebpf' && f.uplink.length === 0) {
      ctx.addIssue({ code: 'custom', message: '--capture ebpf needs --uplink IFNAME (the interface to other nodes)' });
    }
  });

export type CaConfig =
  | { readonly mode: 'embedded'; readonly dir: string }
  | { readonly mode: 'remote'; readonly url: string; readonly tokenFile: string; readonly rootFile: string };

type Address = { readonly host: string; readonly port: number };

/** What the node daemon and the waypoint both need: where state and certificates come from, logging. */
export interface SharedConfig {
  /** Local mode: a YAML file or directory. Undefined in cluster mode. */
  readonly manifests: string | undefined;
  /** Cluster mode: read the API server (kubeconfig file, or in-cluster config when undefined). */
  readonly kube: { readonly kubeconfig: string | undefined } | undefined;
  readonly trustDomain: string;
  /** Policies here without a selector apply mesh-wide. */
  readonly rootNamespace: string;
  readonly ca: CaConfig;
  readonly certTtlMs: number;
  readonly hbonePort: number;
  readonly drainMs: number;
  readonly metricsAddress: Address;
  /** /healthz/ready. */
  readonly readinessAddress: Address;
  readonly logLevel: 'trace' | 'debug' | 'info' | 'warn' | 'error';
  readonly logFormat: 'json' | 'pretty';
  /** Milliseconds between returns of what a burst left to the kernel (src/runtime/memory-trim.ts); 0: never. */
  readonly memoryTrimMs: number;
}

export function sharedConfigOf(f: z.infer<z.ZodObject<typeof sharedFlags>> & { metrics: Address; readiness: Address }): SharedConfig {
  return {
    manifests: f.manifests,
    kube: f.kube ? { kubeconfig: f.kubeconfig } : undefined,
    trustDomain: f.trustDomain,
    rootNamespace: f.rootNamespace,
    ca: caConfigOf(f),
    certTtlMs: f.certTtl * 1000,
    hbonePort: 15008,
    drainMs: f.drainSeconds * 1000,
    metricsAddress: f.metrics,
    readinessAddress: f.readiness,
    logLevel: f.logLevel,
    logFormat: f.logFormat,
    memoryTrimMs: f.memoryTrim * 1000,
  };
}

export interface Config extends SharedConfig {
  readonly nodeName: string;
  readonly socks5: Address | undefined;
  /** none: SOCKS5 entry, HBONE on each local pod's IP; ebpf: tc capture and transparent listeners. */
  readonly capture: 'none' | 'ebpf';
  /** Interfaces that connect the node to other nodes (tc ingress hook). */
  readonly uplinks: readonly string[];
  /** /config_dump, /logging, /quitquitquit, /flows. */
  readonly adminAddress: Address;
  readonly upstreamConnectMs: number;
  /** Proxied connections open at once, in all and per source IP; 0 is no limit. */
  readonly maxConnections: number;
  readonly maxConnectionsPerSource: number;
  /** HBONE streams a peer may open on one connection to us (and at most 100 on ours to a peer). */
  readonly maxHboneStreams: number;
  /** Take over from this node's running daemon (also done without the flag when one answers on the admin address). */
  readonly takeover: boolean;
  /** Threads that run the data path; 1: all in the daemon's own thread. */
  readonly workers: number;
  /** With eBPF capture: the kernel carries the bytes of plain TCP connections between their two sockets (bpf/splice.bpf.c). */
  readonly splice: boolean;
}

/**
 * ztunnel's rule, max(2, a quarter of the CPUs), leaving one CPU to the control plane and the workloads, and
 * never more than the cgroup's CPU limit: a Node worker is a whole V8 isolate (~45 MB) with its own event
 * loop, and on a 2-CPU node a second one only contends (bench/results/2026-12-01/workers.md: the same rate,
 * 12% more CPU per connection). Without eBPF capture there is one: only transparent listeners are shared.
 */
export function autoWorkers(capture: 'none' | 'ebpf', cpus = availableParallelism(), cpuLimit = cgroupCpuLimit()): number {
  if (capture !== 'ebpf') return 1;
  return Math.max(1, Math.min(Math.max(2, Math.floor(cpus / 4)), cpus - 1, (cpuLimit ?? Infinity) - 1, 16));
}

/** CPUs the cgroup may use (cgroup v2 cpu.max "QUOTA PERIOD"), rounded up; undefined when unlimited. */
function cgroupCpuLimit(): number | undefined {
  try {
    const [quota, period] = readFileSync('/sys/fs/cgroup/cpu.max', 'utf8').trim().split(/\s+/);
    if (quota === undefined || quota === 'max' || period === undefined) return undefined;
    return Math.ceil(Number(quota) / Number(period));
  } catch {
    return undefined;
  }
}

/** Validates raw flag values; throws ConfigError with one line naming the flag at fault. */
export function configFromFlags(raw: Record<string, unknown>): Config {
  const f = parseFlags(runFlagsSchema, raw);
  return Object.freeze({
    ...sharedConfigOf(f),
    nodeName: f.node,
    socks5: f.socks5,
    capture: f.capture,
    uplinks: f.uplink,
    adminAddress: f.admin,
    upstreamConnectMs: 10_000,
    maxConnections: f.maxConnections,
    maxConnectionsPerSource: f.maxConnectionsPerSource,
    maxHboneStreams: f.maxHboneStreams,
    takeover: f.takeover,
    workers: f.workers === 'auto' ? autoWorkers(f.capture) : f.workers,
    splice: f.splice && f.capture === 'ebpf',
  });
}
