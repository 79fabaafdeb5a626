// `ztunnel-ts authz check`: what the daemon would decide for one connection, through its own code path.
import type { Command } from 'commander';
import { PolicyEngine } from '../authz/engine.js';
import { formatAddress, parseAuthority } from '../hbone/headers.js';
import { canonicalIp } from '../model/address.js';
import { parseIdentity } from '../model/identity.js';
import { State } from '../model/state.js';
import { listManifestFiles, readManifestFile } from '../sources/manifests.js';
import { translate } from '../sources/translate.js';
import { WaypointPolicies } from '../waypoint/policies.js';
import { UsageError } from './usage-error.js';

interface CheckFlags {
  file: string;
  srcIp: string;
  srcIdentity?: string;
  dst: string;
  json?: boolean;
  trustDomain: string;
  rootNamespace: string;
  method?: string;
  path?: string;
  host?: string;
  header?: string[];
}

export function registerAuthz(program: Command): void {
  const authz = program.command('authz').description('AuthorizationPolicy tools');
  authz
    .command('check')
    .description('evaluate one connection against the manifests as the daemon would')
    .requiredOption('-f, --file <path>', 'manifests (file or directory) with the destination pod and the policies')
    .requiredOption('--src-ip <ip>', 'source address of the connection')
    .option('--src-identity <spiffe>', 'source identity (mTLS); omit for a plaintext source')
    .requiredOption('--dst <ip:port>', 'destination pod IP and target port; with --method, the address the client used (a VIP)')
    .option('--method <method>', 'an HTTP request: evaluated at the waypoint that serves --dst (targetRefs policies)')
    .option('--path <path>', 'with --method: request path', '/')
    .option('--host <host>', 'with --method: Host header (default: --dst)')
    .option('--header <name:value...>', 'with --method: request headers')
    .option('--json', 'print one JSON object')
    .option('--trust-domain <td>', 'trust domain', 'cluster.local')
    .option('--root-namespace <ns>', 'root namespace', 'istio-system')
    .action((o: CheckFlags) => {
      const srcIp = canonicalIp(o.srcIp);
      if (srcIp === undefined) throw new UsageError(`--src-ip: not an IP address: "${o.srcIp}"`);
      // Any spelling of an address names the same pod (fd00::A and FD00:0::a alike).
      o.srcIp = srcIp;
      if (o.srcIdentity !== undefined && parseIdentity(o.srcIdentity) === undefined) {
        throw new UsageError(`--src-identity: expected spiffe://TD/ns/NS/sa/SA, got "${o.srcIdentity}"`);
      }
      const dst = parseAuthority(o.dst);
      if (dst === undefined) throw new UsageError(`--dst: expected IP:PORT, got "${o.dst}"`);
      const objects = listManifestFiles(o.file).flatMap((f) => readManifestFile(f));
      const state = new State();
      state.replace(translate(objects, { trustDomain: o.trustDomain }));
      if (o.method !== undefined) return checkAtWaypoint(state, o, dst);
      const dstWorkload = state.workloadByIp(dst.ip);
      if (dstWorkload === undefined) throw new UsageError(`--dst: no pod with IP ${dst.ip} in ${o.file}`);
      const engine = new PolicyEngine({ state, rootNamespace: o.rootNamespace });
      const req = { src: { ip: o.srcIp, port: 0 }, dst, srcIdentity: o.srcIdentity, dstWorkload };
      const d = engine.decide(req);
      const warnings = engine.warningsFor(req);
      if (o.json === true) {
        const out = { decision: d.allow ? 'allow' : 'deny', policy: d.policy ?? null, rule: d.rule ?? null, reason: d.reason, warnings };
        process.stdout.write(`${JSON.stringify(out)}\n`);
        return;
      }
      const lines = [
        d.allow ? 'ALLOW' : 'DENY',
        `  destination: ${dstWorkload.namespace}/${dstWorkload.name} (${dstWorkload.identity})`,
        `  source:      ${o.srcIp} ${o.srcIdentity ?? '(plaintext)'}`,
        `  policy:      ${d.policy === undefined ? '-' : `${d.policy} rule ${d.rule ?? '-'}`}`,
        `  reason:      ${d.reason}`,
        ...(warnings.length > 0 ? ['  warnings:', ...warnings.map((w) => `    - ${w}`)] : []),
      ];
      process.stdout.write(`${lines.join('\n')}\n`);
    });
}

/** An HTTP request as the waypoint serving the destination would decide it. */
function checkAtWaypoint(state: State, o: CheckFlags, dst: { ip: string; port: number }): void {
  const service = state.serviceByVip(dst.ip);
  const uid = service !== undefined ? service.waypoint : state.workloadByIp(dst.ip)?.waypoint;
  if (uid === undefined) {
    throw new UsageError(`--dst: ${dst.ip} has no waypoint in ${o.file}; HTTP attributes are only enforced by a waypoint (without --method: the L4 check)`);
  }
  const [namespace = '', name = ''] = uid.split('/');
  const headers: Record<string, string> = {};
  for (const h of o.header ?? []) {
    const colon = h.indexOf(':');
    if (colon <= 0) throw new UsageError(`--header: expected NAME:VALUE, got "${h}"`);
    headers[h.slice(0, colon).trim().toLowerCase()] = h.slice(colon + 1).trim();
  }
  const policies = new WaypointPolicies({ state, rootNamespace: o.rootNamespace, waypoint: { name, namespace } });
  const host = o.host ?? `${formatAddress(dst)}`;
  const d = policies.decide(service, {
    srcIp: o.srcIp,
    srcIdentity: o.srcIdentity,
    dstIp: dst.ip,
    dstPort: dst.port,
    http: { host, method: (o.method ?? 'GET').toUpperCase(), path: (o.path ?? '/').split('?')[0] ?? '/', headers, remoteIp: o.srcIp },
  });
  const applied = new Set(policies.applicable(service));
  const warnings = policies.policies.filter((p) => p.authorization !== undefined && applied.has(p.authorization)).flatMap((p) => p.warnings.map((w) => `${p.namespace}/${p.name}: ${w}`));
  if (o.json === true) {
    process.stdout.write(`${JSON.stringify({ decision: d.allow ? 'allow' : 'deny', waypoint: uid, policy: d.policy ?? null, rule: d.rule ?? null, reason: d.reason, warnings })}\n`);
    return;
  }
  const lines = [
    d.allow ? 'ALLOW' : 'DENY (403)',
    `  waypoint:    ${uid}`,
    `  destination: ${service === undefined ? `${formatAddress(dst)}` : `${service.uid} (${formatAddress(dst)})`}`,
    `  request:     ${(o.method ?? 'GET').toUpperCase()} ${o.path ?? '/'} host ${host}`,
    `  source:      ${o.srcIp} ${o.srcIdentity ?? '(plaintext)'}`,
    `  policy:      ${d.policy === undefined ? '-' : `${d.policy} rule ${d.rule ?? '-'}`}`,
    `  reason:      ${d.reason}`,
    ...(warnings.length > 0 ? ['  warnings:', ...warnings.map((w) => `    - ${w}`)] : []),
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
}
