// The shared conformance corpus (../shared/conformance beside the checkout, as CI lays it out).
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';

export interface AuthzCase {
  name: string;
  why: string;
  policies: Record<string, unknown>[];
  destination: { namespace: string; labels?: Record<string, string>; serviceAccount: string; ip: string; port: number };
  source: { namespace: string; serviceAccount: string; ip: string; identity?: string | null };
  expect: 'allow' | 'deny';
  invalid?: boolean;
  uncertain?: boolean;
}

export function conformanceFile(name: string): string {
  const dir = process.env['ZTUNNEL_CONFORMANCE_DIR'] ?? fileURLToPath(new URL('../../../../shared/conformance/', import.meta.url));
  const file = `${dir.replace(/\/$/, '')}/${name}`;
  if (!existsSync(file)) {
    throw new Error(`conformance data ${file} not found: check out shared/ beside this repository or set ZTUNNEL_CONFORMANCE_DIR`);
  }
  return file;
}

export function loadAuthzCases(): AuthzCase[] {
  return parse(readFileSync(conformanceFile('authz-cases.yaml'), 'utf8')) as AuthzCase[];
}
