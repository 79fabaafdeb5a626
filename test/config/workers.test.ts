// How many worker threads --workers auto gives, and which --workers values are refused.
import t from 'tap';
import { autoWorkers, configFromFlags } from '../../src/config/config.js';

t.test('--workers auto: max(2, CPUs/4), leaving one CPU, within the CPU limit, 1 without eBPF', async (t) => {
  const rows: [string, 'none' | 'ebpf', number, number | undefined, number][] = [
    ['2 CPUs: one (a second only contends)', 'ebpf', 2, undefined, 1],
    ['1 CPU', 'ebpf', 1, undefined, 1],
    ['4 CPUs', 'ebpf', 4, undefined, 2],
    ['8 CPUs', 'ebpf', 8, undefined, 2],
    ['16 CPUs', 'ebpf', 16, undefined, 4],
    ['96 CPUs: at most 16 (the listener map has 16 slots)', 'ebpf', 96, undefined, 16],
    ['64 CPUs, a cgroup limit of 3', 'ebpf', 64, 3, 2],
    ['64 CPUs, a cgroup limit of 1', 'ebpf', 64, 1, 1],
    ['without eBPF capture', 'none', 64, undefined, 1],
  ];
  for (const [what, capture, cpus, limit, want] of rows) t.equal(autoWorkers(capture, cpus, limit), want, what);
});

t.test('--workers values', async (t) => {
  const base = { node: 'n1', manifests: '/tmp' };
  t.equal(configFromFlags({ ...base, capture: 'ebpf', uplink: ['eth0'], workers: '3' }).workers, 3);
  t.equal(configFromFlags({ ...base }).workers, 1, 'auto without eBPF: 1');
  t.throws(() => configFromFlags({ ...base, workers: '2' }), /--workers above 1 needs --capture ebpf/);
  t.throws(() => configFromFlags({ ...base, capture: 'ebpf', uplink: ['eth0'], workers: '0' }), /--workers must be at least 1/);
  t.throws(() => configFromFlags({ ...base, capture: 'ebpf', uplink: ['eth0'], workers: '17' }), /--workers must be at most 16/);
  t.throws(() => configFromFlags({ ...base, capture: 'ebpf', uplink: ['eth0'], workers: 'many' }), /--workers/);
});
