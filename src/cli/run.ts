// `ztunnel-ts run`: the node daemon.
import type { Command } from 'commander';
import { App } from '../app.js';
import { configFromFlags } from '../config/config.js';
import { addSharedOptions, exitOnSignals } from './daemon-options.js';
import { createLogger } from './logger.js';

export function registerRun(program: Command): void {
  const cmd = program
    .command('run')
    .description('run the node daemon')
    .requiredOption('--node <name>', 'this node, as pods name it in spec.nodeName');
  addSharedOptions(cmd, 'node token for --ca-url (ztunnel-ts ca token --node NAME)')
    .option('--capture <mode>', 'none (SOCKS5 entry only) or ebpf (tc capture, transparent listeners)', 'none')
    .option('--uplink <ifname...>', 'with --capture ebpf: interfaces to the other nodes')
    .option('--socks5 [ip:port]', 'serve SOCKS5 into the outbound path (default 127.0.0.1:15080)')
    .option('--admin <ip:port>', 'admin endpoint (config_dump, logging, quitquitquit, flows)', '127.0.0.1:15000')
    .option('--metrics <ip:port>', 'Prometheus endpoint', '0.0.0.0:15020')
    .option('--readiness <ip:port>', 'readiness endpoint', '0.0.0.0:15021')
    .option('--max-connections <n>', 'proxied connections open at once; more are refused (0: no limit)', '0')
    .option('--max-connections-per-source <n>', 'the same, per source pod IP (0: no limit)', '0')
    .option('--max-hbone-streams <n>', 'HBONE streams a peer may open on one connection', '200')
    .option('--workers <n>', 'threads that run the data path: a number, or auto (max(2, CPUs/4), leaving one CPU, within the CPU limit; 1 without --capture ebpf)', 'auto')
    .option('--takeover', "upgrade: take over from this node's running daemon (done anyway when one answers on --admin)")
    .option('--memory-trim <seconds>', 'seconds between returns of what a burst left to the kernel: the young generation once idle, glibc\'s free pages (0: never)', '10')
    .option('--no-splice', 'with --capture ebpf: copy every plain TCP connection in the daemon instead of having the kernel splice its two sockets')
    .action(async (flags: Record<string, unknown>) => {
      const config = configFromFlags(flags);
      const logger = createLogger(config.logLevel, config.logFormat);
      let app: App | undefined;
      // A successor's POST /drain: drain, but leave the hooks, rule and sysctls to it.
      const stop = exitOnSignals(logger, (reason) => app?.drain(config.drainMs, { handOver: reason === 'handover' }) ?? Promise.resolve());
      app = await App.start(config, logger, { onQuit: () => stop('quitquitquit'), onHandOver: () => stop('handover') });
    });
}
