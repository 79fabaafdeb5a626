export type HboneErrorCode =
  | 'HBONE_TLS'
  | 'HBONE_IDENTITY_MISMATCH'
  | 'HBONE_CONNECT_STATUS'
  | 'HBONE_TIMEOUT'
  | 'HBONE_POOL_CLOSED'
  | 'HBONE_SESSION';

export class HboneError extends Error {
  readonly code: HboneErrorCode;
  /** The HTTP status the peer answered, for HBONE_CONNECT_STATUS. */
  readonly status: number | undefined;

  constructor(code: HboneErrorCode, message: string, options?: ErrorOptions & { status?: number }) {
    super(message, options);
    this.name = 'HboneError';
    this.code = code;
    this.status = options?.status;
  }
}
