export type SourceErrorCode = 'MANIFEST_READ' | 'MANIFEST_YAML' | 'MANIFEST_FIELD' | 'MANIFEST_PATH';

/** A manifest that cannot be used: names the file, the object and the field at fault. */
export class ManifestError extends Error {
  readonly code: SourceErrorCode;
  readonly file: string;
  readonly object: string | undefined;
  readonly field: string | undefined;

  constructor(
    code: SourceErrorCode,
    file: string,
    detail: string,
    where: { object?: string; field?: string } = {},
    options?: ErrorOptions,
  ) {
    const parts = [file, where.object, where.field].filter((p): p is string => p !== undefined && p !== '');
    super(`${parts.join(': ')}: ${detail}`, options);
    this.name = 'ManifestError';
    this.code = code;
    this.file = file;
    this.object = where.object;
    this.field = where.field;
  }
}
