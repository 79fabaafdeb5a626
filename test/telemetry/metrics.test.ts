import t from 'tap';
import { Metrics, type TcpLabels } from '../../src/telemetry/metrics.js';
import { connectionLabels } from '../../src/telemetry/access-log.js';

const labels = (dstService: string): TcpLabels => connectionLabels({ direction: 'inbound', dstService, mtls: true }, undefined);
const line = (text: string, name: string, service: string): string | undefined =>
  text.split('\n').find((l) => l.startsWith(`${name}{`) && l.includes(`destination_service_name="${service}"`));

t.test('TCP counts add up between scrapes and read as Istio counters', async (t) => {
  const m = new Metrics({ processMetrics: false });
  const a = m.tcp('a', () => labels('ns/a'));
  t.equal(m.tcp('a', () => t.fail('labels are made once per key') as never), a, 'one series per key');
  const b = m.tcp('b', () => labels('ns/b'));
  a.opened.inc();
  a.received.inc(100);
  a.sent.inc(0);
  b.failed.inc();
  let text = await m.registry.metrics();
  t.match(line(text, 'istio_tcp_connections_opened_total', 'a'), / 1$/);
  t.match(line(text, 'istio_tcp_received_bytes_total', 'a'), / 100$/);
  t.match(line(text, 'istio_tcp_sent_bytes_total', 'a'), / 0$/, 'a count of 0 bytes is shown');
  t.equal(line(text, 'istio_tcp_connections_closed_total', 'a'), undefined, 'a count never made is not');
  t.match(line(text, 'istio_tcp_connections_failed_total', 'b'), / 1$/);
  t.equal(line(text, 'istio_tcp_connections_opened_total', 'b'), undefined, 'label sets stay apart');

  a.opened.inc();
  a.received.inc(23);
  text = await m.registry.metrics();
  t.match(line(text, 'istio_tcp_connections_opened_total', 'a'), / 2$/, 'the next scrape shows the running total, not twice it');
  t.match(line(text, 'istio_tcp_received_bytes_total', 'a'), / 123$/);

  const json = await m.registry.getMetricsAsJSON();
  const received = json.find((x) => x.name === 'istio_tcp_received_bytes_total') as unknown as { values: { value: number; labels: Record<string, string> }[] };
  t.same(received.values.map((v) => [v.labels['destination_service_name'], v.value]), [['a', 123]], 'a worker reports the same to its process');
});
