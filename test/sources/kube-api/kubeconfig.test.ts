// Which API server a kubeconfig names and how the daemon authenticates to it; bad files say where.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { chooseEndpoint, inClusterChoice, loadApiEndpoint } from '../../../src/sources/kube-api/kubeconfig.js';

const doc = (cluster: Record<string, unknown>, user: Record<string, unknown> | undefined, extra: Record<string, unknown> = {}): unknown => ({
  apiVersion: 'v1',
  kind: 'Config',
  clusters: [{ name: 'c', cluster: { server: 'https://10.0.0.1:6443', ...cluster } }],
  users: user === undefined ? [] : [{ name: 'u', user }],
  contexts: [{ name: 'ctx', context: { cluster: 'c', ...(user === undefined ? {} : { user: 'u' }) } }],
  'current-context': 'ctx',
  ...extra,
});

t.test('what a kubeconfig says', async (t) => {
  const file = '/etc/kube/config';
  const pem = Buffer.from('-----BEGIN CERTIFICATE-----\n');
  const cases: { name: string; doc: unknown; want: Record<string, unknown> }[] = [
    { name: 'a token and a CA file, relative to the kubeconfig', doc: doc({ 'certificate-authority': 'ca.crt' }, { token: 'abc' }), want: { ca: { file: '/etc/kube/ca.crt' }, auth: { kind: 'token', token: 'abc' }, insecure: false } },
    { name: 'a token file, read again for each request', doc: doc({}, { tokenFile: '/var/run/token' }), want: { auth: { kind: 'tokenFile', file: '/var/run/token' } } },
    { name: 'inline CA and client certificate', doc: doc({ 'certificate-authority-data': pem.toString('base64') }, { 'client-certificate-data': pem.toString('base64'), 'client-key-data': pem.toString('base64') }), want: { ca: { data: pem }, cert: { data: pem }, key: { data: pem }, auth: { kind: 'none' } } },
    { name: 'exec credentials go to the library that implements them', doc: doc({}, { exec: { command: 'aws', args: ['eks', 'get-token'] } }), want: { auth: { kind: 'plugin', kubeconfig: file } } },
    { name: 'basic auth', doc: doc({}, { username: 'me', password: 'pw' }), want: { auth: { kind: 'basic', username: 'me', password: 'pw' } } },
    { name: 'no user at all', doc: doc({ 'insecure-skip-tls-verify': true, 'tls-server-name': 'kubernetes' }, undefined), want: { auth: { kind: 'none' }, insecure: true, servername: 'kubernetes' } },
  ];
  for (const c of cases) t.match(chooseEndpoint(c.doc, file), { server: new URL('https://10.0.0.1:6443'), ...c.want }, c.name);
});

t.test('a kubeconfig that cannot be used names the file and the field', async (t) => {
  const file = '/etc/kube/config';
  const cases: { name: string; doc: unknown; error: RegExp }[] = [
    { name: 'no such context', doc: doc({}, { token: 'x' }, { 'current-context': 'other' }), error: /^kubeconfig \/etc\/kube\/config: current-context: no context named "other"/ },
    { name: 'no such cluster', doc: { ...(doc({}, { token: 'x' }) as object), clusters: [{ name: 'd', cluster: { server: 'https://a' } }] }, error: /contexts\[0\]\.context\.cluster: no cluster named "c"/ },
    { name: 'a certificate without its key', doc: doc({}, { 'client-certificate': 'c.pem' }), error: /users\[0\]\.user: a client certificate needs its key/ },
    { name: 'not base64', doc: doc({ 'certificate-authority-data': '%%%' }, { token: 'x' }), error: /cluster\.certificate-authority-data: not base64/ },
    { name: 'a proxy', doc: doc({ 'proxy-url': 'http://proxy:3128' }, { token: 'x' }), error: /cluster\.proxy-url: proxies are not supported/ },
    { name: 'a server that is not a URL', doc: doc({ server: 'not a url' }, { token: 'x' }), error: /cluster\.server: not a URL/ },
    { name: 'a field of the wrong type', doc: doc({ 'insecure-skip-tls-verify': 'yes' }, { token: 'x' }), error: /clusters\[0\]\.cluster\.insecure-skip-tls-verify: / },
    { name: 'not a kubeconfig', doc: 'hello', error: /\(document\)/ },
  ];
  for (const c of cases) t.throws(() => chooseEndpoint(c.doc, file), { code: 'KUBECONFIG_INVALID', message: c.error }, c.name);
});

t.test('in-cluster: the kubernetes Service from the environment and the mounted ServiceAccount', async (t) => {
  t.match(inClusterChoice({ KUBERNETES_SERVICE_HOST: '10.96.0.1', KUBERNETES_SERVICE_PORT: '443' }, '/sa'), {
    server: new URL('https://10.96.0.1:443'), ca: { file: '/sa/ca.crt' }, auth: { kind: 'tokenFile', file: '/sa/token' },
  });
  t.equal(inClusterChoice({ KUBERNETES_SERVICE_HOST: 'fd00::1', KUBERNETES_SERVICE_PORT: '443' }).server.host, '[fd00::1]', 'an IPv6 Service address');
  t.throws(() => inClusterChoice({}), { code: 'KUBECONFIG_INVALID', message: /not in a cluster.*pass --kubeconfig/ }, 'outside a cluster, without --kubeconfig');
});

t.test('loading reads the files a kubeconfig names, and says which one is missing', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'ztunnel-ts-kubeconfig-'));
  writeFileSync(join(dir, 'ca.crt'), 'CA');
  writeFileSync(join(dir, 'good'), JSON.stringify(doc({ 'certificate-authority': 'ca.crt' }, { token: 't' })));
  writeFileSync(join(dir, 'bad'), JSON.stringify(doc({ 'certificate-authority': 'missing.crt' }, { token: 't' })));
  writeFileSync(join(dir, 'yaml'), 'clusters: [');
  t.equal(loadApiEndpoint(join(dir, 'good')).ca?.toString(), 'CA');
  t.throws(() => loadApiEndpoint(join(dir, 'bad')), { code: 'KUBECONFIG_INVALID', message: new RegExp(`kubeconfig ${dir}/bad: cannot read the certificate authority ${dir}/missing.crt`) });
  t.throws(() => loadApiEndpoint(join(dir, 'yaml')), { code: 'KUBECONFIG_INVALID', message: /yaml: \(document\): not YAML/ });
  t.throws(() => loadApiEndpoint(join(dir, 'absent')), { code: 'KUBECONFIG_INVALID', message: /absent: ENOENT/ });
});
