// `ztunnel-ts run`: the node daemon.
import type { Command } from 'commander';
import { App } from '../app.js';
import { configFromFlags } from '../config/config.js';
import { createLogger } from './logger.js';

export function registerRun(program: Command): void {
  program
    .command('run')
    .description('run the node daemon')
    .requiredOption('--node <name>', 'this node, as pods name it in spec.nodeName')
    .option('--manifests <path>', 'local mode: Kubernetes YAML file or directory (watched)')
    .option('--kube', 'cluster mode: read the API server with informers')
    .option('--kubeconfig <file>', 'with --kube: kubeconfig file (default: in-cluster config)')
    .option('--trust-domain <td>', 'SPIFFE trust domain', 'cluster.local')
    .option('--root-namespace <ns>', 'AuthorizationPolicies here without a selector apply mesh-wide', 'istio-system')
    .option('--ca-dir <dir>', 'embedded CA state in Istio cacerts layout (default: certs)')
    .option('--ca-url <url>', 'standalone CA (ztunnel-ts ca serve), e.g. https://127.0.0.1:15012')
    .option('--ca-token <file>', 'node token for --ca-url')
    .option('--ca-root <file>', 'root certificate that signed the CA server certificate')
    .option('--cert-ttl <seconds>', 'workload certificate lifetime', '86400')
    .option('--capture <mode>', 'none (SOCKS5 entry only) or ebpf (tc capture, transparent listeners)', 'none')
    .option('--uplink <ifname...>', 'with --capture ebpf: interfaces to the other nodes')
    .option('--socks5 [ip:port]', 'serve SOCKS5 into the outbound path (default 127.0.0.1:15080)')
    .option('--admin <ip:port>', 'admin endpoint (config_dump, logging, quitquitquit, flows)', '127.0.0.1:15000')
    .option('--metrics <ip:port>', 'Prometheus endpoint', '0.0.0.0:15020')
    .option('--readiness <ip:port>', 'readiness endpoint', '0.0.0.0:15021')
    .option('--drain-seconds <s>', 'how long SIGTERM waits for open connections', '5')
    .option('--log-level <level>', 'trace, debug, info, warn, error', 'info')
    .option('--log-format <fmt>', 'json or pretty', 'json')
    .action(async (flags: Record<string, unknown>) => {
      const config = configFromFlags(flags);
      const logger = createLogger(config.logLevel, config.logFormat);
      const app = await App.start(config, logger, { onQuit: () => stop('quitquitquit') });
      let stopping = false;
      const stop = (signal: string): void => {
        if (stopping) return;
        stopping = true;
        logger.info({ signal }, 'shutting down');
        app.drain().then(
          () => process.exit(0),
          (err: unknown) => {
            logger.error({ err }, 'drain failed');
            process.exit(1);
          },
        );
      };
      process.on('SIGTERM', () => stop('SIGTERM'));
      process.on('SIGINT', () => stop('SIGINT'));
    });
}
