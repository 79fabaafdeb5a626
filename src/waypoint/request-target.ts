// The request-target of an HTTP request (RFC 9112 §3.2) as the waypoint authorizes, routes and forwards
// it. What policy and routes see is exactly what is sent on: the path normalized once (dot segments
// resolved, as Istio's default path normalization does), in origin form, so a backend that parses the
// path again cannot reach a resource the policy did not judge.

export interface RequestTarget {
  /** Normalized path without the query. */
  readonly path: string;
  readonly query: URLSearchParams;
  /** The request-target sent on: the normalized path and the query. */
  readonly forward: string;
}

const ABSOLUTE_FORM = /^[A-Za-z][A-Za-z0-9+.-]*:\/\//;

/** The target's parts, or why it is refused (answered 400). Never throws. */
export function parseRequestTarget(method: string, target: string): RequestTarget | { readonly error: string } {
  if (target === '*') {
    return method === 'OPTIONS' ? { path: '*', query: new URLSearchParams(), forward: '*' } : { error: `request-target * with ${method}` };
  }
  let url: URL;
  try {
    // Origin form is read against a fixed origin by concatenation, not resolution: "//a/b" is a path
    // here, where URL resolution would read "a" as a host and judge the request as "/b".
    if (target.startsWith('/')) url = new URL(`http://waypoint${target}`);
    else if (ABSOLUTE_FORM.test(target)) url = new URL(target);
    else return { error: 'request-target is neither a path nor an absolute URL' };
  } catch {
    return { error: 'request-target does not parse as a URL' };
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return { error: `request-target scheme ${url.protocol}` };
  return { path: url.pathname, query: url.searchParams, forward: url.pathname + url.search };
}
