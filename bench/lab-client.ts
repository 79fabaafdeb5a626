// The lab's load-generating client pod, as the benchmarks set it up.
import { spawnSync } from 'node:child_process';
import { findPod } from '../src/lab/lab.js';

/**
 * The client pod closes first, so each of its connections leaves a TIME_WAIT for 60 s; past ~14,000 (the
 * even half of the ephemeral range, which connect() prefers) its own connect() slows to ~500/s, mesh or
 * not. The load generator may reuse them (tcp_tw_reuse=1), as a client that opens many connections would.
 */
export function clientReusesTimeWait(pod = 'shop/client'): void {
  spawnSync('nsenter', [`--net=/run/netns/${findPod(pod).netns}`, 'sysctl', '-qw', 'net.ipv4.tcp_tw_reuse=1']);
}
