// A manifest file (file mode's whole input) and its translation into the daemon's state: any text is
// objects and a snapshot, or a ManifestError that names the file.
import { ManifestError } from '../../src/sources/errors.js';
import { parseManifestText } from '../../src/sources/manifests.js';
import { translate } from '../../src/sources/translate.js';
import { check, expecting } from './contract.js';

export function fuzz(data: Buffer): void {
  const text = data.toString('utf8');
  const objects = expecting(() => parseManifestText('fuzz.yaml', text), ManifestError);
  if (objects === undefined) return;
  const snapshot = expecting(() => translate(objects, { trustDomain: 'cluster.local' }), ManifestError);
  if (snapshot === undefined) return;
  check(Array.isArray(snapshot.workloads) && Array.isArray(snapshot.services), 'a snapshot without workloads or services');
}
