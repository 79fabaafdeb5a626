// Where the API server is and how to authenticate to it: from a kubeconfig file or, without one, from
// the pod's in-cluster ServiceAccount. Reading the document is pure (chooseEndpoint, table-tested);
// loadApiEndpoint then reads the files it names.
import { readFileSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';
import { parse } from 'yaml';
import { z } from 'zod';
import { formatPath } from '../kube-schema.js';
import { KubeApiError } from './errors.js';

/** A certificate, key or CA bundle: inline (the *-data fields, base64) or in a file. */
export type Material = { readonly file: string } | { readonly data: Buffer };

export type ApiAuth =
  | { readonly kind: 'none' }
  | { readonly kind: 'token'; readonly token: string }
  /** Read again before each request: projected ServiceAccount tokens rotate. */
  | { readonly kind: 'tokenFile'; readonly file: string }
  | { readonly kind: 'basic'; readonly username: string; readonly password: string }
  /** exec or auth-provider credentials: only @kubernetes/client-node knows them all, loaded for these alone. */
  | { readonly kind: 'plugin'; readonly kubeconfig: string };

export interface EndpointChoice {
  readonly server: URL;
  readonly ca: Material | undefined;
  readonly cert: Material | undefined;
  readonly key: Material | undefined;
  readonly insecure: boolean;
  readonly servername: string | undefined;
  readonly auth: ApiAuth;
}

/** An EndpointChoice with its files read. */
export interface ApiEndpoint {
  readonly server: URL;
  readonly ca: Buffer | undefined;
  readonly cert: Buffer | undefined;
  readonly key: Buffer | undefined;
  readonly insecure: boolean;
  readonly servername: string | undefined;
  readonly auth: ApiAuth;
  /** Where it came from, for error messages. */
  readonly source: string;
}

const SERVICE_ACCOUNT_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';

const clusterSchema = z.object({
  server: z.string().min(1),
  'certificate-authority': z.string().optional(),
  'certificate-authority-data': z.string().optional(),
  'insecure-skip-tls-verify': z.boolean().optional(),
  'tls-server-name': z.string().optional(),
  'proxy-url': z.string().optional(),
});
const userSchema = z.object({
  token: z.string().optional(),
  tokenFile: z.string().optional(),
  'client-certificate': z.string().optional(),
  'client-certificate-data': z.string().optional(),
  'client-key': z.string().optional(),
  'client-key-data': z.string().optional(),
  username: z.string().optional(),
  password: z.string().optional(),
  exec: z.unknown().optional(),
  'auth-provider': z.unknown().optional(),
});
const kubeconfigSchema = z.object({
  clusters: z.array(z.object({ name: z.string().min(1), cluster: clusterSchema })),
  users: z.array(z.object({ name: z.string().min(1), user: userSchema })).optional(),
  contexts: z.array(z.object({ name: z.string().min(1), context: z.object({ cluster: z.string().min(1), user: z.string().optional() }) })),
  'current-context': z.string().min(1),
});

const invalid = (file: string, field: string, detail: string): KubeApiError => new KubeApiError('KUBECONFIG_INVALID', `kubeconfig ${file}: ${field}: ${detail}`);

function material(file: string, base: string, field: string, path: string | undefined, data: string | undefined): Material | undefined {
  if (data !== undefined) {
    if (!/^[A-Za-z0-9+/=\s]*$/.test(data)) throw invalid(file, `${field}-data`, 'not base64');
    return { data: Buffer.from(data, 'base64') };
  }
  if (path === undefined) return undefined;
  return { file: isAbsolute(path) ? path : resolve(base, path) };
}

/** The current context's cluster and user, as a kubeconfig document says; relative paths are the file's. */
export function chooseEndpoint(doc: unknown, file: string): EndpointChoice {
  const parsed = kubeconfigSchema.safeParse(doc);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw invalid(file, issue === undefined || issue.path.length === 0 ? '(document)' : formatPath(issue.path), issue?.message ?? 'invalid');
  }
  const k = parsed.data;
  const ci = k.contexts.findIndex((c) => c.name === k['current-context']);
  const context = k.contexts[ci]?.context;
  if (context === undefined) throw invalid(file, 'current-context', `no context named ${JSON.stringify(k['current-context'])}`);
  const cluster = k.clusters.find((c) => c.name === context.cluster)?.cluster;
  if (cluster === undefined) throw invalid(file, `contexts[${ci}].context.cluster`, `no cluster named ${JSON.stringify(context.cluster)}`);
  const ui = context.user === undefined ? -1 : (k.users ?? []).findIndex((u) => u.name === context.user);
  if (context.user !== undefined && ui < 0) throw invalid(file, `contexts[${ci}].context.user`, `no user named ${JSON.stringify(context.user)}`);
  const user = k.users?.[ui]?.user ?? {};
  const uf = `users[${ui}].user`;
  if (cluster['proxy-url'] !== undefined) throw invalid(file, 'cluster.proxy-url', 'proxies are not supported: reach the API server directly');
  let server: URL;
  try {
    server = new URL(cluster.server);
  } catch {
    throw invalid(file, 'cluster.server', `not a URL: ${JSON.stringify(cluster.server)}`);
  }
  if (server.protocol !== 'https:' && server.protocol !== 'http:') throw invalid(file, 'cluster.server', `not http(s): ${cluster.server}`);
  const base = dirname(file);
  const auth: ApiAuth =
    user.exec !== undefined || user['auth-provider'] !== undefined
      ? { kind: 'plugin', kubeconfig: file }
      : user.token !== undefined
        ? { kind: 'token', token: user.token }
        : user.tokenFile !== undefined
          ? { kind: 'tokenFile', file: isAbsolute(user.tokenFile) ? user.tokenFile : resolve(base, user.tokenFile) }
          : user.username !== undefined && user.password !== undefined
            ? { kind: 'basic', username: user.username, password: user.password }
            : { kind: 'none' };
  const cert = material(file, base, `${uf}.client-certificate`, user['client-certificate'], user['client-certificate-data']);
  const key = material(file, base, `${uf}.client-key`, user['client-key'], user['client-key-data']);
  if ((cert === undefined) !== (key === undefined)) throw invalid(file, uf, 'a client certificate needs its key, and a key its certificate');
  return {
    server,
    ca: material(file, base, 'cluster.certificate-authority', cluster['certificate-authority'], cluster['certificate-authority-data']),
    cert,
    key,
    insecure: cluster['insecure-skip-tls-verify'] === true,
    servername: cluster['tls-server-name'],
    auth,
  };
}

/** The in-cluster endpoint: the kubernetes Service from the environment, the mounted CA and token. */
export function inClusterChoice(env: NodeJS.ProcessEnv, dir = SERVICE_ACCOUNT_DIR): EndpointChoice {
  const host = env['KUBERNETES_SERVICE_HOST'];
  const port = env['KUBERNETES_SERVICE_PORT'];
  if (host === undefined || host === '' || port === undefined || port === '') {
    throw new KubeApiError('KUBECONFIG_INVALID', 'not in a cluster (KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are unset): pass --kubeconfig');
  }
  return {
    server: new URL(`https://${host.includes(':') ? `[${host}]` : host}:${port}`),
    ca: { file: `${dir}/ca.crt` },
    cert: undefined,
    key: undefined,
    insecure: false,
    servername: undefined,
    auth: { kind: 'tokenFile', file: `${dir}/token` },
  };
}

function read(m: Material | undefined, what: string, source: string): Buffer | undefined {
  if (m === undefined) return undefined;
  if ('data' in m) return m.data;
  try {
    return readFileSync(m.file);
  } catch (err) {
    throw new KubeApiError('KUBECONFIG_INVALID', `${source}: cannot read the ${what} ${m.file}: ${(err as Error).message}`, { cause: err });
  }
}

/** The endpoint a kubeconfig file names, or the in-cluster one when there is no file. */
export function loadApiEndpoint(file: string | undefined, env: NodeJS.ProcessEnv = process.env): ApiEndpoint {
  let choice: EndpointChoice;
  let source: string;
  if (file === undefined) {
    choice = inClusterChoice(env);
    source = 'in-cluster config';
  } else {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      throw new KubeApiError('KUBECONFIG_INVALID', `kubeconfig ${file}: ${(err as Error).message}`, { cause: err });
    }
    let doc: unknown;
    try {
      doc = parse(text);
    } catch (err) {
      throw invalid(file, '(document)', `not YAML: ${(err as Error).message}`);
    }
    choice = chooseEndpoint(doc, file);
    source = `kubeconfig ${file}`;
  }
  return {
    server: choice.server,
    ca: read(choice.ca, 'certificate authority', source),
    cert: read(choice.cert, 'client certificate', source),
    key: read(choice.key, 'client key', source),
    insecure: choice.insecure,
    servername: choice.servername,
    auth: choice.auth,
    source,
  };
}
