// `ztunnel-ts lab up | down | status | exec`: the multi-node lab of network namespaces.
import type { Command } from 'commander';
import { spawnSync } from 'node:child_process';
import { goTool } from '../lab/go-tools.js';
import { labDown, labExec, labStatus, labUp, labUpgradeNode, readLabState } from '../lab/lab.js';
import { FABRIC_NETNS } from '../lab/plan.js';
import { nsArgs } from '../lab/shell.js';
import { UsageError } from './usage-error.js';

export function registerLab(program: Command): void {
  const lab = program.command('lab').description('a multi-node cluster of network namespaces on this machine');
  lab
    .command('up')
    .description('build nodes, pods and routes, start the CA and one daemon per node')
    .requiredOption('-f, --file <path>', 'manifests (file or directory)')
    .option('--kube', 'a real control plane (etcd, kube-apiserver, kube-controller-manager, built with Go) holds the objects; use `lab kubectl`')
    .option('--dual-stack', 'every node and pod gets an IPv6 address (fd00:10:244:N::/64) beside its IPv4 one; Services may list IPv6 clusterIPs (fd00:10:96::/108)')
    .action(async (o: { file: string; kube?: boolean; dualStack?: boolean }) => {
      const state = await labUp(o.file, { kube: o.kube === true, dualStack: o.dualStack === true });
      const how = state.kube === undefined ? '' : ', objects in kube-apiserver (ztunnel-ts lab kubectl -- get pods -A)';
      process.stdout.write(`lab up: ${state.nodes.length} nodes, ${state.pods.length} pods${how} (ztunnel-ts lab status)\n`);
    });
  lab
    .command('down')
    .description('stop every lab process and remove every lab namespace (idempotent)')
    .action(async () => {
      await labDown();
      process.stdout.write('lab down\n');
    });
  lab
    .command('status')
    .option('--json', 'print JSON')
    .action((o: { json?: boolean }) => {
      const s = labStatus();
      if (o.json === true) {
        process.stdout.write(`${JSON.stringify(s)}\n`);
        return;
      }
      const cp = s.controlPlane;
      const lines = [
        ...(cp === undefined ? [] : [`control plane ${cp.api}  etcd ${cp.etcd}  kube-apiserver ${cp.apiserver}  kube-controller-manager ${cp.controllerManager}  ${cp.running ? 'running' : 'NOT RUNNING'}`]),
        ...s.nodes.map((n) => `node ${n.name}  ${n.ip}  netns ${n.netns}  pid ${n.pid}  ${n.ready ? 'ready' : 'NOT READY'}`),
        ...s.pods.map((p) => `pod  ${p.namespace}/${p.name}  ${p.ips.join(' ')}  on ${p.node}  netns ${p.netns}`),
        ...s.waypoints.map((w) => `waypoint in ${w.pod}  pid ${w.pid}  ${w.ready ? 'ready' : 'NOT READY'}`),
      ];
      process.stdout.write(`${lines.length === 0 ? 'no lab' : lines.join('\n')}\n`);
    });
  lab
    .command('upgrade')
    .description("replace a node's daemon without refusing a connection: the new one takes over, the old one drains")
    .argument('<node>')
    .action(async (node: string) => {
      const r = await labUpgradeNode(node);
      process.stdout.write(`lab upgrade ${node}: pid ${r.pid} serving after ${r.readyMs} ms; pid ${r.previous} draining\n`);
      await r.oldExited;
      process.stdout.write(`lab upgrade ${node}: pid ${r.previous} has exited\n`);
    });
  lab
    .command('kubectl')
    .description('kubectl as admin against a `lab up --kube` control plane: lab kubectl -- ARGS...')
    .argument('<args...>')
    .action((args: string[]) => {
      const kube = readLabState()?.kube;
      if (kube === undefined) throw new UsageError('no lab with a control plane is up: run `ztunnel-ts lab up --kube -f FILE`');
      const r = spawnSync('nsenter', nsArgs(FABRIC_NETNS, goTool('kubectl'), ['--kubeconfig', kube.kubeconfig, ...args]), { stdio: 'inherit' });
      process.exitCode = r.status ?? 1;
    });
  lab
    .command('exec')
    .description('run a command inside a pod: lab exec NS/NAME -- CMD...')
    .argument('<pod>')
    .argument('<cmd...>')
    .action((pod: string, cmd: string[]) => {
      process.exitCode = labExec(pod, cmd);
    });
}
