import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import t from 'tap';
import { CaServer } from '../../src/identity/ca-server.js';
import { CertificateAuthority } from '../../src/identity/ca.js';
import { x509 } from '../../src/identity/keys.js';
import { RemoteCaSource } from '../../src/identity/source.js';
import { issueNodeToken, issuePodToken } from '../../src/identity/tokens.js';
import { State } from '../../src/model/state.js';
import { parseManifestText } from '../../src/sources/manifests.js';
import { translate } from '../../src/sources/translate.js';
import { meshManifests } from '../helpers/loopback.js';

t.test('standalone CA: node tokens and node-restricted issuance', async (t) => {
  const ca = await CertificateAuthority.create('cluster.local');
  const state = new State();
  state.replace(translate(parseManifestText('m.yaml', meshManifests({ net: 203 })), { trustDomain: 'cluster.local' }));
  const logs: Record<string, unknown>[] = [];
  const logger = pino({ level: 'info' }, { write: (s: string) => logs.push(JSON.parse(s) as Record<string, unknown>) });
  const server = new CaServer({ ca, state, trustDomain: 'cluster.local', logger, host: '127.0.0.1', port: 0, maxTtlMs: 3600_000 });
  const addr = await server.start();
  t.teardown(() => server.close());
  const dir = mkdtempSync(join(tmpdir(), 'ztunnel-ts-token-'));
  const source = async (token: string, ttlMs = 600_000): Promise<RemoteCaSource> => {
    const file = join(dir, `${Math.random()}.jwt`);
    writeFileSync(file, token);
    return new RemoteCaSource({ url: `https://127.0.0.1:${addr.port}`, tokenFile: file, rootPem: ca.rootPem, ttlMs });
  };
  // Lifetime written in the certificate: notBefore is backdated 60 s for clock skew, both in whole seconds.
  const lifetimeMs = (pem: string): number => {
    const c = new x509.X509Certificate(pem);
    return c.notAfter.getTime() - c.notBefore.getTime() - 60_000;
  };
  const node1 = await source(await issueNodeToken(ca.tokenKey, 'node-1'));

  const svid = await node1.fetch('spiffe://cluster.local/ns/app/sa/client');
  t.equal(svid.identity, 'spiffe://cluster.local/ns/app/sa/client');
  t.equal(lifetimeMs(svid.certPem), 600_000, 'requested TTL honoured: exactly 10 minutes');
  const long = await (await source(await issueNodeToken(ca.tokenKey, 'node-1'), 7200_000)).fetch('spiffe://cluster.local/ns/app/sa/client');
  t.equal(lifetimeMs(long.certPem), 3600_000, 'a TTL above the CA maximum is cut to the maximum (1 h)');

  await t.rejects(node1.fetch('spiffe://cluster.local/ns/legacy/sa/default'), { code: 'CA_FORBIDDEN' }, 'identity with no pod on node-1');
  const refusal = logs.find((l) => String(l['msg']).includes('no pod with this identity'));
  t.match(refusal, { node: 'node-1', identity: 'spiffe://cluster.local/ns/legacy/sa/default', level: 40 }, 'refusal is logged');

  await t.rejects(node1.fetch('spiffe://evil.example/ns/app/sa/client'), { code: 'CA_FORBIDDEN' }, 'foreign trust domain');

  const other = await CertificateAuthority.create('cluster.local');
  const forged = await source(await issueNodeToken(other.tokenKey, 'node-1'));
  await t.rejects(forged.fetch('spiffe://cluster.local/ns/app/sa/client'), { code: 'CA_UNAUTHENTICATED' }, 'token from another key');

  // A pod token (what a waypoint presents) obtains its own pod's identity and nothing else, not even
  // the identities of other pods on its node.
  const pod = await source(await issuePodToken(ca.tokenKey, 'app', 'echo-a'));
  t.equal((await pod.fetch('spiffe://cluster.local/ns/app/sa/echo')).identity, 'spiffe://cluster.local/ns/app/sa/echo', 'pod token: its own identity');
  await t.rejects(pod.fetch('spiffe://cluster.local/ns/legacy/sa/default'), { code: 'CA_FORBIDDEN' }, 'pod token: a neighbour on the same node is refused');
  t.match(logs.findLast((l) => String(l['msg']).includes('no pod with this identity')), { pod: 'app/echo-a', identity: 'spiffe://cluster.local/ns/legacy/sa/default' }, 'the refusal names the pod');
  const gone = await source(await issuePodToken(ca.tokenKey, 'app', 'no-such-pod'));
  await t.rejects(gone.fetch('spiffe://cluster.local/ns/app/sa/echo'), { code: 'CA_FORBIDDEN' }, 'pod token of a pod that does not exist');
});
