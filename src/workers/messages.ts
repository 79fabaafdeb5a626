// What the daemon's control plane and its worker threads say to each other (structured clone).
import type { MetricObjectWithValues, MetricValue } from 'prom-client';
import type { Config } from '../config/config.js';
import type { CaptureListener, DataplaneStats } from '../dataplane.js';
import type { Svid } from '../identity/svid.js';
import type { Snapshot } from '../model/types.js';
import type { FlowEvent } from '../telemetry/flows.js';

export interface WorkerData {
  readonly id: number;
  readonly config: Config;
  readonly logLevel: string;
  /** Started during a takeover: the old daemon may still hold the SOCKS5 port for a moment. */
  readonly takeover: boolean;
  /** Int32 at 0: connections open in the whole daemon (--max-connections holds across workers). */
  readonly sharedConnections: SharedArrayBuffer;
}

export type ToWorker =
  | { readonly type: 'state'; readonly snapshot: Snapshot }
  | { readonly type: 'svid'; readonly svid: Svid }
  | { readonly type: 'svid-reply'; readonly id: number; readonly svid?: Svid; readonly error?: string }
  | { readonly type: 'stats'; readonly id: number }
  | { readonly type: 'watch-flows'; readonly on: boolean }
  | { readonly type: 'log-level'; readonly level: string }
  | { readonly type: 'close-listeners' }
  | { readonly type: 'crash' }
  | { readonly type: 'drain'; readonly deadlineMs: number };

export type FromWorker =
  | { readonly type: 'listening'; readonly listeners: readonly CaptureListener[]; readonly socks?: { address: string; port: number } }
  | { readonly type: 'svid-request'; readonly id: number; readonly identity: string }
  | { readonly type: 'stats'; readonly id: number; readonly stats: DataplaneStats; readonly metrics: MetricObjectWithValues<MetricValue<string>>[] }
  | { readonly type: 'flow'; readonly event: FlowEvent }
  | { readonly type: 'drained'; readonly cut: number }
  | { readonly type: 'failed'; readonly error: string };
