// The lab: a multi-node cluster of network namespaces on one machine, never linked to the host's own
// namespace (src/lab/network.ts builds it, IPv4 or dual stack). One daemon per node (eBPF capture) and a
// standalone CA in the fabric netns. `down` removes all of it, also after a crash, by name prefix.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DAEMON_NODE_FLAGS } from '../cli/node-flags.js';
import { originalsFile } from '../datapath/node-config.js';
import { CA_AUDIENCE } from '../identity/node-authenticator.js';
import { formatHostPort } from '../model/address.js';
import { apiUrl } from './control-plane.js';
import { accountKubeconfig, labControlPlaneLayout, loadLabObjects, podKubeconfig, podToken, startLabControlPlane, ztunnelPodName, type LabKube } from './kube-lab.js';
import { buildNetwork } from './network.js';
import { FABRIC_BRIDGE_IP, FABRIC_NETNS, NETNS_PREFIX, SERVICE_CIDR, planLab, type LabNode, type LabPod } from './plan.js';
import { LabError, alive, nsArgs, run, spawnDetachedIn } from './shell.js';

export const LAB_DIR = process.env['ZTUNNEL_LAB_DIR'] ?? '/run/ztunnel-ts-lab';
const CLI = fileURLToPath(new URL('../cli/main.js', import.meta.url));
const READY_TIMEOUT_MS = 20_000;
export { SERVICE_CIDR };

export interface LabState {
  readonly nodes: (LabNode & { pid: number; log: string; args: string[] })[];
  readonly pods: LabPod[];
  readonly ca: { pid: number; log: string };
  /** Waypoint processes, one per waypoint pod. */
  readonly waypoints?: { pod: string; pid: number; log: string }[];
  readonly manifests: string;
  /** Set by `lab up --kube`: the control plane that holds the objects (the daemons do not read `manifests`). */
  readonly kube?: LabKube;
}

export interface LabStatus {
  nodes: { name: string; netns: string; ip: string; pid: number; ready: boolean }[];
  waypoints: { pod: string; pid: number; ready: boolean }[];
  pods: { namespace: string; name: string; node: string; ip: string; ips: readonly string[]; netns: string }[];
  /** With `lab up --kube`: the control plane's processes. */
  controlPlane?: { api: string; etcd: number; apiserver: number; controllerManager: number; running: boolean };
}

const statePath = (): string => join(LAB_DIR, 'state.json');

export function labNetns(): string[] {
  return run('ip', ['netns', 'list'])
    .split('\n')
    .map((l) => l.split(' ')[0] ?? '')
    .filter((n) => n.startsWith(NETNS_PREFIX));
}

/** Starts a ztunnel-ts process in netns, with node's flags as the image gives them (and any extra). */
function spawnIn(netns: string, args: string[], log: string, nodeArgs: readonly string[] = []): number {
  return spawnDetachedIn(netns, process.execPath, [...DAEMON_NODE_FLAGS, ...nodeArgs, CLI, ...args], log);
}

function logHas(log: string, msg: string): boolean {
  return existsSync(log) && readFileSync(log, 'utf8').includes(`"msg":"${msg}"`);
}

async function waitForLog(log: string, msg: string, pid: number): Promise<void> {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (logHas(log, msg)) return;
    if (!alive(pid)) throw new LabError(`process ${pid} exited before "${msg}"; see ${log}:\n${tail(log)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new LabError(`no "${msg}" in ${log} after ${READY_TIMEOUT_MS} ms:\n${tail(log)}`);
}

function tail(log: string): string {
  // Stack frames left out: the message above them is what says why.
  return existsSync(log) ? readFileSync(log, 'utf8').split('\n').filter((l) => !/^\s+at /.test(l)).slice(-8).join('\n') : '';
}

export function readLabState(): LabState | undefined {
  return existsSync(statePath()) ? (JSON.parse(readFileSync(statePath(), 'utf8')) as LabState) : undefined;
}

export interface UpOptions {
  /** Extra flags for every daemon. */
  readonly daemonArgs?: readonly string[];
  /** Flags for node itself in every daemon (e.g. --cpu-prof for profiling). */
  readonly nodeArgs?: readonly string[];
  /** Extra flags for every waypoint. */
  readonly waypointArgs?: readonly string[];
  /** A real control plane in the fabric namespace holds the objects; everything runs in --kube mode. */
  readonly kube?: boolean;
  /** Every node and pod gets an IPv6 address beside its IPv4 one. */
  readonly dualStack?: boolean;
}

export async function labUp(manifestPath: string, opts: UpOptions = {}): Promise<LabState> {
  if (readLabState() !== undefined || labNetns().length > 0) throw new LabError('a lab is already up (or left over): run `ztunnel-ts lab down` first');
  const plan = planLab(manifestPath, { dualStack: opts.dualStack === true });
  mkdirSync(LAB_DIR, { recursive: true, mode: 0o700 });
  const manifests = join(LAB_DIR, 'manifests.yaml');
  writeFileSync(manifests, plan.manifestText);
  try {
    buildNetwork(plan.nodes, plan.pods);
    let kube: LabKube | undefined;
    if (opts.kube === true) {
      kube = await startLabControlPlane(join(LAB_DIR, 'k8s'), (k) => writeFileSync(statePath(), JSON.stringify({ nodes: [], pods: plan.pods, ca: { pid: 0, log: '' }, manifests, kube: k })));
      await loadLabObjects(kube, plan);
    }
    const caDir = join(LAB_DIR, 'ca');
    run(process.execPath, [CLI, 'ca', 'init', '--dir', caDir]);
    const caLog = join(LAB_DIR, 'ca.log');
    const caUrl = ['--ca-url', `https://${FABRIC_BRIDGE_IP}:15012`, '--ca-root', join(caDir, 'root-cert.pem')];
    // Where state comes from: the manifests file (watched), or the API server with a token of the process's own.
    const source = (account: { namespace: string; name: string; serviceAccount: string } | undefined, file: string): string[] =>
      kube === undefined ? ['--manifests', manifests]
      : ['--kube', '--kubeconfig', account === undefined ? accountKubeconfig(kube, 'istio-system', 'ztunnel-ca', file) : podKubeconfig(kube, account, file)];
    const caPid = spawnIn(FABRIC_NETNS, ['ca', 'serve', '--dir', caDir, ...source(undefined, join(LAB_DIR, 'ca.kubeconfig')), '--listen', `${FABRIC_BRIDGE_IP}:15012`], caLog);
    const partial: LabState = { nodes: [], pods: plan.pods, ca: { pid: caPid, log: caLog }, manifests, ...(kube === undefined ? {} : { kube }) };
    writeFileSync(statePath(), JSON.stringify(partial));
    await waitForLog(caLog, 'ca serving', caPid);
    /** The credential a process shows the CA: a lab token, or in --kube mode a TokenRequest token bound to its pod. */
    const caToken = (account: { namespace: string; name: string; serviceAccount: string }, lab: string[], file: string): string => {
      if (kube === undefined) run(process.execPath, [CLI, 'ca', 'token', '--dir', caDir, ...lab, '--out', file]);
      else writeFileSync(file, podToken(kube, account, CA_AUDIENCE), { mode: 0o600 });
      return file;
    };
    const nodes: LabState['nodes'] = [];
    for (const n of plan.nodes) {
      const account = { namespace: 'istio-system', name: ztunnelPodName(n.name), serviceAccount: 'ztunnel' };
      const token = caToken(account, ['--node', n.name], join(LAB_DIR, `${n.name}.jwt`));
      const log = join(LAB_DIR, `${n.name}.log`);
      const args = [
        'run', '--node', n.name, ...source(account, join(LAB_DIR, `${n.name}.kubeconfig`)), '--capture', 'ebpf', '--uplink', 'eth0',
        ...caUrl, '--ca-token', token, ...(opts.daemonArgs ?? []),
      ];
      const pid = spawnIn(n.netns, args, log, opts.nodeArgs);
      nodes.push({ ...n, pid, log, args });
      writeFileSync(statePath(), JSON.stringify({ ...partial, nodes }));
    }
    for (const n of nodes) await waitForLog(n.log, 'ztunnel-ts ready', n.pid);
    const waypoints: NonNullable<LabState['waypoints']> = [];
    for (const p of plan.pods) {
      if (p.waypoint === undefined) continue;
      const ref = `${p.namespace}/${p.name}`;
      const account = { namespace: p.namespace, name: p.name, serviceAccount: p.waypoint.serviceAccount };
      // A pod token: the waypoint may obtain its own identity and nothing else.
      const token = caToken(account, ['--pod', ref], join(LAB_DIR, `${p.namespace}.${p.name}.jwt`));
      const log = join(LAB_DIR, `waypoint.${p.namespace}.${p.name}.log`);
      const args = [
        'waypoint', '--name', p.waypoint.name, '--namespace', p.namespace, '--service-account', p.waypoint.serviceAccount,
        ...source(account, join(LAB_DIR, `${p.namespace}.${p.name}.kubeconfig`)), ...caUrl, '--ca-token', token, '--listen', p.ips.map((ip) => formatHostPort(ip, 15008)).join(','),
        ...(opts.waypointArgs ?? []),
      ];
      waypoints.push({ pod: ref, pid: spawnIn(p.netns, args, log), log });
      writeFileSync(statePath(), JSON.stringify({ ...partial, nodes, waypoints }));
    }
    for (const w of waypoints) await waitForLog(w.log, 'waypoint ready', w.pid);
    const state: LabState = { ...partial, nodes, waypoints };
    writeFileSync(statePath(), JSON.stringify(state));
    return state;
  } catch (err) {
    await labDown();
    throw err;
  }
}

/** Stops every lab process and removes every lab namespace. Safe to run twice, and after a crash. */
export async function labDown(): Promise<void> {
  const state = readLabState();
  const kube = state?.kube === undefined ? [] : [state.kube.pids.controllerManager, state.kube.pids.apiserver, state.kube.pids.etcd];
  const pids = state === undefined ? [] : [...(state.waypoints ?? []).map((w) => w.pid), ...state.nodes.map((n) => n.pid), state.ca.pid, ...kube].filter((p) => p > 0);
  for (const pid of pids) if (alive(pid)) process.kill(pid, 'SIGTERM');
  const deadline = Date.now() + 5000;
  while (pids.some(alive) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  for (const pid of pids) if (alive(pid)) process.kill(pid, 'SIGKILL');
  // Processes started in lab namespaces by hand (lab exec) die with nothing to talk to; kill what is left.
  for (const ns of labNetns()) {
    // A killed daemon leaves the node settings' originals behind: they go with the namespace.
    rmSync(originalsFile(`/run/netns/${ns}`), { force: true });
    for (const pid of run('ip', ['netns', 'pids', ns], { allowFail: true }).split('\n').filter(Boolean)) {
      try {
        process.kill(Number(pid), 'SIGKILL');
      } catch {
        // already gone
      }
    }
    run('ip', ['netns', 'del', ns], { allowFail: true });
  }
  rmSync(LAB_DIR, { recursive: true, force: true });
}

/** Starts a node's daemon again (after it was killed), with other flags if given, and waits until it is ready. */
export async function labRestartNode(name: string, args?: string[]): Promise<void> {
  const state = readLabState();
  const node = state?.nodes.find((n) => n.name === name);
  if (state === undefined || node === undefined) throw new LabError(`no node ${name} in the lab`);
  if (alive(node.pid)) throw new LabError(`node ${name}'s daemon (pid ${node.pid}) is still running`);
  const pid = await startNodeDaemon(node, args ?? node.args, 'become ready again');
  writeFileSync(statePath(), JSON.stringify({ ...state, nodes: state.nodes.map((n) => (n === node ? { ...n, pid, args: args ?? n.args } : n)) }));
}

/** Starts a daemon for node with args, and waits for its own "ztunnel-ts ready" line; returns its pid. */
async function startNodeDaemon(node: LabState['nodes'][number], args: string[], what: string): Promise<number> {
  const offset = existsSync(node.log) ? readFileSync(node.log, 'utf8').length : 0;
  const pid = spawnIn(node.netns, args, node.log);
  const deadline = Date.now() + READY_TIMEOUT_MS;
  // The log may be shared with a daemon still running (an upgrade): only this process's line counts.
  const readyLine = new RegExp(`"pid":${pid},[^\n]*"msg":"ztunnel-ts ready"`);
  while (!readyLine.test(readFileSync(node.log, 'utf8').slice(offset))) {
    if (!alive(pid) || Date.now() > deadline) throw new LabError(`the daemon of ${node.name} (pid ${pid}) did not ${what}:\n${tail(node.log)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return pid;
}

/**
 * Upgrades a node's daemon in place: starts a new one with the same flags while the old one runs; the new
 * one joins the listener groups, swaps its program onto the hooks, tells the old one to drain, and serves.
 * Resolves when the new one is ready (and reports when the old one has exited).
 */
export async function labUpgradeNode(name: string): Promise<{ pid: number; previous: number; readyMs: number; oldExited: Promise<void> }> {
  const state = readLabState();
  const node = state?.nodes.find((n) => n.name === name);
  if (state === undefined || node === undefined) throw new LabError(`no node ${name} in the lab`);
  if (!alive(node.pid)) throw new LabError(`node ${name}'s daemon (pid ${node.pid}) is not running: use a restart, not an upgrade`);
  const started = Date.now();
  const pid = await startNodeDaemon(node, node.args, 'take over');
  const readyMs = Date.now() - started;
  writeFileSync(statePath(), JSON.stringify({ ...state, nodes: state.nodes.map((n) => (n === node ? { ...n, pid } : n)) }));
  const previous = node.pid;
  const oldExited = (async () => {
    while (alive(previous)) await new Promise((r) => setTimeout(r, 50));
  })();
  return { pid, previous, readyMs, oldExited };
}

export function labStatus(): LabStatus {
  const state = readLabState();
  if (state === undefined) return { nodes: [], waypoints: [], pods: [] };
  return {
    nodes: state.nodes.map((n) => ({ name: n.name, netns: n.netns, ip: n.ip, pid: n.pid, ready: alive(n.pid) && logHas(n.log, 'ztunnel-ts ready') })),
    waypoints: (state.waypoints ?? []).map((w) => ({ pod: w.pod, pid: w.pid, ready: alive(w.pid) && logHas(w.log, 'waypoint ready') })),
    pods: state.pods.map((p) => ({ namespace: p.namespace, name: p.name, node: p.node, ip: p.ip, ips: p.ips ?? [p.ip], netns: p.netns })),
    ...(state.kube === undefined
      ? {}
      : { controlPlane: { api: apiUrl(labControlPlaneLayout(state.kube.dir)), ...state.kube.pids, running: Object.values(state.kube.pids).every(alive) } }),
  };
}

export function findPod(ref: string): LabPod {
  const [namespace, name] = ref.includes('/') ? ref.split('/', 2) : ['default', ref];
  const pod = readLabState()?.pods.find((p) => p.namespace === namespace && p.name === name);
  if (pod === undefined) throw new LabError(`no pod ${namespace}/${name} in the lab`);
  return pod;
}

/** Runs a command inside a pod's network namespace, with the caller's stdio. */
export function labExec(ref: string, cmd: readonly string[]): number {
  const pod = findPod(ref);
  const [bin, ...args] = cmd;
  if (bin === undefined) throw new LabError('lab exec needs a command after --');
  const r = spawnSync('nsenter', nsArgs(pod.netns, bin, args), { stdio: 'inherit' });
  return r.status ?? 1;
}
