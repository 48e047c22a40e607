// Reads the PyTorch fixtures written by tools/fixtures/<family>.py (committed JSON; no Python needed).
import { readFileSync } from "node:fs";

export interface FixtureTensor {
  shape: number[];
  data: number[];
}

export type FixtureCase = Record<string, FixtureTensor | number | number[] | string | boolean>;

const cache = new Map<string, Record<string, FixtureCase>>();

export function fixtures(family: string): Record<string, FixtureCase> {
  let f = cache.get(family);
  if (!f) {
    const text = readFileSync(new URL(`./fixtures/${family}.json`, import.meta.url), "utf8");
    f = (JSON.parse(text) as { cases: Record<string, FixtureCase> }).cases;
    cache.set(family, f);
  }
  return f;
}

/** A tensor entry of a case, checked to exist. */
export function tensorOf(c: FixtureCase, key: string): FixtureTensor {
  const t = c[key];
  if (!t || typeof t !== "object" || !("shape" in t)) throw new Error(`fixture has no tensor "${key}" (has ${Object.keys(c).join(", ")})`);
  return t;
}
