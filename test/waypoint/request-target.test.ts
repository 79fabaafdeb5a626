// The request-target as the waypoint judges and forwards it: one normalized path for policy, routes and
// the backend; anything the URL parser refuses is an error to answer with 400, never a throw.
import t from 'tap';
import { parseRequestTarget } from '../../src/waypoint/request-target.js';

const cases: [method: string, target: string, path: string | RegExp, forward?: string][] = [
  ['GET', '/reviews/1?x=1', '/reviews/1', '/reviews/1?x=1'],
  // "//admin" is a path, not a host: URL resolution against a base would have judged this as "/users".
  ['GET', '//admin/users', '//admin/users', '//admin/users'],
  ['GET', '/public/../admin', '/admin', '/admin'],
  ['GET', '/a/./b/%2e%2e/c', '/a/c', '/a/c'],
  ['GET', '/x#frag', '/x', '/x'],
  ['GET', 'http://reviews:9080/v1?q', '/v1', '/v1?q'],
  ['OPTIONS', '*', '*', '*'],
  ['GET', '*', /request-target \* with GET/],
  ['GET', 'http://[', /does not parse/],
  ['GET', 'http://reviews:99999/', /does not parse/],
  ['GET', 'http://%zz/', /does not parse/],
  ['GET', 'reviews/1', /neither a path nor an absolute URL/],
  ['GET', 'ftp://files/x', /scheme ftp:/],
  ['CONNECT', 'reviews:9080', /neither/],
];

for (const [method, target, path, forward] of cases) {
  const r = parseRequestTarget(method, target);
  if (typeof path === 'string') {
    t.same('error' in r ? r : { path: r.path, forward: r.forward }, { path, forward }, `${method} ${target}`);
    // What is forwarded parses to what was judged: a backend reading it again sees the same path.
    if (!('error' in r)) t.equal((parseRequestTarget(method, r.forward) as { path: string }).path, r.path, `${target}: forwarded form is stable`);
  } else t.match('error' in r ? r.error : r, path, `${method} ${target} is refused`);
}
