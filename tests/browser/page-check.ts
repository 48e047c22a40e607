// What the page scripts share in the browser: named checks whose outcomes the Node side asserts on.

export interface Result {
  name: string;
  ok: boolean;
  error?: string;
}

/** Runs one named check and records whether it passed (with the error's stack when it did not). */
export async function check(name: string, fn: () => Promise<void>, out: Result[]): Promise<void> {
  try {
    await fn();
    out.push({ name, ok: true });
  } catch (e) {
    out.push({ name, ok: false, error: String((e as Error).stack ?? e) });
  }
}
