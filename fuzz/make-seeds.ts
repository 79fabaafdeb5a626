// Writes the committed seed corpus (fuzz/corpus/<target>/) from real inputs: the project's own example
// manifests, the authorization conformance corpus's policies, a real CSR and token, typical SOCKS5
// requests, HBONE headers and request lines. Run again after adding a target:
//   npm run build && node dist/fuzz/make-seeds.js
import { createHash } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse, stringify } from 'yaml';
import { createCsr } from '../src/identity/csr.js';
import { generateKeyPair } from '../src/identity/keys.js';
import { issueNodeToken } from '../src/identity/tokens.js';

const repo = join(import.meta.dirname, '..', '..');
const corpus = join(repo, 'fuzz', 'corpus');

function write(target: string, inputs: Buffer[]): void {
  const dir = join(corpus, target);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  for (const b of inputs) writeFileSync(join(dir, createHash('sha1').update(b).digest('hex')), b);
  console.log(`${target}: ${inputs.length} seeds`);
}

function yamlFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((n) => {
    const p = join(dir, n);
    return statSync(p).isDirectory() ? yamlFiles(p) : n.endsWith('.yaml') ? [p] : [];
  });
}

const b = (...bytes: number[]): Buffer => Buffer.from(bytes);
write('socks5', [
  b(0, 5, 1, 0),
  b(0, 5, 2, 0, 2),
  b(1, 5, 1, 0, 1, 10, 244, 1, 10, 0x1f, 0x90),
  b(1, 5, 1, 0, 4, 0xfd, 0, 0, 0x10, 2, 0x44, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0x10, 0, 80),
  b(1, 5, 1, 0, 3, 4, 0x63, 0x61, 0x72, 0x74, 0, 80),
  b(1, 4, 1, 0, 1, 127, 0, 0, 1, 0, 80),
]);

write('hbone-headers', [
  '10.244.2.10:9080\nk8s.namespace.name=shop,k8s.pod.name=client,service.name=client,service.version=v1',
  '[fd00:10:244:2::10]:15008\nk8s.namespace.name=shop',
  '[::ffff:10.0.0.1]:80\n',
  '10.96.0.20:80\nk8s.pod.name=a=b,,=x',
].map((s) => Buffer.from(s)));

const line = (method: number, target: string): Buffer => Buffer.concat([b(method), Buffer.from(target, 'latin1')]);
write('waypoint-request', [
  line(0, '/reviews/1?x=1&y=2'),
  line(0, 'http://reviews.app.svc.cluster.local:9080/v1/a?q'),
  line(2, '*'),
  line(0, '//admin/../users/./x%2e%2e/'),
  line(1, '/api/%2F..%2Fadmin#frag'),
  Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'),
  Buffer.from('GET / HTTP/1.1\r\nhost: a\r\n\r\n'),
]);

const manifests = yamlFiles(join(repo, 'manifests')).map((f) => readFileSync(f)).filter((t) => t.length <= 16384);
write('manifests', manifests);

// The conformance corpus's policies, one spec each (first byte: enforcer), with targetRefs variants for the waypoint.
const cases = parse(readFileSync(join(repo, 'test', 'fixtures', 'conformance', 'authz-cases.yaml'), 'utf8')) as { policies?: { spec?: unknown }[] }[];
const specs = new Map<string, unknown>();
for (const c of cases) for (const p of c.policies ?? []) specs.set(JSON.stringify(p.spec ?? {}), p.spec ?? {});
const policySeeds = [...specs.values()].slice(0, 60).map((s) => Buffer.concat([b(0), Buffer.from(stringify(s))]));
policySeeds.push(Buffer.concat([b(1), Buffer.from(stringify({ targetRefs: [{ kind: 'Service', group: '', name: 'reviews' }], action: 'DENY', rules: [{ to: [{ operation: { methods: ['POST'], paths: ['/admin/*'] } }] }] }))]));
write('authz-policy', policySeeds);

const csr = await createCsr('spiffe://cluster.local/ns/app/sa/client');
const der = Buffer.from(csr.csrPem.replace(/-----[^-]+-----|\s/g, ''), 'base64');
const token = await issueNodeToken((await generateKeyPair()).privateKey, 'node-1');
write('ca', [Buffer.concat([b(0), Buffer.from(csr.csrPem)]), Buffer.concat([b(1), der]), Buffer.concat([b(2), Buffer.from(token)])]);
