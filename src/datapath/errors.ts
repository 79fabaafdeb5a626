export type DatapathErrorCode =
  | 'DATAPATH_UNSUPPORTED'
  | 'DATAPATH_LOAD'
  | 'DATAPATH_ATTACH'
  | 'DATAPATH_MAP'
  | 'DATAPATH_SOCKET'
  | 'DATAPATH_NODE_CONFIG'
  | 'DATAPATH_RLIMIT';

/** A datapath failure, naming the interface or object, the call and the errno. */
export class DatapathError extends Error {
  readonly code: DatapathErrorCode;
  readonly errno: number | undefined;

  constructor(code: DatapathErrorCode, message: string, errno?: number) {
    super(errno === undefined ? message : `${message}: ${errnoName(errno)}`);
    this.name = 'DatapathError';
    this.code = code;
    this.errno = errno;
  }
}

const NAMES: Record<number, string> = {
  1: 'EPERM', 2: 'ENOENT', 13: 'EACCES', 16: 'EBUSY', 17: 'EEXIST', 19: 'ENODEV', 22: 'EINVAL',
  95: 'EOPNOTSUPP', 98: 'EADDRINUSE', 99: 'EADDRNOTAVAIL', 7: 'E2BIG', 28: 'ENOSPC',
};

export function errnoName(errno: number): string {
  const n = Math.abs(errno);
  return `${NAMES[n] ?? 'errno'} (${n})`;
}
