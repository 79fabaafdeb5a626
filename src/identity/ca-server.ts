// `ca serve`: the built-in CA on its own (port 15012). Daemons POST a CSR with their node token; the CA
// signs only identities that have a pod scheduled on that node (node-restricted issuance).
import https from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import { parseIdentity } from '../model/identity.js';
import type { State } from '../model/state.js';
import type { CertificateAuthority } from './ca.js';
import { IdentityError } from './errors.js';
import { CSR_PATH, type CsrRequestBody, type CsrResponseBody } from './source.js';
import { jwtNodeAuthenticator, type NodeAuthenticator } from './node-authenticator.js';
import { describeCaller, type Caller } from './tokens.js';

const MAX_BODY_BYTES = 64 * 1024;
const MIN_TTL_S = 1;

export interface CaServerOptions {
  readonly ca: CertificateAuthority;
  readonly state: State;
  readonly trustDomain: string;
  readonly logger: Logger;
  readonly host: string;
  readonly port: number;
  /** Names and IPs on the serving certificate; the listen host is always included. */
  readonly serverNames?: readonly string[];
  readonly maxTtlMs: number;
  /** Who the bearer token speaks for; JWT node tokens of this CA by default. */
  readonly authenticate?: NodeAuthenticator;
}

export class CaServer {
  readonly #opts: CaServerOptions;
  #server: https.Server | undefined;

  constructor(opts: CaServerOptions) {
    this.#opts = opts;
  }

  async start(): Promise<AddressInfo> {
    const { ca, host, port } = this.#opts;
    const serving = await ca.issueServing([...new Set([host, ...(this.#opts.serverNames ?? [])])]);
    const server = https.createServer({ cert: serving.chainPem.join(''), key: serving.keyPem, minVersion: 'TLSv1.3' });
    server.on('request', (req, res) => {
      this.#handle(req, res).catch((err: unknown) => {
        this.#opts.logger.error({ err }, 'ca request failed');
        reply(res, 500, { error: 'internal error' });
      });
    });
    server.on('tlsClientError', (err) => this.#opts.logger.debug({ err: err.message }, 'ca tls handshake failed'));
    this.#server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => resolve());
    });
    return server.address() as AddressInfo;
  }

  async close(): Promise<void> {
    const server = this.#server;
    if (server === undefined) return;
    this.#server = undefined;
    await new Promise<void>((resolve) => server.close(() => resolve()));
    server.closeAllConnections();
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const { logger, ca, state, trustDomain } = this.#opts;
    if (req.method !== 'POST' || req.url !== CSR_PATH) return reply(res, 404, { error: 'not found' });
    const auth = req.headers.authorization ?? '';
    if (!auth.startsWith('Bearer ')) return reply(res, 401, { error: 'missing bearer token' });
    let caller: Caller;
    try {
      caller = await (this.#opts.authenticate ?? jwtNodeAuthenticator(ca))(auth.slice(7).trim());
    } catch (err) {
      logger.warn({ err: (err as Error).message, remote: req.socket.remoteAddress }, 'ca refused a token');
      const unavailable = err instanceof IdentityError && err.code === 'CA_UNAVAILABLE';
      return reply(res, unavailable ? 503 : 401, { error: (err as Error).message });
    }
    let body: CsrRequestBody;
    try {
      body = JSON.parse(await readBody(req)) as CsrRequestBody;
    } catch (err) {
      return reply(res, 400, { error: `bad request body: ${(err as Error).message}` });
    }
    if (typeof body.identity !== 'string' || typeof body.csr !== 'string') {
      return reply(res, 400, { error: 'body needs identity and csr strings' });
    }
    const id = parseIdentity(body.identity);
    if (id === undefined) return reply(res, 400, { error: `not a SPIFFE workload identity: ${body.identity}` });
    if (id.trustDomain !== trustDomain) {
      logger.warn({ ...caller, identity: body.identity }, 'ca refused: foreign trust domain');
      return reply(res, 403, { error: `trust domain ${id.trustDomain} is not ${trustDomain}` });
    }
    // Node-restricted issuance: a compromised node can only mint identities it already hosts, and a pod
    // token only its own pod's identity.
    const holders = state.workloadsWithIdentity(body.identity);
    const allowed = 'node' in caller ? holders.some((w) => w.node === caller.node) : holders.some((w) => w.uid === caller.pod);
    if (!allowed) {
      logger.warn({ ...caller, identity: body.identity }, 'ca refused: no pod with this identity for the caller');
      return reply(res, 403, { error: `${describeCaller(caller)} has no pod with identity ${body.identity}` });
    }
    const ttlMs = Math.min(this.#opts.maxTtlMs, Math.max(MIN_TTL_S, body.ttlSeconds ?? Infinity) * 1000);
    try {
      const svid = await ca.sign(body.csr, body.identity, { ttlMs });
      logger.info({ ...caller, identity: body.identity, serial: svid.serial }, 'ca issued certificate');
      const out: CsrResponseBody = { certChain: [...svid.chainPem], roots: [...svid.rootsPem] };
      return reply(res, 200, out);
    } catch (err) {
      if (err instanceof IdentityError) return reply(res, 400, { error: err.message });
      throw err;
    }
  }
}

function reply(res: ServerResponse, status: number, body: unknown): void {
  if (res.headersSent) return;
  res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY_BYTES) {
        reject(new Error(`body over ${MAX_BODY_BYTES} bytes`));
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}
