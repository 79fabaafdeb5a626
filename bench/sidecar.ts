// The sidecar model for the benchmark: a user-space mTLS proxy pair on the path (haproxy, TCP mode,
// TLS 1.3, SVIDs from our CA), one proxy in the client pod and one in the server pod, as Istio's
// sidecars would be. The client connects to its local proxy; the server's proxy forwards to 127.0.0.1.
import { execFileSync, spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { LabPod } from '../src/lab/plan.js';

const CLI = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));

export interface SidecarPorts {
  /** Local port in the client pod for each upstream app port. */
  readonly forwards: readonly { readonly local: number; readonly remote: number; readonly app: number }[];
}

/** An SVID's files: the certificate, its key, and both in one file (haproxy's crt). */
export interface SvidFiles {
  readonly cert: string;
  readonly key: string;
  readonly bundle: string;
}

function issue(caDir: string, identity: string, out: string): SvidFiles {
  execFileSync(process.execPath, [CLI, 'ca', 'issue', '--dir', caDir, '--identity', identity, '--out', out]);
  const files = { cert: `${out}.pem`, key: `${out}-key.pem`, bundle: `${out}-bundle.pem` };
  execFileSync('sh', ['-c', `cat "${files.cert}" "${files.key}" > "${files.bundle}"`]);
  return files;
}

/** The client's and the server's SVIDs for a proxy pair, and the root that both trust. */
export function issuePairSvids(dir: string, caDir: string, client: LabPod, server: LabPod): { root: string; client: SvidFiles; server: SvidFiles } {
  mkdirSync(dir, { recursive: true });
  return {
    root: join(caDir, 'root-cert.pem'),
    client: issue(caDir, `spiffe://cluster.local/ns/${client.namespace}/sa/client`, join(dir, 'client')),
    server: issue(caDir, `spiffe://cluster.local/ns/${server.namespace}/sa/cart`, join(dir, 'server')),
  };
}

/**
 * Connections each haproxy takes at once. Each costs the client's haproxy two descriptors, and haproxy
 * refuses a maxconn its hard descriptor limit cannot hold: 9500 fits the 20,000 of the machines here,
 * which cannot raise it (no CAP_SYS_RESOURCE).
 */
export const SIDECAR_MAXCONN = 9500;

/** Starts the pair; returns the client's and the server's haproxy process ids. */
export function startSidecars(dir: string, caDir: string, client: LabPod, server: LabPod, ports: SidecarPorts): number[] {
  const svids = issuePairSvids(dir, caDir, client, server);
  const [root, clientPem, serverPem] = [svids.root, svids.client.bundle, svids.server.bundle];
  const defaults = `global\n  maxconn ${SIDECAR_MAXCONN}\ndefaults\n  mode tcp\n  timeout connect 5s\n  timeout client 60s\n  timeout server 60s\n`;
  const clientCfg =
    defaults +
    ports.forwards
      .map(
        (f) =>
          `frontend out${f.local}\n  bind 127.0.0.1:${f.local}\n  default_backend up${f.local}\nbackend up${f.local}\n  server s ${server.ip}:${f.remote} ssl crt ${clientPem} ca-file ${root} verify required ssl-min-ver TLSv1.3\n`,
      )
      .join('');
  const serverCfg =
    defaults +
    ports.forwards
      .map(
        (f) =>
          `frontend in${f.remote}\n  bind ${server.ip}:${f.remote} ssl crt ${serverPem} ca-file ${root} verify required ssl-min-ver TLSv1.3\n  default_backend app${f.remote}\nbackend app${f.remote}\n  server app 127.0.0.1:${f.app}\n`,
      )
      .join('');
  writeFileSync(join(dir, 'client.cfg'), clientCfg);
  writeFileSync(join(dir, 'server.cfg'), serverCfg);
  // nsenter execs haproxy, which runs in the foreground (no daemon or master-worker mode): the pid is its.
  return ([[client, 'client.cfg'], [server, 'server.cfg']] as const).map(([pod, cfg]) => {
    const child = spawn('nsenter', [`--net=/run/netns/${pod.netns}`, 'haproxy', '-q', '-f', join(dir, cfg)], { stdio: 'ignore', detached: true });
    child.unref();
    return child.pid ?? NaN;
  });
}
