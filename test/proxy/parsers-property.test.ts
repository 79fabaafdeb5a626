// Property tests (fast-check: random inputs, shrunk to the smallest failing one) for every parser that
// takes outside input: whatever arrives, each answers with a result or its own typed error, never a crash,
// and valid input comes back as what was encoded. Not coverage-guided fuzzing: see the README.
import fc from 'fast-check';
import t from 'tap';
import { stringify } from 'yaml';
import { translatePolicy, parseCidr } from '../../src/authz/translate.js';
import { formatAddress, parseAuthority, parseBaggage, buildBaggage } from '../../src/hbone/headers.js';
import { parseSocksHandshake } from '../../src/proxy/socks5.js';
import { ManifestError } from '../../src/sources/errors.js';
import { parseManifestText } from '../../src/sources/manifests.js';
import { classify } from '../../src/waypoint/protocol.js';

const RUNS = Number(process.env['ZTUNNEL_PROPERTY_RUNS'] ?? 2000);
const opts = { numRuns: RUNS };
const ipv4 = fc.tuple(fc.nat(255), fc.nat(255), fc.nat(255), fc.nat(255)).map((o) => o.join('.'));
const port = fc.integer({ min: 1, max: 65535 });

t.test('SOCKS5: any bytes give a result, never a throw; a valid CONNECT parses to its address; a prefix needs more', async (t) => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 64 }), fc.boolean(), (bytes, greeted) => {
      const r = parseSocksHandshake(Buffer.from(bytes), greeted);
      return ['need-more', 'error', 'ok', 'greeting'].includes(r.kind);
    }),
    opts,
  );
  fc.assert(
    fc.property(ipv4, port, (ip, p) => {
      const req = Buffer.from([5, 1, 0, 1, ...ip.split('.').map(Number), p >> 8, p & 255]);
      const r = parseSocksHandshake(req, true);
      if (r.kind !== 'ok' || r.dst.ip !== ip || r.dst.port !== p || r.used !== req.length) return false;
      for (let n = 0; n < req.length; n++) if (parseSocksHandshake(req.subarray(0, n), true).kind !== 'need-more') return false;
      return true;
    }),
    opts,
  );
  t.pass(`${RUNS} random inputs and ${RUNS} valid requests with all their prefixes`);
});

t.test('HBONE authority and baggage headers: never a throw; a valid authority round-trips', async (t) => {
  fc.assert(fc.property(fc.string({ maxLength: 80 }), (s) => parseAuthority(s) === undefined || Number.isInteger(parseAuthority(s)?.port)), opts);
  fc.assert(fc.property(fc.oneof(ipv4, fc.ipV6()), port, (ip, p) => {
    const parsed = parseAuthority(formatAddress({ ip, port: p }));
    return parsed?.port === p;
  }), opts);
  fc.assert(fc.property(fc.string({ maxLength: 200 }), (s) => typeof parseBaggage(s) === 'object'), opts);
  fc.assert(
    fc.property(fc.stringMatching(/^[a-z0-9-]{1,20}$/), fc.stringMatching(/^[a-z0-9-]{1,20}$/), (ns, name) => {
      const b = parseBaggage(buildBaggage({ namespace: ns, workloadName: name, canonicalService: name, canonicalRevision: 'v1' }));
      return Object.values(b).includes(ns) && Object.values(b).includes(name);
    }),
    opts,
  );
  t.pass('authority, baggage');
});

t.test("the waypoint's protocol sniffing: any first bytes are classified", async (t) => {
  fc.assert(fc.property(fc.uint8Array({ maxLength: 128 }), (b) => typeof classify(Buffer.from(b)) === 'string'), opts);
  t.equal(classify(Buffer.from('GET / HTTP/1.1\r\n')), 'http1');
});

t.test('manifests: any text is objects or a ManifestError naming the file, never another exception', async (t) => {
  const check = (text: string): boolean => {
    try {
      parseManifestText('fuzz.yaml', text);
      return true;
    } catch (err) {
      return err instanceof ManifestError && err.file === 'fuzz.yaml';
    }
  };
  fc.assert(fc.property(fc.string({ maxLength: 300 }), check), opts);
  // Shaped like Kubernetes objects, with random values where fields go.
  const value = fc.oneof(fc.string({ maxLength: 12 }), fc.integer(), fc.boolean(), fc.constant(null), fc.array(fc.string({ maxLength: 6 }), { maxLength: 3 }), fc.dictionary(fc.string({ maxLength: 6 }), fc.string({ maxLength: 6 }), { maxKeys: 3 }));
  const object = fc.record({
    apiVersion: fc.constantFrom('v1', 'security.istio.io/v1', 'gateway.networking.k8s.io/v1', 'discovery.k8s.io/v1', 'x'),
    kind: fc.constantFrom('Pod', 'Service', 'Namespace', 'Node', 'AuthorizationPolicy', 'Gateway', 'HTTPRoute', 'EndpointSlice', 'Other'),
    metadata: fc.record({ name: value, namespace: value, labels: value, deletionTimestamp: value }, { requiredKeys: [] }),
    spec: fc.dictionary(fc.constantFrom('selector', 'ports', 'nodeName', 'containers', 'clusterIP', 'rules', 'action', 'trafficDistribution', 'parentRefs'), value, { maxKeys: 4 }),
    status: fc.dictionary(fc.constantFrom('podIP', 'phase', 'conditions', 'addresses'), value, { maxKeys: 3 }),
  }, { requiredKeys: ['kind'] });
  fc.assert(fc.property(fc.array(object, { maxLength: 4 }), (objs) => check(objs.map((o) => stringify(o)).join('---\n'))), opts);
  t.pass('text and object-shaped documents');
});

t.test('AuthorizationPolicy translation: any spec translates or is marked malformed (enforced fail-closed), never a throw', async (t) => {
  const str = fc.string({ maxLength: 16 });
  const list = fc.array(fc.oneof(str, fc.constantFrom('10.0.0.0/8', '::1/128', 'cluster.local/ns/a/sa/b', '*', '8080', 'GET')), { maxLength: 3 });
  const source = fc.dictionary(fc.constantFrom('principals', 'notPrincipals', 'namespaces', 'notNamespaces', 'ipBlocks', 'notIpBlocks', 'remoteIpBlocks', 'requestPrincipals'), list, { maxKeys: 3 });
  const operation = fc.dictionary(fc.constantFrom('ports', 'notPorts', 'hosts', 'methods', 'paths'), list, { maxKeys: 3 });
  const rule = fc.record({ from: fc.array(fc.record({ source }), { maxLength: 2 }), to: fc.array(fc.record({ operation }), { maxLength: 2 }), when: fc.array(fc.record({ key: fc.constantFrom('source.ip', 'destination.port', 'request.headers[x]', 'x'), values: list }), { maxLength: 2 }) }, { requiredKeys: [] });
  const spec = fc.record({ action: fc.constantFrom('ALLOW', 'DENY', 'AUDIT', 'CUSTOM', 'bogus', undefined), rules: fc.array(rule, { maxLength: 3 }), selector: fc.option(fc.record({ matchLabels: fc.dictionary(str, str, { maxKeys: 2 }) })) }, { requiredKeys: [] });
  fc.assert(
    fc.property(spec, (s) => {
      const r = translatePolicy({ namespace: 'app', name: 'p', origin: 'fuzz', object: { apiVersion: 'security.istio.io/v1', kind: 'AuthorizationPolicy', metadata: { name: 'p', namespace: 'app' }, spec: s } });
      return r.error !== undefined || r.authorization !== undefined || r.warnings.length >= 0;
    }),
    opts,
  );
  fc.assert(fc.property(fc.string({ maxLength: 40 }), (s) => parseCidr(s) === undefined || typeof parseCidr(s) === 'object'), opts);
  t.pass('specs and CIDRs');
});
