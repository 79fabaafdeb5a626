// Flags and signal handling that the node daemon (`run`) and the waypoint (`waypoint`) share.
import type { Command } from 'commander';
import type { Logger } from 'pino';

/** Where state and certificates come from, and how to log. */
export function addSharedOptions(cmd: Command, caTokenHelp: string): Command {
  return cmd
    .option('--manifests <path>', 'local mode: Kubernetes YAML file or directory (watched)')
    .option('--kube', 'cluster mode: read the API server with informers')
    .option('--kubeconfig <file>', 'with --kube: kubeconfig file (default: in-cluster config)')
    .option('--trust-domain <td>', 'SPIFFE trust domain', 'cluster.local')
    .option('--root-namespace <ns>', 'AuthorizationPolicies here apply mesh-wide', 'istio-system')
    .option('--ca-dir <dir>', 'embedded CA state in Istio cacerts layout (default: certs)')
    .option('--ca-url <url>', 'standalone CA (ztunnel-ts ca serve), e.g. https://127.0.0.1:15012')
    .option('--ca-token <file>', caTokenHelp)
    .option('--ca-root <file>', 'root certificate that signed the CA server certificate')
    .option('--cert-ttl <seconds>', 'certificate lifetime', '86400')
    .option('--drain-seconds <s>', 'how long SIGTERM waits for open connections', '5')
    .option('--log-level <level>', 'trace, debug, info, warn, error', 'info')
    .option('--log-format <fmt>', 'json or pretty', 'json');
}

/** On SIGTERM/SIGINT (or a call of the returned function): close once, then exit. */
export function exitOnSignals(logger: Logger, close: (reason: string) => Promise<void>): (reason: string) => void {
  let stopping = false;
  const stop = (reason: string): void => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal: reason }, 'shutting down');
    close(reason).then(
      () => process.exit(0),
      (err: unknown) => {
        logger.error({ err }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  return stop;
}
