// The shared inputs every listener gets (one frozen object built by the app).
import type { Logger } from 'pino';
import type { Authorizer } from '../authz/hook.js';
import type { SocketSplicer } from '../datapath/socket-splicer.js';
import type { HboneTimeouts } from '../hbone/constants.js';
import type { HbonePool } from '../hbone/pool.js';
import type { Certificates } from '../identity/cert-manager.js';
import type { State } from '../model/state.js';
import type { Telemetry } from '../telemetry/access-log.js';
import type { EndpointPicker } from './endpoint-picker.js';
import type { ConnectionLimiter } from './limits.js';
import type { SocketFactory } from './sockets.js';

export interface ProxyInputs {
  readonly nodeName: string;
  readonly trustDomain: string;
  readonly hbonePort: number;
  readonly timeouts: HboneTimeouts & { readonly upstreamConnectMs: number };
  readonly state: State;
  readonly certs: Certificates;
  readonly pool: HbonePool;
  readonly sockets: SocketFactory;
  readonly authorizer: Authorizer;
  readonly logger: Logger;
  readonly telemetry: Telemetry;
  readonly limits: ConnectionLimiter;
  /** Endpoint choice: open connections per endpoint and ClientIP affinity. */
  readonly endpoints: EndpointPicker;
  /** The kernel splice of plain TCP connections (with eBPF capture, unless --no-splice). */
  readonly splice?: SocketSplicer | undefined;
}
