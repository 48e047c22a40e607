// The host's filesystem, where there is one (Deno and Node), reached without naming node:fs in a way that
// bundlers follow: browser bundles never include it. Every module that touches files goes through here.

export type Fs = typeof import("node:fs/promises");

let fsModule: Promise<Fs> | null = null;

/** node:fs/promises (Node and Deno); loaded through a variable so browser bundles do not include it. */
export function fs(): Promise<Fs> {
  const spec = "node:fs/promises";
  return (fsModule ??= import(/* @vite-ignore */ spec) as Promise<Fs>);
}

/** Whether this host has a filesystem (Deno or Node), as opposed to a browser or a worker in one. */
export function hasFilesystem(): boolean {
  const g = globalThis as { Deno?: unknown; process?: { versions?: { node?: string } } };
  return typeof g.Deno !== "undefined" || typeof g.process?.versions?.node === "string";
}

/** Whether `e` is a filesystem's "no such file" (Node's ENOENT, Deno's NotFound). */
export function isNotFound(e: unknown): boolean {
  return (e as { code?: string })?.code === "ENOENT" || (e as Error)?.name === "NotFound";
}

/**
 * [start, end) checked against a file of `size` bytes; `label` names the file in the message
 * ("config.json in /models/x", a path, a URL).
 */
export function checkRange(label: string, start: number, end: number, size: number): [number, number] {
  if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end) || start < 0 || end < start || end > size) {
    throw new Error(`${label}: bytes [${start}, ${end}) asked for, but the file has ${size} bytes`);
  }
  return [start, end];
}
