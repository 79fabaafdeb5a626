// `ztunnel-ts observe`: a live, Hubble-like view of connections from one daemon's admin /flows stream,
// or from every node of the lab at once.
import { spawn } from 'node:child_process';
import http from 'node:http';
import { createInterface } from 'node:readline';
import type { Command } from 'commander';
import { readLabState } from '../lab/lab.js';
import { nsArgs } from '../lab/shell.js';
import type { FlowEvent } from '../telemetry/flows.js';
import { UsageError } from './usage-error.js';

interface ObserveFlags {
  admin: string;
  lab?: boolean;
  namespace?: string;
  verdict?: string;
  json?: boolean;
  count?: string;
}

export function formatFlow(e: FlowEvent): string {
  const who = (w: { workload: string | undefined; namespace: string | undefined; addr: string }): string =>
    w.workload === undefined ? w.addr.replace(/:\d+$/, '') : `${w.namespace ?? '?'}/${w.workload}`;
  const id = e.src.identity === undefined ? 'plaintext' : e.src.identity.replace(/^spiffe:\/\/[^/]+\//, '');
  const port = e.dst.addr.split(':').at(-1) ?? '';
  const verdict = e.verdict === 'denied' ? 'DENIED' : e.type === 'open' ? 'OPEN' : 'CLOSED';
  const detail = e.type === 'open' ? '' : ` ${e.bytesSent}B→ ←${e.bytesRecv}B ${e.durationMs.toFixed(1)}ms${e.flag === undefined ? '' : ` ${e.flag}`}`;
  return `${e.time.slice(11, 23)} ${e.node.padEnd(8)} ${who(e.src)} (${id}) -> ${who(e.dst)}:${port} ${e.direction} ${verdict}${detail}`;
}

/** Reads server-sent events from the admin /flows endpoint; calls back per event until the stream ends. */
function follow(url: URL, onEvent: (e: FlowEvent) => void): Promise<void> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, (res) => {
      if (res.statusCode !== 200) {
        reject(new UsageError(`${url.origin}: /flows answered ${res.statusCode ?? 0}`));
        return;
      }
      let data = '';
      createInterface({ input: res }).on('line', (line) => {
        if (line.startsWith('data: ')) data += line.slice(6);
        else if (line === '' && data !== '') {
          onEvent(JSON.parse(data) as FlowEvent);
          data = '';
        }
      });
      res.on('end', () => resolve());
    });
    req.on('error', (err) => reject(new UsageError(`cannot reach the admin endpoint ${url.origin}: ${err.message}`)));
  });
}

export function registerObserve(program: Command): void {
  program
    .command('observe')
    .description('live view of connections: source → destination, verdict, bytes, duration')
    .option('--admin <url>', 'a daemon admin endpoint', 'http://127.0.0.1:15000')
    .option('--lab', 'follow every node and waypoint of the running lab')
    .option('--namespace <ns>', 'only flows from or to this namespace')
    .option('--verdict <v>', 'allowed or denied')
    .option('--json', 'one JSON object per line')
    .option('--count <n>', 'exit after this many events')
    .action(async (o: ObserveFlags) => {
      if (o.verdict !== undefined && o.verdict !== 'allowed' && o.verdict !== 'denied') {
        throw new UsageError(`--verdict: expected allowed or denied, got "${o.verdict}"`);
      }
      const limit = o.count === undefined ? Infinity : Number(o.count);
      if (!(limit > 0)) throw new UsageError(`--count: expected a positive number, got "${o.count ?? ''}"`);
      // A reader that went away (`observe | head`, a killed parent) ends the follower quietly.
      process.stdout.on('error', (err: NodeJS.ErrnoException) => process.exit(err.code === 'EPIPE' ? 0 : 1));
      let seen = 0;
      const print = (e: FlowEvent): void => {
        process.stdout.write(`${o.json === true ? JSON.stringify(e) : formatFlow(e)}\n`);
        seen += 1;
        if (seen >= limit) process.exit(0);
      };
      const filters = [
        ...(o.namespace === undefined ? [] : ['--namespace', o.namespace]),
        ...(o.verdict === undefined ? [] : ['--verdict', o.verdict]),
      ];
      if (o.lab === true) {
        // Each node's (and each waypoint's) admin endpoint is 127.0.0.1 inside its own netns: follow each from there.
        const state = readLabState();
        if (state === undefined) throw new UsageError('no lab is up');
        const waypointNetns = (state.waypoints ?? []).flatMap((w) => state.pods.filter((p) => `${p.namespace}/${p.name}` === w.pod).map((p) => p.netns));
        const cli = process.argv[1] ?? '';
        const followers: ReturnType<typeof spawn>[] = [];
        process.once('exit', () => followers.forEach((c) => c.kill()));
        await Promise.all(
          [...state.nodes.map((n) => n.netns), ...waypointNetns].map(
            (netns) =>
              new Promise<void>((resolve) => {
                const child = spawn('nsenter', nsArgs(netns, process.execPath, [cli, 'observe', '--json', ...filters]), { stdio: ['ignore', 'pipe', 'inherit'] });
                followers.push(child);
                createInterface({ input: child.stdout }).on('line', (l) => print(JSON.parse(l) as FlowEvent));
                child.on('exit', () => resolve());
              }),
          ),
        );
        return;
      }
      const url = new URL('/flows', o.admin);
      if (o.namespace !== undefined) url.searchParams.set('namespace', o.namespace);
      if (o.verdict !== undefined) url.searchParams.set('verdict', o.verdict);
      await follow(url, print);
    });
}
