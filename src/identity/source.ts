// Where SVIDs come from: the CA inside this process, or a standalone CA over HTTPS.
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import https from 'node:https';
import type { CertificateAuthority } from './ca.js';
import { createCsr } from './csr.js';
import { IdentityError } from './errors.js';
import type { Svid } from './svid.js';

export interface CertificateSource {
  fetch(identity: string): Promise<Svid>;
}

export class EmbeddedCaSource implements CertificateSource {
  readonly #ca: CertificateAuthority;
  readonly #ttlMs: number;

  constructor(ca: CertificateAuthority, ttlMs: number) {
    this.#ca = ca;
    this.#ttlMs = ttlMs;
  }

  fetch(identity: string): Promise<Svid> {
    return this.#ca.issue(identity, { ttlMs: this.#ttlMs });
  }
}

/** The JSON exchanged with `ca serve`. */
export interface CsrRequestBody {
  identity: string;
  csr: string;
  ttlSeconds?: number;
}
export interface CsrResponseBody {
  certChain: string[];
  roots: string[];
}

export const CSR_PATH = '/v1/certificates';
const REQUEST_TIMEOUT_MS = 10_000;

export interface RemoteCaOptions {
  readonly url: string;
  /** Read on every request, so a rotated token is picked up. */
  readonly tokenFile: string;
  /** Trust anchor for the CA's own serving certificate. */
  readonly rootPem: string;
  readonly ttlMs: number;
}

export class RemoteCaSource implements CertificateSource {
  readonly #opts: RemoteCaOptions;

  constructor(opts: RemoteCaOptions) {
    this.#opts = opts;
  }

  async fetch(identity: string): Promise<Svid> {
    const req = await createCsr(identity);
    const body: CsrRequestBody = { identity, csr: req.csrPem, ttlSeconds: Math.round(this.#opts.ttlMs / 1000) };
    const token = readFileSync(this.#opts.tokenFile, 'utf8').trim();
    const { status, text } = await this.#post(JSON.stringify(body), token);
    if (status !== 200) {
      const code = status === 401 ? 'CA_UNAUTHENTICATED' : status === 403 ? 'CA_FORBIDDEN' : 'CA_UNAVAILABLE';
      throw new IdentityError(code, `ca ${this.#opts.url} answered ${status} for ${identity}: ${text.slice(0, 200)}`);
    }
    const res = JSON.parse(text) as CsrResponseBody;
    const leafPem = res.certChain[0];
    if (leafPem === undefined) throw new IdentityError('CA_UNAVAILABLE', `ca ${this.#opts.url} sent no certificate`);
    let leaf: X509Certificate;
    try {
      leaf = new X509Certificate(leafPem);
    } catch (err) {
      throw new IdentityError('CA_UNAVAILABLE', `ca ${this.#opts.url} sent a certificate that does not parse: ${(err as Error).message}`, { cause: err });
    }
    return {
      identity,
      certPem: leafPem,
      chainPem: res.certChain,
      keyPem: req.keyPem,
      rootsPem: res.roots,
      notBefore: new Date(leaf.validFrom),
      notAfter: new Date(leaf.validTo),
      serial: leaf.serialNumber.toLowerCase(),
    };
  }

  #post(payload: string, token: string): Promise<{ status: number; text: string }> {
    return new Promise((resolve, reject) => {
      const req = https.request(
        new URL(CSR_PATH, this.#opts.url),
        {
          method: 'POST',
          ca: this.#opts.rootPem,
          headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
          signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }));
          res.on('error', reject);
        },
      );
      req.on('error', (err) =>
        reject(new IdentityError('CA_UNAVAILABLE', `ca ${this.#opts.url}: ${err.message}`, { cause: err })),
      );
      req.end(payload);
    });
  }
}

/** Certificates from the CA the flags name: embedded (a CA directory) or remote (ca serve). */
export async function certificateSource(
  ca: { readonly mode: 'embedded'; readonly dir: string } | { readonly mode: 'remote'; readonly url: string; readonly tokenFile: string; readonly rootFile: string },
  trustDomain: string,
  ttlMs: number,
): Promise<CertificateSource> {
  // Imported only here: a daemon of a standalone CA never loads the CA's X.509 code.
  if (ca.mode === 'embedded') {
    const { CertificateAuthority } = await import('./ca.js');
    return new EmbeddedCaSource(await CertificateAuthority.loadOrInit(ca.dir, trustDomain), ttlMs);
  }
  return new RemoteCaSource({ url: ca.url, tokenFile: ca.tokenFile, rootPem: readFileSync(ca.rootFile, 'utf8'), ttlMs });
}
