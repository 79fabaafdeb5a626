// `ztunnel-ts route check`: where the daemon on the source's node would send one new connection, and why,
// through its own decision code (buildOutboundRequest and the shared endpoint chooser).
import type { Command } from 'commander';
import { formatAddress, parseAuthority } from '../hbone/headers.js';
import { canonicalIp } from '../model/address.js';
import { State } from '../model/state.js';
import type { Service, Workload } from '../model/types.js';
import { EndpointPicker } from '../proxy/endpoint-picker.js';
import { buildOutboundRequest, type OutboundRequest } from '../proxy/outbound-request.js';
import { listManifestFiles, readManifestFile } from '../sources/manifests.js';
import { translate } from '../sources/translate.js';
import { UsageError } from './usage-error.js';

interface RouteFlags {
  file: string;
  srcIp: string;
  dst: string;
  json?: boolean;
  trustDomain: string;
}

const where = (w: Workload): string => `${w.node}${w.locality.zone === undefined ? '' : ` zone ${w.locality.zone}`}`;

function policyLine(s: Service): string {
  const affinity = s.sessionAffinity === undefined ? 'None' : `ClientIP ${s.sessionAffinity.timeoutSeconds}s`;
  return `trafficDistribution ${s.trafficDistribution ?? '-'}, internalTrafficPolicy ${s.internalTrafficPolicy}, sessionAffinity ${affinity}`;
}

function outcome(req: OutboundRequest): string {
  switch (req.kind) {
    case 'reject':
      return `refused (${req.flag}): ${req.reason}`;
    case 'hbone':
      return `HBONE to ${formatAddress(req.nextHop)} for ${formatAddress(req.target)} (${req.dstWorkload.identity})${req.waypoint === undefined ? '' : ` via waypoint ${req.waypoint}`}`;
    case 'local':
      return `same node: delivered in-process to ${formatAddress(req.target)}`;
    case 'tcp':
      return `plain TCP to ${formatAddress(req.target)} (destination not in the mesh)`;
  }
}

export function registerRoute(program: Command): void {
  const route = program.command('route').description('Service endpoint choice tools');
  route
    .command('check')
    .description('explain which endpoints a new connection may use, which are excluded and why, and which one is picked')
    .requiredOption('-f, --file <path>', 'manifests (file or directory) with the pods, nodes and services')
    .requiredOption('--src-ip <ip>', 'the client pod (its node is where the decision is made)')
    .requiredOption('--dst <ip:port>', 'the address the client connects to (a Service VIP and port, or a pod)')
    .option('--json', 'print one JSON object')
    .option('--trust-domain <td>', 'trust domain', 'cluster.local')
    .action((o: RouteFlags) => {
      const srcIp = canonicalIp(o.srcIp);
      if (srcIp === undefined) throw new UsageError(`--src-ip: not an IP address: "${o.srcIp}"`);
      // Any spelling of an address names the same pod (fd00::A and FD00:0::a alike).
      o.srcIp = srcIp;
      const dst = parseAuthority(o.dst);
      if (dst === undefined) throw new UsageError(`--dst: expected IP:PORT, got "${o.dst}"`);
      const state = new State();
      state.replace(translate(listManifestFiles(o.file).flatMap((f) => readManifestFile(f)), { trustDomain: o.trustDomain }));
      const src = state.workloadByIp(o.srcIp);
      if (src === undefined) throw new UsageError(`--src-ip: no pod with IP ${o.srcIp} in ${o.file}`);
      if (!src.captured) throw new UsageError(`--src-ip: ${src.namespace}/${src.name} is not in the mesh: its connections do not go through ztunnel-ts`);
      // No connections are open here, so the pick among equals is a draw: the daemon balances by open connections.
      const req = buildOutboundRequest({ state, nodeName: src.node, hbonePort: 15008, endpoints: new EndpointPicker() }, src, dst);
      const service = state.serviceByVip(dst.ip);
      const endpoints = (req.considered ?? []).map((v) => ({
        verdict: v.verdict,
        workload: v.endpoint.uid,
        ip: v.endpoint.ip,
        node: v.endpoint.node,
        zone: v.endpoint.locality.zone ?? null,
        why: v.why,
      }));
      if (o.json === true) {
        const out = {
          source: { workload: src.uid, node: src.node, zone: src.locality.zone ?? null },
          service: service === undefined ? null : { uid: service.uid, trafficDistribution: service.trafficDistribution ?? null, internalTrafficPolicy: service.internalTrafficPolicy, sessionAffinity: service.sessionAffinity ?? null },
          endpoints,
          result: req.kind === 'reject' ? { kind: 'reject', flag: req.flag, reason: req.reason } : { kind: req.kind, target: formatAddress(req.target), workload: req.dstWorkload?.uid ?? null },
        };
        process.stdout.write(`${JSON.stringify(out)}\n`);
        return;
      }
      const width = Math.max(0, ...endpoints.map((e) => e.verdict.length));
      const lines = [
        `source:   ${src.uid} (${src.ip}) on ${where(src)}`,
        `to:       ${formatAddress(dst)}${service === undefined ? '' : ` = service ${service.uid}: ${policyLine(service)}`}`,
        ...(endpoints.length === 0 ? [] : ['endpoints:', ...endpoints.map((e) => `  ${e.verdict.padEnd(width)}  ${e.workload} ${e.ip} on ${e.node}${e.zone === null ? '' : ` zone ${e.zone}`}: ${e.why}`)]),
        `result:   ${outcome(req)}`,
      ];
      process.stdout.write(`${lines.join('\n')}\n`);
    });
}
