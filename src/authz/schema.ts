// The AuthorizationPolicy spec as the CRD defines it (security.istio.io v1/v1beta1). Unknown fields and
// wrong types are errors: a typo must not silently change what a policy allows.
import { z } from 'zod';

const strings = z.array(z.string());
/** Ports are strings in the CRD; an unquoted number in YAML is unambiguous, so it is accepted too. */
const portStrings = z.array(z.union([z.string(), z.number().int().nonnegative().transform(String)]));

export const sourceSchema = z.strictObject({
  principals: strings.optional(),
  notPrincipals: strings.optional(),
  requestPrincipals: strings.optional(),
  notRequestPrincipals: strings.optional(),
  namespaces: strings.optional(),
  notNamespaces: strings.optional(),
  serviceAccounts: strings.optional(),
  notServiceAccounts: strings.optional(),
  ipBlocks: strings.optional(),
  notIpBlocks: strings.optional(),
  remoteIpBlocks: strings.optional(),
  notRemoteIpBlocks: strings.optional(),
});

export const operationSchema = z.strictObject({
  hosts: strings.optional(),
  notHosts: strings.optional(),
  ports: portStrings.optional(),
  notPorts: portStrings.optional(),
  methods: strings.optional(),
  notMethods: strings.optional(),
  paths: strings.optional(),
  notPaths: strings.optional(),
});

export const conditionSchema = z.strictObject({
  key: z.string(),
  values: portStrings.optional(),
  notValues: portStrings.optional(),
});

export const ruleSchema = z.strictObject({
  from: z.array(z.strictObject({ source: sourceSchema.optional() })).optional(),
  to: z.array(z.strictObject({ operation: operationSchema.optional() })).optional(),
  when: z.array(conditionSchema).optional(),
});

const targetRef = z.strictObject({
  group: z.string().optional(),
  kind: z.string(),
  name: z.string(),
  namespace: z.string().optional(),
});

export const specSchema = z.strictObject({
  selector: z.strictObject({ matchLabels: z.record(z.string(), z.string()).optional() }).optional(),
  targetRef: targetRef.optional(),
  targetRefs: z.array(targetRef).optional(),
  action: z.enum(['ALLOW', 'DENY', 'AUDIT', 'CUSTOM']).optional(),
  provider: z.strictObject({ name: z.string() }).optional(),
  rules: z.array(ruleSchema).nullish(),
});

export type PolicySpec = z.infer<typeof specSchema>;
export type PolicyRule = z.infer<typeof ruleSchema>;
export type PolicySource = z.infer<typeof sourceSchema>;
export type PolicyOperation = z.infer<typeof operationSchema>;
