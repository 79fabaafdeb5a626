// The install manifests are what a cluster will run: check that they say what the daemon accepts.
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { parseAllDocuments } from 'yaml';
import { translatePolicy } from '../src/authz/translate.js';
import { configFromFlags } from '../src/config/config.js';

const root = fileURLToPath(new URL('../../manifests/', import.meta.url));
type Obj = { apiVersion: string; kind: string; metadata: { name: string; namespace?: string }; spec?: Record<string, unknown>; rules?: { resources: string[]; verbs: string[] }[] };
const docs = (file: string): Obj[] => parseAllDocuments(readFileSync(file, 'utf8')).map((d) => d.toJS() as Obj);
const install = readdirSync(join(root, 'install')).sort().flatMap((f) => docs(join(root, 'install', f)));

t.test('every install object has apiVersion, kind and a name', async (t) => {
  for (const o of install) t.ok(o.apiVersion !== undefined && o.kind !== undefined && o.metadata.name !== undefined, `${o.kind} ${o.metadata.name}`);
});

t.test('RBAC is least privilege: reads only, plus tokenreviews create for the CA', async (t) => {
  for (const role of install.filter((o) => o.kind === 'ClusterRole')) {
    for (const rule of role.rules ?? []) {
      const write = rule.verbs.filter((v) => !['get', 'list', 'watch'].includes(v));
      if (write.length > 0) t.same({ role: role.metadata.name, resources: rule.resources, verbs: rule.verbs }, { role: 'ztunnel-ts-ca', resources: ['tokenreviews'], verbs: ['create'] });
    }
  }
});

t.test('the DaemonSet arguments are a valid daemon configuration', async (t) => {
  const ds = install.find((o) => o.kind === 'DaemonSet') as unknown as { spec: { template: { spec: { containers: { args: string[] }[] } } } };
  const args = ds.spec.template.spec.containers[0]?.args ?? [];
  t.equal(args[0], 'run');
  const flags: Record<string, unknown> = {};
  for (const a of args.slice(1)) {
    const [k = '', v] = a.replace(/^--/, '').split('=');
    const key = k.replace(/-([a-z])/g, (_m, c: string) => c.toUpperCase());
    flags[key] = v === undefined ? true : v.replace('$(NODE_NAME)', 'node-1').replace('$(UPLINK)', 'eth0');
  }
  const config = configFromFlags({ ...flags, uplink: [flags['uplink']] });
  t.match(config, { nodeName: 'node-1', capture: 'ebpf', kube: { kubeconfig: undefined }, ca: { mode: 'remote', url: 'https://ztunnel-ca.istio-system.svc:15012' } });
});

t.test('example policies translate with no warnings', async (t) => {
  for (const o of docs(join(root, 'examples', 'policies.yaml'))) {
    const r = translatePolicy({ namespace: o.metadata.namespace ?? 'default', name: o.metadata.name, origin: 'examples', object: o as unknown as Record<string, unknown> });
    t.same(r.warnings, [], o.metadata.name);
    t.ok(r.authorization, `${o.metadata.name} is enforced`);
  }
});
