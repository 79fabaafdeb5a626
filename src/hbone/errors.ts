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
  /** The peer refused the stream before processing it: safe to try again on another connection. */
  readonly refused: boolean;

  constructor(code: HboneErrorCode, message: string, options?: ErrorOptions & { status?: number; refused?: boolean }) {
    super(message, options);
    this.name = 'HboneError';
    this.code = code;
    this.status = options?.status;
    this.refused = options?.refused === true;
  }
}
