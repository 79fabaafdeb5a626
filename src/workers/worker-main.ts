// A worker thread of the node daemon: one Dataplane (its own listeners in the reuseport groups, HBONE pool,
// proxies, copy loops) on a replica of the control plane's State, with SVIDs pushed from it.
import { parentPort, workerData } from 'node:worker_threads';
import type { Logger } from 'pino';
import { createLogger } from '../cli/logger.js';
import { Dataplane } from '../dataplane.js';
import { TransparentSocketFactory } from '../datapath/transparent-sockets.js';
import { DEFAULT_TIMEOUTS } from '../hbone/constants.js';
import type { Svid } from '../identity/svid.js';
import { State } from '../model/state.js';
import { useProxyBufferSizes } from '../proxy/buffers.js';
import { startMemoryTrim } from '../runtime/memory-trim.js';
import { FlowBus, type FlowEvent } from '../telemetry/flows.js';
import { Metrics } from '../telemetry/metrics.js';
import { CertReplica } from './cert-replica.js';
import type { FromWorker, ToWorker, WorkerData } from './messages.js';

const port = parentPort;
if (port === null) throw new Error('worker-main runs only as a worker thread');
const data = workerData as WorkerData;
const { config } = data;
const post = (m: FromWorker): void => port.postMessage(m);

/** Flows go to the control plane's /flows, and are built only while someone follows them there. */
class RelayedFlows extends FlowBus {
  watchedThere = false;

  override get watched(): boolean {
    return this.watchedThere;
  }

  override publish(e: FlowEvent): void {
    if (this.watchedThere) post({ type: 'flow', event: e });
  }
}

useProxyBufferSizes();
const root = createLogger(data.logLevel, config.logFormat).child({ worker: data.id });
const loggers: Logger[] = [root];
const child = (component: string): Logger => {
  const l = root.child({ component });
  loggers.push(l);
  return l;
};
const asked = new Map<number, { resolve: (s: Svid) => void; reject: (e: Error) => void }>();
let nextAsk = 0;
const certs = new CertReplica(
  (identity) =>
    new Promise((resolve, reject) => {
      const id = nextAsk++;
      asked.set(id, { resolve, reject });
      post({ type: 'svid-request', id, identity });
    }),
);
const state = new State();
const flows = new RelayedFlows();
let dataplane: Dataplane | undefined;
const metrics = new Metrics({ pool: () => dataplane?.pool.stats ?? { connections: 0, streams: 0 }, processMetrics: false });
dataplane = new Dataplane({
  config,
  state,
  certs,
  sockets: new TransparentSocketFactory(),
  telemetry: { node: config.nodeName, logger: child('access'), metrics, flows },
  timeouts: DEFAULT_TIMEOUTS,
  child,
  sharedConnections: { buffer: data.sharedConnections, worker: data.id },
});
const dp = dataplane;
state.on('change', () => dp.onStateChange(new Set()));
// This thread's own young generation; glibc's heaps are the control plane's to trim, for the whole process.
startMemoryTrim(config.memoryTrimMs, child('memory'));

/** An uncaught error (or a kill from the admin endpoint): reset this worker's connections and end the thread; the control plane starts a new one. */
function crash(err: Error): never {
  root.error({ err: err.message }, 'worker crashed: resetting its connections');
  dp.resetAll();
  process.exit(1);
}
process.on('uncaughtException', crash);

let firstState: () => void = () => undefined;
const stateArrived = new Promise<void>((r) => (firstState = r));

port.on('message', (m: ToWorker) => {
  switch (m.type) {
    case 'state':
      state.replace(m.snapshot);
      firstState();
      return;
    case 'svid':
      certs.apply(m.svid);
      return;
    case 'svid-reply': {
      const a = asked.get(m.id);
      asked.delete(m.id);
      if (m.svid !== undefined) a?.resolve(m.svid);
      else a?.reject(new Error(m.error ?? 'no certificate'));
      return;
    }
    case 'stats':
      void metrics.registry.getMetricsAsJSON().then((json) => post({ type: 'stats', id: m.id, stats: dp.stats(), metrics: json }));
      return;
    case 'watch-flows':
      flows.watchedThere = m.on;
      return;
    case 'log-level':
      for (const l of loggers) l.level = m.level;
      return;
    case 'close-listeners':
      dp.closeListeners();
      return;
    case 'crash':
      crash(new Error('killed on request'));
    case 'drain':
      void dp.drain(m.deadlineMs).then((cut) => {
        post({ type: 'drained', cut });
        port.close();
      });
      return;
  }
});

// Serve only what the control plane knows: the first State before any listener.
await stateArrived;
try {
  const listeners = await dp.listenCapture();
  const socks = await dp.listenSocks(data.takeover);
  post({ type: 'listening', listeners, ...(socks === undefined ? {} : { socks: { address: socks.address, port: socks.port } }) });
  root.info({ socks: socks === undefined ? null : `${socks.address}:${socks.port}` }, 'worker listening');
} catch (err) {
  post({ type: 'failed', error: (err as Error).message });
  throw err;
}
