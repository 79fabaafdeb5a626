// Every metric the daemon exports, with Istio's names and ztunnel's labels, so existing dashboards and
// alerts work. Label values are bounded (workloads, services, flags), never per connection.
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { collectProcessMetrics } from './process-metrics.js';
import type { Workload } from '../model/types.js';

export const TCP_LABELS = [
  'reporter',
  'source_workload',
  'source_canonical_service',
  'source_canonical_revision',
  'source_workload_namespace',
  'source_principal',
  'source_app',
  'source_version',
  'source_cluster',
  'destination_service',
  'destination_service_namespace',
  'destination_service_name',
  'destination_workload',
  'destination_canonical_service',
  'destination_canonical_revision',
  'destination_workload_namespace',
  'destination_principal',
  'destination_app',
  'destination_version',
  'destination_cluster',
  'request_protocol',
  'response_flags',
  'connection_security_policy',
] as const;

export type TcpLabel = (typeof TCP_LABELS)[number];

/** Istio's HTTP metrics (reported by waypoints): the TCP labels plus the response code. */
export const HTTP_LABELS = [...TCP_LABELS, 'response_code'] as const;
export type HttpLabel = (typeof HTTP_LABELS)[number];
export type TcpLabels = Record<TcpLabel, string>;

export const UNKNOWN = 'unknown';
export const CLUSTER = 'Kubernetes';

export interface MetricsSources {
  /** HBONE pool connections and streams right now. */
  readonly pool?: () => { connections: number; streams: number };
  /** Seconds until each local identity's certificate expires. */
  readonly certificates?: () => readonly { identity: string; notAfter: Date }[];
  /** Cumulative eBPF counters, when capture is on. */
  readonly ebpf?: () => Record<string, bigint> | undefined;
  /** Node's process metrics (CPU, memory, event loop); a worker thread leaves them to its process. */
  readonly processMetrics?: boolean;
}

/** One count of one label set: a plain number, added up between scrapes. */
export class TcpCount {
  value = 0;
  /** Counted at all, if only 0 bytes: then the series is shown, as prom-client shows it. */
  counted = false;
  inc(by = 1): void {
    this.value += by;
    this.counted = true;
  }
}

/**
 * The TCP counts of one label set. prom-client's `labels(...).inc()` hashes all 23 labels into a string
 * key on every call (4 calls per connection); these are numbers, handed to the counters when they are
 * read (a scrape, or a worker's report), where the hashing happens once per label set.
 */
export interface TcpSeries {
  readonly opened: TcpCount;
  readonly closed: TcpCount;
  readonly received: TcpCount;
  readonly sent: TcpCount;
  readonly failed: TcpCount;
}

interface TcpSeriesEntry {
  readonly labels: TcpLabels;
  readonly series: TcpSeries;
}

export class Metrics {
  readonly registry = new Registry();
  /** Series by a caller's short key for their label set; bounded like the label values themselves. */
  readonly #tcpSeries = new Map<string, TcpSeriesEntry>();
  readonly requests: Counter<HttpLabel>;
  readonly requestDuration: Histogram<HttpLabel>;

  constructor(sources: MetricsSources = {}) {
    const r = this.registry;
    const tcpSeries = this.#tcpSeries;
    // The TCP counters are written only from the series, at each read (a direct inc() would be reset there).
    const counter = (name: string, help: string, count: (s: TcpSeries) => TcpCount): Counter<TcpLabel> =>
      new Counter({
        name,
        help,
        labelNames: TCP_LABELS,
        registers: [r],
        collect() {
          this.reset();
          for (const { labels, series } of tcpSeries.values()) {
            const c = count(series);
            if (c.counted) this.inc(labels, c.value);
          }
        },
      });
    counter('istio_tcp_connections_opened_total', 'TCP connections opened', (s) => s.opened);
    counter('istio_tcp_connections_closed_total', 'TCP connections closed', (s) => s.closed);
    counter('istio_tcp_received_bytes_total', 'Bytes sent by the client to the server', (s) => s.received);
    counter('istio_tcp_sent_bytes_total', 'Bytes sent by the server to the client', (s) => s.sent);
    counter('istio_tcp_connections_failed_total', 'TCP connections that failed or were denied', (s) => s.failed);
    this.requests = new Counter({ name: 'istio_requests_total', help: 'HTTP requests', labelNames: HTTP_LABELS, registers: [r] });
    this.requestDuration = new Histogram({
      name: 'istio_request_duration_milliseconds',
      help: 'HTTP request duration',
      labelNames: HTTP_LABELS,
      buckets: [0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000],
      registers: [r],
    });
    if (sources.processMetrics !== false) collectProcessMetrics(r);
    new Gauge({
      name: 'ztunnel_hbone_pool_connections',
      help: 'Open HBONE client connections',
      registers: [r],
      collect() {
        this.set(sources.pool?.().connections ?? 0);
      },
    });
    new Gauge({
      name: 'ztunnel_hbone_pool_streams',
      help: 'Open HBONE streams on pooled client connections',
      registers: [r],
      collect() {
        this.set(sources.pool?.().streams ?? 0);
      },
    });
    new Gauge({
      name: 'ztunnel_certificate_expiry_seconds',
      help: 'Seconds until the workload certificate expires',
      labelNames: ['identity'],
      registers: [r],
      collect() {
        this.reset();
        for (const c of sources.certificates?.() ?? []) this.set({ identity: c.identity }, (c.notAfter.getTime() - Date.now()) / 1000);
      },
    });
    new Counter({
      name: 'ztunnel_ebpf_capture_packets_total',
      help: 'Packets seen by the eBPF capture program, by what it did with them',
      labelNames: ['action'],
      registers: [r],
      collect() {
        const stats = sources.ebpf?.();
        if (stats === undefined) return;
        this.reset();
        for (const [action, n] of Object.entries(stats)) this.inc({ action }, Number(n));
      },
    });
  }

  /** The TCP series for key, made from labels() the first time the key is seen. */
  tcp(key: string, labels: () => TcpLabels): TcpSeries {
    let entry = this.#tcpSeries.get(key);
    if (entry === undefined) {
      entry = { labels: labels(), series: { opened: new TcpCount(), closed: new TcpCount(), received: new TcpCount(), sent: new TcpCount(), failed: new TcpCount() } };
      this.#tcpSeries.set(key, entry);
    }
    return entry.series;
  }
}

/** The workload half of ztunnel's labels, "unknown" where a value is missing. */
export function workloadLabels(side: 'source' | 'destination', w: Workload | undefined, principal: string | undefined): Partial<TcpLabels> {
  const canonical = w?.labels['service.istio.io/canonical-name'] ?? w?.labels['app.kubernetes.io/name'] ?? w?.labels['app'] ?? w?.name;
  const revision = w?.labels['service.istio.io/canonical-revision'] ?? w?.labels['app.kubernetes.io/version'] ?? w?.labels['version'] ?? 'latest';
  return {
    [`${side}_workload`]: w?.name ?? UNKNOWN,
    [`${side}_canonical_service`]: canonical ?? UNKNOWN,
    [`${side}_canonical_revision`]: w === undefined ? UNKNOWN : revision,
    [`${side}_workload_namespace`]: w?.namespace ?? UNKNOWN,
    [`${side}_principal`]: principal ?? UNKNOWN,
    [`${side}_app`]: w?.labels['app'] ?? UNKNOWN,
    [`${side}_version`]: w?.labels['version'] ?? UNKNOWN,
    [`${side}_cluster`]: w === undefined ? UNKNOWN : CLUSTER,
  };
}
