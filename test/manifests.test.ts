// The install manifests are what a cluster will run: check that they say what the daemon accepts.
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { parseAllDocuments } from 'yaml';
import { translatePolicy } from '../src/authz/translate.js';
import { configFromFlags } from '../src/config/config.js';
import { waypointConfigFromFlags } from '../src/config/waypoint-config.js';
import { WATCHED } from '../src/sources/kube.js';

const root = fileURLToPath(new URL('../../manifests/', import.meta.url));
type Obj = { apiVersion: string; kind: string; metadata: { name: string; namespace?: string }; spec?: Record<string, unknown>; rules?: { apiGroups: string[]; resources: string[]; verbs: string[] }[] };
const docs = (file: string): Obj[] => parseAllDocuments(readFileSync(file, 'utf8')).map((d) => d.toJS() as Obj);
const install = readdirSync(join(root, 'install')).sort().flatMap((f) => docs(join(root, 'install', f)));

t.test('every install object has apiVersion, kind and a name', async (t) => {
  for (const o of install) t.ok(o.apiVersion !== undefined && o.kind !== undefined && o.metadata.name !== undefined, `${o.kind} ${o.metadata.name}`);
});

t.test('RBAC is least privilege: reads only, plus tokenreviews create for the CA', async (t) => {
  const roles = install.filter((o) => o.kind === 'ClusterRole' || o.kind === 'Role');
  t.same(roles.map((r) => r.metadata.name).sort(), ['ztunnel-ts', 'ztunnel-ts-ca', 'ztunnel-ts-waypoint'], 'the roles the install defines');
  const writes: string[] = [];
  for (const role of roles) {
    t.ok((role.rules ?? []).length > 0, `${role.metadata.name} has rules`);
    for (const rule of role.rules ?? []) {
      const what = `${role.metadata.name}: ${rule.verbs.join(',')} ${rule.resources.join(',')}`;
      if (rule.verbs.every((v) => ['get', 'list', 'watch'].includes(v))) t.pass(`${what} (read only)`);
      else writes.push(what);
    }
  }
  t.same(writes, ['ztunnel-ts-ca: create tokenreviews'], 'the only write anywhere is the CA creating TokenReviews');
});

t.test('the daemon, the CA and waypoints may read every kind the informers watch', async (t) => {
  for (const name of ['ztunnel-ts', 'ztunnel-ts-ca', 'ztunnel-ts-waypoint']) {
    const role = install.find((o) => o.kind === 'ClusterRole' && o.metadata.name === name);
    for (const w of WATCHED) {
      const granted = (role?.rules ?? []).some((r) => r.apiGroups.includes(w.group) && r.resources.includes(w.plural) && ['get', 'list', 'watch'].every((v) => r.verbs.includes(v)));
      t.ok(granted, `${name}: ${w.group === '' ? 'core' : w.group}/${w.plural}`);
    }
  }
});

/** A container's args as the flags object commander would give. */
function flagsOf(container: { args: string[] }, vars: Record<string, string> = {}): Record<string, unknown> {
  const flags: Record<string, unknown> = {};
  for (const a of container.args.slice(1)) {
    const [k = '', v] = a.replace(/^--/, '').split('=');
    const key = k.replace(/-([a-z])/g, (_m, c: string) => c.toUpperCase());
    flags[key] = v === undefined ? true : v.replace(/\$\(([A-Z_]+)\)/g, (_m, name: string) => vars[name] ?? '');
  }
  return flags;
}

t.test('the DaemonSet arguments are a valid daemon configuration', async (t) => {
  const ds = install.find((o) => o.kind === 'DaemonSet') as unknown as { spec: { template: { spec: { containers: { args: string[] }[] } } } };
  const container = ds.spec.template.spec.containers[0] ?? { args: [] };
  t.equal(container.args[0], 'run');
  const flags = flagsOf(container, { NODE_NAME: 'node-1', UPLINK: 'eth0' });
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

t.test('the example waypoint Deployment runs a valid waypoint for its Gateway', async (t) => {
  const objs = docs(join(root, 'examples', 'waypoint', 'cluster.yaml'));
  const gw = objs.find((o) => o.kind === 'Gateway');
  const dep = objs.find((o) => o.kind === 'Deployment') as unknown as { spec: { template: { metadata: { labels: Record<string, string> }; spec: { serviceAccountName: string; containers: { args: string[] }[] } } } };
  const container = dep.spec.template.spec.containers[0] ?? { args: [] };
  t.equal(container.args[0], 'waypoint');
  const config = waypointConfigFromFlags(flagsOf(container));
  t.match(config, { name: gw?.metadata.name, namespace: gw?.metadata.namespace, serviceAccount: dep.spec.template.spec.serviceAccountName, kube: {}, ca: { mode: 'remote' } });
  t.equal(dep.spec.template.metadata.labels['gateway.networking.k8s.io/gateway-name'], gw?.metadata.name, 'its pods carry the label the daemons find them by');
  t.equal((gw?.spec as { gatewayClassName?: string }).gatewayClassName, 'istio-waypoint');
});

t.test('the example manifests are objects an API server accepts: pods have containers and existing service accounts', async (t) => {
  const files = ['demo/cluster.yaml', 'loopback/mesh.yaml', 'waypoint/bookinfo.yaml', 'waypoint/cluster.yaml', 'locality/zones.yaml', 'dual-stack/cluster.yaml', 'policies.yaml'];
  for (const file of files) {
    const objects = docs(join(root, 'examples', file)).filter((o) => o !== null);
    const accounts = new Set(objects.filter((o) => o.kind === 'ServiceAccount').map((o) => `${o.metadata.namespace ?? 'default'}/${o.metadata.name}`));
    for (const o of objects) {
      t.ok(o.apiVersion !== undefined && o.kind !== undefined && o.metadata.name !== undefined, `${file}: ${o.kind} ${o.metadata.name} has apiVersion, kind and name`);
      if (o.kind !== 'Pod') continue;
      const spec = o.spec as { containers?: { name?: string; image?: string }[]; serviceAccountName?: string } | undefined;
      const containers = spec?.containers ?? [];
      t.ok(containers.length > 0 && containers.every((c) => c.name !== undefined && c.image !== undefined), `${file}: pod ${o.metadata.name} has containers, each with a name and an image`);
      const sa = spec?.serviceAccountName;
      if (sa !== undefined && sa !== 'default') t.ok(accounts.has(`${o.metadata.namespace ?? 'default'}/${sa}`), `${file}: pod ${o.metadata.name}'s service account ${sa} is declared`);
    }
  }
});
