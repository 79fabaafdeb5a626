// How much a stream buffers before it pushes back. Node's default (16 KiB) is a quarter of one socket
// read (64 KiB), so every chunk copied between a socket and an HBONE stream paused the reader and resumed
// it (an epoll_ctl pair per chunk: ~10,000/s in a bulk transfer). 1 MiB keeps the copy flowing; it is a
// bound, not an allocation, and stays below the 4 MiB HTTP/2 stream window, so a stuck peer still costs
// one connection's buffers. Measured in bench/README.md (bulk: 3.0 -> 4.0 Gbit/s, 3.8 -> 2.8 CPU s/GiB).
import { setDefaultHighWaterMark } from 'node:stream';

export const PROXY_HIGH_WATER_MARK = 1024 * 1024;

/** Process-wide: the daemon and the waypoint each own their process. */
export function useProxyBufferSizes(): void {
  setDefaultHighWaterMark(false, PROXY_HIGH_WATER_MARK);
}
