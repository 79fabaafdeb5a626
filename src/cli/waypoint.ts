// `ztunnel-ts waypoint`: the built-in waypoint proxy for one Gateway of class istio-waypoint.
import type { Command } from 'commander';
import { waypointConfigFromFlags } from '../config/waypoint-config.js';
import { WaypointApp } from '../waypoint/waypoint-app.js';
import { addSharedOptions, exitOnSignals } from './daemon-options.js';
import { createLogger } from './logger.js';

export function registerWaypoint(program: Command): void {
  const cmd = program
    .command('waypoint')
    .description('run a waypoint: HBONE in, HTTP routing and L7 AuthorizationPolicy, HBONE out')
    .requiredOption('--name <name>', 'the Gateway (gatewayClassName istio-waypoint) this process implements')
    .requiredOption('--namespace <ns>', 'namespace of that Gateway')
    .option('--service-account <sa>', 'service account of the waypoint pods (default: the Gateway name)');
  addSharedOptions(cmd, 'pod token for --ca-url (ztunnel-ts ca token --pod NAMESPACE/NAME)')
    .option('--listen <ip:port>', 'HBONE listener, or one per address (comma-separated) of a dual-stack pod; a specific IP is also the source of connections to endpoints of its family; 0.0.0.0 listens on both families', '0.0.0.0:15008')
    .option('--admin <ip:port>', 'admin endpoint (config_dump, logging, quitquitquit, flows)', '127.0.0.1:15000')
    .option('--metrics <ip:port>', 'Prometheus endpoint', '0.0.0.0:15020')
    .option('--readiness <ip:port>', 'readiness endpoint', '0.0.0.0:15021')
    .option('--memory-trim <seconds>', 'seconds between collections of the young generation a burst grew, once idle (0: never)', '10')
    .action(async (flags: Record<string, unknown>) => {
      const config = waypointConfigFromFlags(flags);
      const logger = createLogger(config.logLevel, config.logFormat);
      let app: WaypointApp | undefined;
      const stop = exitOnSignals(logger, () => app?.close() ?? Promise.resolve());
      app = await WaypointApp.start(config, logger, { onQuit: () => stop('quitquitquit') });
    });
}
