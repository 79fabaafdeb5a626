// What the lab demos share: how they print, and how they start and always tear the lab down.
import { labDown, labNetns, readLabState } from '../lab/lab.js';

export const say = (text: string): void => void process.stdout.write(`\n\x1b[1m${text}\x1b[0m\n`);
export const show = (text: string): void => void process.stdout.write(`  ${text}\n`);
export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Runs a demo on a fresh lab and removes the lab afterwards, whatever happened; needs root. */
export function runLabDemo(name: string, body: () => Promise<void>, lastStep: number): void {
  const main = async (): Promise<void> => {
    if (process.getuid?.() !== 0) {
      process.stderr.write(`the ${name} needs root (network namespaces, eBPF)${name === 'lab demo' ? '; `npm run demo:loopback` runs without' : ''}\n`);
      process.exit(1);
    }
    if (labNetns().length > 0 || readLabState() !== undefined) await labDown();
    try {
      await body();
    } finally {
      say(`${lastStep}. lab down: every namespace, hook, rule and process goes`);
      await labDown();
      show(`lab namespaces left: ${labNetns().length}`);
    }
  };
  main().catch((err: unknown) => {
    process.stderr.write(`demo failed: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  });
}
