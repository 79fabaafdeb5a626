// Local mode: Kubernetes-shaped YAML from a file or a directory, watched and re-applied without restart.
// A file that fails to parse or validate keeps its last good objects, so one bad edit loses nothing.
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { watch, type FSWatcher } from 'chokidar';
import type { Logger } from 'pino';
import { parseAllDocuments } from 'yaml';
import type { State } from '../model/state.js';
import { ManifestError } from './errors.js';
import { describeObject, isKnownKind, validateObject } from './kube-schema.js';
import { translate, type SourcedObject, type TranslateOptions } from './translate.js';

const YAML_FILE = /\.ya?ml$/i;

/** Every YAML file at a path: the file itself, or all below a directory in a stable order. */
export function listManifestFiles(path: string): string[] {
  let st;
  try {
    st = statSync(path);
  } catch (err) {
    throw new ManifestError('MANIFEST_PATH', path, 'no such file or directory', {}, { cause: err });
  }
  if (st.isFile()) return [resolve(path)];
  const out: string[] = [];
  const walk = (dir: string): void => {
    for (const entry of readdirSync(dir, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
      const full = join(dir, entry.name);
      if (entry.isDirectory()) walk(full);
      else if (entry.isFile() && YAML_FILE.test(entry.name)) out.push(resolve(full));
    }
  };
  walk(path);
  return out;
}

/** Parses and validates one file; objects of kinds the daemon does not read are skipped. */
export function readManifestFile(file: string): SourcedObject[] {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ManifestError('MANIFEST_READ', file, (err as Error).message, {}, { cause: err });
  }
  return parseManifestText(file, text);
}

export function parseManifestText(file: string, text: string): SourcedObject[] {
  const out: SourcedObject[] = [];
  const docs = parseAllDocuments(text, { prettyErrors: true });
  if (!Array.isArray(docs)) return out; // an empty stream
  docs.forEach((doc, index) => {
    const err = doc.errors[0];
    if (err !== undefined) {
      const pos = err.linePos?.[0];
      const where = pos === undefined ? `document ${index + 1}` : `line ${pos.line} column ${pos.col}`;
      throw new ManifestError('MANIFEST_YAML', file, `${where}: ${err.message.split('\n')[0] ?? ''}`);
    }
    let raw: unknown;
    try {
      raw = doc.toJS();
    } catch (e) {
      // Parsed, but not convertible: an alias to no anchor, or more aliases than allowed (a YAML bomb).
      throw new ManifestError('MANIFEST_YAML', file, `document ${index + 1}: ${(e as Error).message.split('\n')[0] ?? ''}`);
    }
    if (raw === null || raw === undefined) return;
    const items = isList(raw) ? raw.items : [raw];
    items.forEach((item, i) => {
      const label = `${describeObject(item)} (document ${index + 1}${isList(raw) ? `, item ${i}` : ''})`;
      if (typeof item !== 'object' || item === null || Array.isArray(item)) {
        throw new ManifestError('MANIFEST_FIELD', file, 'expected a Kubernetes object', { object: label });
      }
      const kind = (item as { kind?: unknown }).kind;
      if (typeof kind !== 'string') {
        throw new ManifestError('MANIFEST_FIELD', file, 'missing kind', { object: label, field: 'kind' });
      }
      if (!isKnownKind(kind)) return;
      const result = validateObject(kind, item);
      if (!result.ok) {
        throw new ManifestError('MANIFEST_FIELD', file, result.message, { object: label, field: result.field });
      }
      out.push({ origin: file, object: result.object });
    });
  });
  return out;
}

function signature(path: string): string {
  try {
    return listManifestFiles(path)
      .map((f) => {
        const st = statSync(f);
        return `${f}:${st.size}:${st.mtimeMs}`;
      })
      .join('|');
  } catch {
    return 'unreadable';
  }
}

function isList(raw: unknown): raw is { items: unknown[] } {
  const o = raw as { kind?: unknown; items?: unknown };
  return typeof o === 'object' && o !== null && o.kind === 'List' && Array.isArray(o.items);
}

export interface ManifestSourceOptions extends TranslateOptions {
  readonly path: string;
  readonly state: State;
  readonly logger: Logger;
  /** Wait this long after a change before reloading, so an editor's several writes apply once. */
  readonly debounceMs?: number;
  /** How often to compare file sizes and mtimes, in case a watch event was missed. */
  readonly pollMs?: number;
}

export class ManifestSource {
  readonly #opts: ManifestSourceOptions;
  readonly #lastGood = new Map<string, SourcedObject[]>();
  readonly #errors = new Map<string, ManifestError>();
  #watcher: FSWatcher | undefined;
  #timer: NodeJS.Timeout | undefined;
  #poll: NodeJS.Timeout | undefined;
  /** Paths, sizes and mtimes of what was last loaded: the safety net for missed watch events. */
  #loadedSignature = '';

  constructor(opts: ManifestSourceOptions) {
    this.#opts = opts;
  }

  /** Loads once (throws only when the path itself is missing) and starts watching. */
  async start(): Promise<void> {
    this.reload();
    this.#watcher = watch(this.#opts.path, { ignoreInitial: true, awaitWriteFinish: false });
    this.#watcher.on('all', () => this.#schedule());
    this.#watcher.on('error', (err) => this.#opts.logger.error({ err }, 'manifest watcher failed'));
    await new Promise<void>((res) => this.#watcher?.once('ready', () => res()));
    // Watch events can be coalesced away (two quick writes to one file); a cheap stat poll catches those.
    this.#poll = setInterval(() => {
      if (signature(this.#opts.path) !== this.#loadedSignature) this.#schedule();
    }, this.#opts.pollMs ?? 1000);
    this.#poll.unref();
  }

  /** Files that currently fail; each keeps serving its last good objects. */
  get errors(): readonly ManifestError[] {
    return [...this.#errors.values()];
  }

  reload(): void {
    const { logger } = this.#opts;
    this.#loadedSignature = signature(this.#opts.path);
    const files = listManifestFiles(this.#opts.path);
    const present = new Set(files);
    for (const f of [...this.#lastGood.keys()]) if (!present.has(f)) this.#lastGood.delete(f);
    for (const f of [...this.#errors.keys()]) if (!present.has(f)) this.#errors.delete(f);
    for (const file of files) {
      try {
        this.#lastGood.set(file, readManifestFile(file));
        if (this.#errors.delete(file)) logger.info({ file }, 'manifest file is valid again');
      } catch (err) {
        if (!(err instanceof ManifestError)) throw err;
        this.#errors.set(file, err);
        const kept = this.#lastGood.has(file) ? 'keeping its last good objects' : 'file skipped';
        logger.error({ file, object: err.object, field: err.field, code: err.code }, `${err.message} (${kept})`);
      }
    }
    const objects = [...this.#lastGood.values()].flat();
    this.#opts.state.replace(translate(objects, this.#opts));
    logger.debug({ files: files.length, objects: objects.length }, 'manifests applied');
  }

  #schedule(): void {
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => {
      try {
        this.reload();
      } catch (err) {
        this.#opts.logger.error({ err }, 'manifest reload failed; keeping the current state');
      }
    }, this.#opts.debounceMs ?? 100);
  }

  async close(): Promise<void> {
    clearTimeout(this.#timer);
    clearInterval(this.#poll);
    await this.#watcher?.close();
    this.#watcher = undefined;
  }
}
