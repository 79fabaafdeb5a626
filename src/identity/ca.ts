// The built-in CA: an ECDSA P-256 signing certificate that issues SPIFFE X.509 SVIDs.
// Its state uses Istio's cacerts layout, so an existing Istio root can be plugged in as is.
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { join } from 'node:path';
import { IdentityError } from './errors.js';
import {
  EC_ALGORITHM,
  generateKeyPair,
  importPrivateKeyPem,
  privateKeyToPem,
  randomSerial,
  splitPemCertificates,
  x509,
} from './keys.js';
import { createCsr } from './csr.js';
import type { Svid } from './svid.js';

export const CA_FILES = {
  caCert: 'ca-cert.pem',
  caKey: 'ca-key.pem',
  rootCert: 'root-cert.pem',
  certChain: 'cert-chain.pem',
} as const;

export const DEFAULT_WORKLOAD_TTL_MS = 24 * 3600_000;
const ROOT_TTL_MS = 10 * 365 * 24 * 3600_000;
/** Backdate certificates a little so that peers with a slightly slow clock accept them. */
const CLOCK_SKEW_MS = 60_000;

export interface IssueOptions {
  readonly ttlMs?: number;
  /** For tests of expired or not-yet-valid certificates. */
  readonly notBefore?: Date;
  readonly notAfter?: Date;
}

export class CertificateAuthority {
  readonly #signingCert: x509.X509Certificate;
  readonly #signingKey: CryptoKey;
  /** Signing certificate and intermediates up to (not including) the root. */
  readonly #chainPem: readonly string[];
  readonly rootPem: string;

  private constructor(signingCert: x509.X509Certificate, signingKey: CryptoKey, chainPem: string[], rootPem: string) {
    this.#signingCert = signingCert;
    this.#signingKey = signingKey;
    this.#chainPem = chainPem;
    this.rootPem = rootPem;
  }

  /** A new self-signed root, kept in memory only. */
  static async create(trustDomain: string): Promise<CertificateAuthority> {
    const keys = await generateKeyPair();
    const now = Date.now();
    const root = await x509.X509CertificateGenerator.createSelfSigned({
      serialNumber: randomSerial(),
      name: `O=${trustDomain}, CN=ztunnel-ts root CA`,
      notBefore: new Date(now - CLOCK_SKEW_MS),
      notAfter: new Date(now + ROOT_TTL_MS),
      signingAlgorithm: EC_ALGORITHM,
      keys,
      extensions: [
        new x509.BasicConstraintsExtension(true, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
        await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
      ],
    });
    const pem = root.toString('pem') + '\n';
    return new CertificateAuthority(root, keys.privateKey, [], pem);
  }

  /** Loads the CA from dir, or creates a root there on first run (key file mode 0600). */
  static async loadOrInit(dir: string, trustDomain: string): Promise<CertificateAuthority> {
    if (existsSync(join(dir, CA_FILES.caKey))) return CertificateAuthority.load(dir);
    const ca = await CertificateAuthority.create(trustDomain);
    await ca.save(dir);
    return ca;
  }

  /** Loads Istio's cacerts layout: ca-cert.pem, ca-key.pem, root-cert.pem, cert-chain.pem (optional). */
  static async load(dir: string): Promise<CertificateAuthority> {
    const read = (name: string, required: boolean): string | undefined => {
      const path = join(dir, name);
      if (!existsSync(path)) {
        if (required) throw new IdentityError('CA_LOAD', `ca directory ${dir}: missing ${name}`);
        return undefined;
      }
      return readFileSync(path, 'utf8');
    };
    try {
      const certPem = read(CA_FILES.caCert, true) as string;
      const keyPem = read(CA_FILES.caKey, true) as string;
      const rootPem = read(CA_FILES.rootCert, true) as string;
      const chainFile = read(CA_FILES.certChain, false);
      const signingCert = new x509.X509Certificate(certPem);
      const signingKey = await importPrivateKeyPem(keyPem);
      const rootCerts = splitPemCertificates(rootPem).map((p) => new x509.X509Certificate(p));
      // cert-chain.pem may repeat the signing cert and the root; keep only intermediates after the signing cert.
      const chain = splitPemCertificates(chainFile ?? certPem).filter(
        (p) => !rootCerts.some((r) => r.equal(new x509.X509Certificate(p))),
      );
      if (chain.length === 0 || !new x509.X509Certificate(chain[0] as string).equal(signingCert)) {
        chain.unshift(certPem);
      }
      return new CertificateAuthority(signingCert, signingKey, chain, rootPem);
    } catch (err) {
      if (err instanceof IdentityError) throw err;
      throw new IdentityError('CA_LOAD', `ca directory ${dir}: ${(err as Error).message}`, { cause: err });
    }
  }

  async save(dir: string): Promise<void> {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const keyPath = join(dir, CA_FILES.caKey);
    writeFileSync(keyPath, await privateKeyToPem(this.#signingKey), { mode: 0o600 });
    chmodSync(keyPath, 0o600);
    writeFileSync(join(dir, CA_FILES.caCert), this.#signingCert.toString('pem') + '\n');
    writeFileSync(join(dir, CA_FILES.rootCert), this.rootPem);
    writeFileSync(join(dir, CA_FILES.certChain), this.#chainPem.join('') + this.rootPem);
  }

  get signingCertificate(): x509.X509Certificate {
    return this.#signingCert;
  }

  /** ES256 key for the node tokens this CA issues and verifies. */
  get tokenKey(): CryptoKey {
    return this.#signingKey;
  }

  get tokenPublicKey(): Promise<CryptoKey> {
    return this.#signingCert.publicKey.export(EC_ALGORITHM, ['verify']);
  }

  /** Signs a CSR for exactly `identity`: its signature must verify and any URI SAN it has must match. */
  async sign(csrPem: string, identity: string, opts: IssueOptions = {}): Promise<Svid> {
    const csr = await readCsr(csrPem);
    const requested = csr.getExtension("2.5.29.17");
    let sans: string[];
    try {
      sans = requested === null ? [] : new x509.SubjectAlternativeNameExtension(requested.rawData).names.items.filter((n) => n.type === 'url').map((n) => n.value);
    } catch (err) {
      throw new IdentityError('CA_CSR_INVALID', `csr subjectAltName does not parse: ${(err as Error).message}`, { cause: err });
    }
    if (sans.some((s) => s !== identity)) {
      throw new IdentityError('CA_CSR_INVALID', `csr asks for ${sans.join(', ')}, not ${identity}`);
    }
    return this.#certify(csr.publicKey, identity, [{ type: 'url', value: identity }], opts);
  }

  /** A serving certificate for the CA's own HTTPS endpoint (DNS names and IPs as SANs). */
  async issueServing(hosts: readonly string[], ttlMs = 365 * 24 * 3600_000): Promise<Svid> {
    const keys = await generateKeyPair();
    const names = hosts.map((h) => (isIP(h) !== 0 ? { type: 'ip' as const, value: h } : { type: 'dns' as const, value: h }));
    const svid = await this.#certify(keys.publicKey, hosts.join(','), names, { ttlMs });
    return { ...svid, keyPem: await privateKeyToPem(keys.privateKey) };
  }

  async #certify(
    publicKey: x509.PublicKey | CryptoKey,
    identity: string,
    sans: x509.JsonGeneralName[],
    opts: IssueOptions,
  ): Promise<Svid> {
    const now = Date.now();
    const notBefore = opts.notBefore ?? new Date(now - CLOCK_SKEW_MS);
    let notAfter = opts.notAfter ?? new Date(now + (opts.ttlMs ?? DEFAULT_WORKLOAD_TTL_MS));
    if (notAfter > this.#signingCert.notAfter) notAfter = this.#signingCert.notAfter;
    const cert = await x509.X509CertificateGenerator.create({
      serialNumber: randomSerial(),
      subject: '',
      issuer: this.#signingCert.subjectName,
      notBefore,
      notAfter,
      signingAlgorithm: EC_ALGORITHM,
      publicKey,
      signingKey: this.#signingKey,
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(
          x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment,
          true,
        ),
        new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth]),
        await x509.AuthorityKeyIdentifierExtension.create(this.#signingCert),
        // Istio's workload certificates have an empty subject, so the SAN is critical (RFC 5280 4.2.1.6).
        new x509.SubjectAlternativeNameExtension(sans, true),
      ],
    });
    const certPem = cert.toString('pem') + '\n';
    return {
      identity,
      certPem,
      chainPem: [certPem, ...this.#chainPem.filter((p) => !this.#isSelfSignedRoot(p))],
      keyPem: '',
      rootsPem: [this.rootPem],
      notBefore,
      notAfter,
      serial: cert.serialNumber,
    };
  }

  /** Key, CSR and certificate in one step, for the embedded CA and the `ca issue` command. */
  async issue(identity: string, opts: IssueOptions = {}): Promise<Svid> {
    const req = await createCsr(identity);
    const svid = await this.sign(req.csrPem, identity, opts);
    return { ...svid, keyPem: req.keyPem };
  }

  #isSelfSignedRoot(pem: string): boolean {
    return this.rootPem.includes(pem.trim());
  }
}

/**
 * A CSR whose signature verifies with its own key. Whatever is wrong with it (its encoding, a public key
 * WebCrypto cannot import, its signature) is the caller's error: CA_CSR_INVALID with the reason.
 */
async function readCsr(pem: string): Promise<x509.Pkcs10CertificateRequest> {
  let csr: x509.Pkcs10CertificateRequest;
  try {
    csr = new x509.Pkcs10CertificateRequest(pem);
  } catch (err) {
    throw new IdentityError('CA_CSR_INVALID', `csr does not parse: ${(err as Error).message}`, { cause: err });
  }
  let verified: boolean;
  try {
    verified = await csr.verify();
  } catch (err) {
    throw new IdentityError('CA_CSR_INVALID', `csr public key or signature is unusable: ${(err as Error).message}`, { cause: err });
  }
  if (!verified) throw new IdentityError('CA_CSR_INVALID', 'csr signature does not verify');
  return csr;
}

/** The URI SANs of a certificate (a SPIFFE SVID has exactly one). */
export function uriSans(cert: x509.X509Certificate): string[] {
  const ext = cert.getExtension(x509.SubjectAlternativeNameExtension);
  return ext?.names.items.filter((n) => n.type === 'url').map((n) => n.value) ?? [];
}
