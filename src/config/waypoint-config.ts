// Settings of the built-in waypoint (`ztunnel-ts waypoint`), validated like the daemon's.
import { z } from 'zod';
import { address, addresses, checkSharedFlags, parseFlags, sharedConfigOf, sharedFlags, type SharedConfig } from './config.js';

const k8sName = (flag: string) => z.string({ error: `${flag} is required` }).regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/, `${flag} must be a Kubernetes name`);

export const waypointFlagsSchema = z
  .object({
    name: k8sName('--name'),
    namespace: k8sName('--namespace'),
    serviceAccount: k8sName('--service-account').optional(),
    ...sharedFlags,
    listen: addresses('0.0.0.0:15008'),
    admin: address('127.0.0.1:15000'),
    metrics: address('0.0.0.0:15020'),
    readiness: address('0.0.0.0:15021'),
  })
  .superRefine(checkSharedFlags);

export interface WaypointConfig extends SharedConfig {
  /** The Gateway (class istio-waypoint) this process implements. */
  readonly name: string;
  readonly namespace: string;
  /** Its identity: ns/<namespace>/sa/<serviceAccount> (Istio names the account after the Gateway). */
  readonly serviceAccount: string;
  /** HBONE (mTLS + HTTP/2 CONNECT): the first address (a pod's primary IP, or a wildcard for both families). */
  readonly listen: { readonly host: string; readonly port: number };
  /** Every HBONE address: a dual-stack pod's waypoint listens on each of its IPs. */
  readonly listens: readonly { readonly host: string; readonly port: number }[];
  /** /config_dump, /logging, /quitquitquit, /flows. */
  readonly adminAddress: { readonly host: string; readonly port: number };
  readonly connectTimeoutMs: number;
}

export function waypointConfigFromFlags(raw: Record<string, unknown>): WaypointConfig {
  const f = parseFlags(waypointFlagsSchema, raw);
  return Object.freeze({
    ...sharedConfigOf(f),
    name: f.name,
    namespace: f.namespace,
    serviceAccount: f.serviceAccount ?? f.name,
    listen: f.listen[0] as { host: string; port: number },
    listens: f.listen,
    adminAddress: f.admin,
    connectTimeoutMs: 10_000,
  });
}
