// `ztunnel-ts lab up | down | status | exec`: the multi-node lab of network namespaces.
import type { Command } from 'commander';
import { labDown, labExec, labStatus, labUp } from '../lab/lab.js';

export function registerLab(program: Command): void {
  const lab = program.command('lab').description('a multi-node cluster of network namespaces on this machine');
  lab
    .command('up')
    .description('build nodes, pods and routes, start the CA and one daemon per node')
    .requiredOption('-f, --file <path>', 'manifests (file or directory)')
    .action(async (o: { file: string }) => {
      const state = await labUp(o.file);
      process.stdout.write(`lab up: ${state.nodes.length} nodes, ${state.pods.length} pods (ztunnel-ts lab status)\n`);
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
      const lines = [
        ...s.nodes.map((n) => `node ${n.name}  ${n.ip}  netns ${n.netns}  pid ${n.pid}  ${n.ready ? 'ready' : 'NOT READY'}`),
        ...s.pods.map((p) => `pod  ${p.namespace}/${p.name}  ${p.ip}  on ${p.node}  netns ${p.netns}`),
        ...s.waypoints.map((w) => `waypoint in ${w.pod}  pid ${w.pid}  ${w.ready ? 'ready' : 'NOT READY'}`),
      ];
      process.stdout.write(`${lines.length === 0 ? 'no lab' : lines.join('\n')}\n`);
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
