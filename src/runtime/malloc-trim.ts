// glibc's malloc_trim(0) on a libuv pool thread, for startMemoryTrim (memory-trim.ts). Apart from it so
// that a process without the FFI (the waypoint) trims its young generation without loading koffi.
import { c } from '../datapath/ffi.js';

export const glibcMallocTrim = (done: (err: unknown) => void): void => void c.mallocTrim.async(0, done);
