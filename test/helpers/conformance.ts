// The authorization conformance corpus: the project's copy in test/fixtures/conformance (see its README for
// where and when it was taken), or ZTUNNEL_CONFORMANCE_DIR.
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
  uncertain_reason?: string;
}

export const FIXTURE_DIR = fileURLToPath(new URL('../../../test/fixtures/conformance/', import.meta.url));

export function conformanceFile(name: string): string {
  const dir = process.env['ZTUNNEL_CONFORMANCE_DIR'] ?? FIXTURE_DIR;
  const file = `${dir.replace(/\/$/, '')}/${name}`;
  if (!existsSync(file)) {
    throw new Error(`conformance data ${file} not found: the copy lives in test/fixtures/conformance, or set ZTUNNEL_CONFORMANCE_DIR`);
  }
  return file;
}

export function loadAuthzCases(): AuthzCase[] {
  return parse(readFileSync(conformanceFile('authz-cases.yaml'), 'utf8')) as AuthzCase[];
}
