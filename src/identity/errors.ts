export type IdentityErrorCode =
  | 'CA_LOAD'
  | 'CA_CSR_INVALID'
  | 'CA_FORBIDDEN'
  | 'CA_UNAUTHENTICATED'
  | 'CA_UNAVAILABLE'
  | 'IDENTITY_INVALID';

export class IdentityError extends Error {
  readonly code: IdentityErrorCode;

  constructor(code: IdentityErrorCode, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'IdentityError';
    this.code = code;
  }
}
