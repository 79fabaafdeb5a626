// Live flow events (open, close, deny) for the admin /flows stream and `ztunnel-ts observe`.
import { EventEmitter } from 'node:events';

export interface FlowEndpoint {
  readonly addr: string;
  readonly workload: string | undefined;
  readonly namespace: string | undefined;
  readonly identity: string | undefined;
}

export interface FlowEvent {
  readonly type: 'open' | 'close' | 'deny';
  readonly time: string;
  readonly node: string;
  readonly direction: 'outbound' | 'inbound';
  readonly src: FlowEndpoint;
  readonly dst: FlowEndpoint & { readonly service: string | undefined };
  readonly verdict: 'allowed' | 'denied';
  readonly bytesSent: number;
  readonly bytesRecv: number;
  readonly durationMs: number;
  readonly error?: string;
  readonly flag?: string;
}

export class FlowBus extends EventEmitter<{ flow: [FlowEvent] }> {
  /** Whether anyone follows the flows: build an event only then. */
  get watched(): boolean {
    return this.listenerCount('flow') > 0;
  }

  publish(e: FlowEvent): void {
    if (this.listenerCount('flow') > 0) this.emit('flow', e);
  }
}
