// `ztunnel-ts ca init | issue | inspect | token | serve`: the built-in CA from the command line.
import { readFileSync, writeFileSync } from 'node:fs';
import { isIP } from 'node:net';
import type { Command } from 'commander';
import { CaServer } from '../identity/ca-server.js';
import { CertificateAuthority, DEFAULT_WORKLOAD_TTL_MS, uriSans } from '../identity/ca.js';
import { splitPemCertificates, x509 } from '../identity/keys.js';
import { issueNodeToken, issuePodToken } from '../identity/tokens.js';
import { tokenReviewAuthenticator, type NodeAuthenticator } from '../identity/node-authenticator.js';
import { parseIdentity } from '../model/identity.js';
import { State } from '../model/state.js';
import { ManifestSource } from '../sources/manifests.js';
import { createLogger } from './logger.js';
import { UsageError } from './usage-error.js';

function positiveSeconds(v: string, flag: string): number {
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0) throw new UsageError(`${flag}: expected a positive number of seconds, got "${v}"`);
  return n;
}

function describeCert(pem: string): string {
  const c = new x509.X509Certificate(pem);
  const lines = [
    `subject:    ${c.subject || '(empty)'}`,
    `issuer:     ${c.issuer}`,
    `serial:     ${c.serialNumber}`,
    `not before: ${c.notBefore.toISOString()}`,
    `not after:  ${c.notAfter.toISOString()}`,
  ];
  const uris = uriSans(c);
  if (uris.length > 0) lines.push(`uri sans:   ${uris.join(', ')}`);
  return lines.join('\n');
}

export function registerCa(program: Command): void {
  const ca = program.command('ca').description('the built-in certificate authority');

  ca.command('init')
    .description('create a root CA in DIR (Istio cacerts layout), or show the one there')
    .option('--dir <dir>', 'CA state directory', 'certs')
    .option('--trust-domain <td>', 'trust domain', 'cluster.local')
    .action(async (o: { dir: string; trustDomain: string }) => {
      const authority = await CertificateAuthority.loadOrInit(o.dir, o.trustDomain);
      process.stdout.write(`CA in ${o.dir}\n${describeCert(authority.rootPem)}\n`);
    });

  ca.command('issue')
    .description('issue a workload SVID and write <out>.pem and <out>-key.pem')
    .requiredOption('--identity <spiffe>', 'spiffe://TD/ns/NS/sa/SA')
    .option('--dir <dir>', 'CA state directory', 'certs')
    .option('--ttl <seconds>', 'lifetime', String(DEFAULT_WORKLOAD_TTL_MS / 1000))
    .option('--out <prefix>', 'file name prefix', 'workload')
    .action(async (o: { identity: string; dir: string; ttl: string; out: string }) => {
      if (parseIdentity(o.identity) === undefined) {
        throw new UsageError(`--identity: expected spiffe://TD/ns/NS/sa/SA, got "${o.identity}"`);
      }
      const authority = await CertificateAuthority.load(o.dir);
      const svid = await authority.issue(o.identity, { ttlMs: positiveSeconds(o.ttl, '--ttl') * 1000 });
      writeFileSync(`${o.out}.pem`, svid.chainPem.join(''));
      writeFileSync(`${o.out}-key.pem`, svid.keyPem, { mode: 0o600 });
      process.stdout.write(`wrote ${o.out}.pem and ${o.out}-key.pem\n${describeCert(svid.certPem)}\n`);
    });

  ca.command('inspect')
    .description('describe the certificates in a PEM file')
    .argument('<file>')
    .action((file: string) => {
      const certs = splitPemCertificates(readFileSync(file, 'utf8'));
      if (certs.length === 0) throw new UsageError(`${file}: no PEM certificate found`);
      process.stdout.write(certs.map(describeCert).join('\n\n') + '\n');
    });

  ca.command('token')
    .description('issue a token (JWT) for `ca serve`: a node token (run --ca-token) or a pod token (waypoint --ca-token)')
    .option('--node <name>', 'node the token speaks for: any identity of its pods')
    .option('--pod <ns/name>', 'pod the token speaks for: that pod\'s own identity only')
    .option('--dir <dir>', 'CA state directory', 'certs')
    .option('--ttl <seconds>', 'lifetime', String(365 * 24 * 3600))
    .option('--out <file>', 'write to this file (mode 0600) instead of stdout')
    .action(async (o: { node?: string; pod?: string; dir: string; ttl: string; out?: string }) => {
      if ((o.node === undefined) === (o.pod === undefined)) throw new UsageError('give either --node NAME or --pod NAMESPACE/NAME');
      const pod = o.pod?.split('/');
      if (pod !== undefined && (pod.length !== 2 || pod.some((p) => p === ''))) throw new UsageError(`--pod must be NAMESPACE/NAME, got "${o.pod ?? ''}"`);
      const authority = await CertificateAuthority.load(o.dir);
      const ttl = positiveSeconds(o.ttl, '--ttl');
      const token = pod === undefined ? await issueNodeToken(authority.tokenKey, o.node ?? '', ttl) : await issuePodToken(authority.tokenKey, pod[0] ?? '', pod[1] ?? '', ttl);
      if (o.out === undefined) process.stdout.write(`${token}\n`);
      else writeFileSync(o.out, `${token}\n`, { mode: 0o600 });
    });

  ca.command('serve')
    .description('run the CA on its own: HTTPS CSR endpoint with node-restricted issuance')
    .option('--manifests <path>', 'local mode: the same manifests the daemons read (pods on which node)')
    .option('--kube', 'cluster mode: pods from the API server; daemons authenticate with ServiceAccount tokens (TokenReview)')
    .option('--kubeconfig <file>', 'with --kube: kubeconfig (default: in-cluster)')
    .option('--allowed-sa <ns/name...>', 'with --kube: node daemons\' service accounts (any identity on their node); other pods get only their own', ['istio-system/ztunnel'])
    .option('--dir <dir>', 'CA state directory', 'certs')
    .option('--trust-domain <td>', 'trust domain', 'cluster.local')
    .option('--listen <ip:port>', 'address to serve on', '127.0.0.1:15012')
    .option('--san <name...>', 'extra DNS names or IPs for the serving certificate')
    .option('--max-ttl <seconds>', 'longest certificate it will sign', String(DEFAULT_WORKLOAD_TTL_MS / 1000))
    .option('--log-level <level>', 'log level', 'info')
    .option('--log-format <fmt>', 'json or pretty', 'json')
    .action(async (o: { manifests?: string; kube?: boolean; kubeconfig?: string; allowedSa: string[]; dir: string; trustDomain: string; listen: string; san?: string[]; maxTtl: string; logLevel: string; logFormat: string }) => {
      if ((o.manifests === undefined) === (o.kube !== true)) throw new UsageError('give either --manifests PATH or --kube');
      const m = /^(.*):(\d+)$/.exec(o.listen);
      if (m === null || isIP(m[1] ?? '') === 0) throw new UsageError(`--listen: expected IP:PORT, got "${o.listen}"`);
      if (o.logFormat !== 'json' && o.logFormat !== 'pretty') throw new UsageError(`--log-format: expected json or pretty`);
      const logger = createLogger(o.logLevel, o.logFormat);
      const authority = await CertificateAuthority.loadOrInit(o.dir, o.trustDomain);
      const state = new State();
      let source: { start(): Promise<void>; close(): Promise<void> };
      let authenticate: NodeAuthenticator | undefined;
      if (o.kube === true) {
        const { KubeSource, kubeApi } = await import('../sources/kube.js');
        const { kubeTokenReviewApi } = await import('../identity/kube-token-review.js');
        source = new KubeSource({ state, trustDomain: o.trustDomain, logger: logger.child({ component: 'kube' }), kubeconfig: o.kubeconfig });
        authenticate = tokenReviewAuthenticator(kubeTokenReviewApi(kubeApi(o.kubeconfig)), o.allowedSa);
      } else {
        source = new ManifestSource({ path: o.manifests ?? '', state, trustDomain: o.trustDomain, logger: logger.child({ component: 'manifests' }) });
      }
      await source.start();
      const server = new CaServer({
        ca: authority,
        state,
        trustDomain: o.trustDomain,
        logger,
        host: m[1] as string,
        port: Number(m[2]),
        serverNames: o.san ?? [],
        maxTtlMs: positiveSeconds(o.maxTtl, '--max-ttl') * 1000,
        ...(authenticate === undefined ? {} : { authenticate }),
      });
      const addr = await server.start();
      logger.info({ address: `${addr.address}:${addr.port}`, root: `${o.dir}/root-cert.pem` }, 'ca serving');
      const stop = (): void => {
        void Promise.all([server.close(), source.close()]).then(() => process.exit(0));
      };
      process.on('SIGTERM', stop);
      process.on('SIGINT', stop);
    });
}
