// libbpf.so.1 and libc through koffi: the only place in the project that touches FFI.
// Layouts are those of libbpf 1.1 (DESIGN §6).
import koffi from 'koffi';

const libbpf = koffi.load('libbpf.so.1');
const libc = koffi.load('libc.so.6');

export const bpf = {
  objectOpenFile: libbpf.func('void *bpf_object__open_file(const char *path, void *opts)'),
  objectLoad: libbpf.func('int bpf_object__load(void *obj)'),
  objectClose: libbpf.func('void bpf_object__close(void *obj)'),
  findProgram: libbpf.func('void *bpf_object__find_program_by_name(void *obj, const char *name)'),
  programFd: libbpf.func('int bpf_program__fd(void *prog)'),
  findMapFd: libbpf.func('int bpf_object__find_map_fd_by_name(void *obj, const char *name)'),
  mapUpdate: libbpf.func('int bpf_map_update_elem(int fd, const void *key, const void *value, uint64_t flags)'),
  mapLookup: libbpf.func('int bpf_map_lookup_elem(int fd, const void *key, _Out_ void *value)'),
  mapDelete: libbpf.func('int bpf_map_delete_elem(int fd, const void *key)'),
  mapGetNextKey: libbpf.func('int bpf_map_get_next_key(int fd, const void *key, _Out_ void *next)'),
  tcHookCreate: libbpf.func('int bpf_tc_hook_create(void *hook)'),
  tcHookDestroy: libbpf.func('int bpf_tc_hook_destroy(void *hook)'),
  tcAttach: libbpf.func('int bpf_tc_attach(void *hook, void *opts)'),
  tcDetach: libbpf.func('int bpf_tc_detach(void *hook, void *opts)'),
  attachNetns: libbpf.func('void *bpf_program__attach_netns(void *prog, int netns_fd)'),
  linkDestroy: libbpf.func('int bpf_link__destroy(void *link)'),
  numPossibleCpus: libbpf.func('int libbpf_num_possible_cpus()'),
  getError: libbpf.func('long libbpf_get_error(void *ptr)'),
  setPrint: libbpf.func('void *libbpf_set_print(void *fn)'),
};

export const c = {
  ifNameToIndex: libc.func('unsigned int if_nametoindex(const char *name)'),
  socket: libc.func('int socket(int domain, int type, int protocol)'),
  setsockopt: libc.func('int setsockopt(int fd, int level, int name, const void *value, unsigned int len)'),
  bind: libc.func('int bind(int fd, const void *addr, unsigned int len)'),
  listen: libc.func('int listen(int fd, int backlog)'),
  close: libc.func('int close(int fd)'),
  getrlimit: libc.func('int getrlimit(int resource, _Out_ void *rlim)'),
  // The socket splice (src/datapath/socket-splicer.ts). epoll_wait blocks: it is called with .async(),
  // on a libuv pool thread.
  epollCreate: libc.func('int epoll_create1(int flags)'),
  epollCtl: libc.func('int epoll_ctl(int epfd, int op, int fd, const void *event)'),
  epollWait: libc.func('int epoll_wait(int epfd, void *events, int maxevents, int timeout)'),
  pipe2: libc.func('int pipe2(_Out_ int *fds, int flags)'),
  fcntl: libc.func('int fcntl(int fd, int cmd, int arg)'),
  splice: libc.func('intptr_t splice(int fdIn, void *offIn, int fdOut, void *offOut, size_t len, unsigned int flags)'),
  shutdown: libc.func('int shutdown(int fd, int how)'),
  setrlimit: libc.func('int setrlimit(int resource, const void *rlim)'),
  sigfillset: libc.func('int sigfillset(void *set)'),
  pthreadSigmask: libc.func('int pthread_sigmask(int how, const void *set, void *old)'),
  // glibc's: hands the free pages inside its heaps back to the kernel (src/runtime/memory-trim.ts).
  mallocTrim: libc.func('int malloc_trim(size_t pad)'),
};

const SIG_BLOCK = 0;
const SIG_SETMASK = 2;
const SIGSET_BYTES = 128; // glibc's sigset_t

/**
 * Runs fn with this thread's signals held back (delivered when it returns). The kernel's BPF verifier
 * gives up with EAGAIN when a signal is pending, and libbpf retries only a few times: a profiler's
 * SIGPROF every millisecond (node --cpu-prof) made every load fail.
 */
export function withSignalsBlocked<T>(fn: () => T): T {
  const all = Buffer.alloc(SIGSET_BYTES);
  const old = Buffer.alloc(SIGSET_BYTES);
  c.sigfillset(all);
  if ((c.pthreadSigmask(SIG_BLOCK, all, old) as number) !== 0) return fn();
  try {
    return fn();
  } finally {
    c.pthreadSigmask(SIG_SETMASK, old, null);
  }
}

export function errno(): number {
  return koffi.errno();
}

export const BPF_ANY = 0n;
export const BPF_TC_INGRESS = 1;
export const BPF_TC_F_REPLACE = 1;
export const TC_HOOK_SIZE = 24;
export const TC_OPTS_SIZE = 32;
