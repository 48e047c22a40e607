// The layering of src/ (DEVELOPERS.md): io → gpu → tensor → kernels → ops → nn → models → data → trainer.
// Every import of every file under src/ (type-only ones included) is parsed; the test fails on a cycle
// between files, a cycle between layers (folders), or an import from a layer above the importer's own.
import assert from "node:assert/strict";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { test } from "node:test";

const root = resolve(import.meta.dirname, "..");
const src = join(root, "src");

/** The layers bottom up; files directly under src/ (index.ts) may import any of them. */
export const LAYERS = ["io", "gpu", "tensor", "kernels", "ops", "nn", "models", "data", "trainer"] as const;

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((f) => {
    const p = join(dir, f);
    return statSync(p).isDirectory() ? files(p) : /\.ts$/.test(f) ? [p] : [];
  });
}

/** The relative specifiers a file imports or re-exports, type-only and dynamic imports included. */
export function importsOf(text: string): string[] {
  const out: string[] = [];
  const stripped = text.replace(/\/\*[\s\S]*?\*\//g, "").replace(/^\s*\/\/.*$/gm, "");
  const re = /(?:^|[\s;])(?:import|export)\s+(?:type\s+)?(?:[\w*{}\s,$]+?\s+from\s+)?["']([^"']+)["']|import\(\s*["']([^"']+)["']\s*\)/gm;
  for (const m of stripped.matchAll(re)) {
    const spec = m[1] ?? m[2]!;
    if (spec.startsWith(".")) out.push(spec);
  }
  return out;
}

function layerOf(file: string): string | null {
  const rel = relative(src, file).split(/[\\/]/);
  return rel.length > 1 ? rel[0]! : null;
}

function graph(): Map<string, string[]> {
  const g = new Map<string, string[]>();
  for (const f of files(src)) {
    const deps = importsOf(readFileSync(f, "utf8")).map((s) => resolve(dirname(f), s));
    g.set(f, deps);
  }
  return g;
}

/** One cycle through each strongly connected component of more than one node (or a self-loop). */
function cycles(g: Map<string, string[]>): string[][] {
  let index = 0;
  const idx = new Map<string, number>(), low = new Map<string, number>(), on = new Set<string>(), stack: string[] = [];
  const out: string[][] = [];
  const visit = (v: string) => {
    idx.set(v, index);
    low.set(v, index++);
    stack.push(v);
    on.add(v);
    for (const w of g.get(v) ?? []) {
      if (!g.has(w)) continue;
      if (!idx.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (on.has(w)) low.set(v, Math.min(low.get(v)!, idx.get(w)!));
    }
    if (low.get(v) === idx.get(v)) {
      const comp: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        on.delete(w);
        comp.push(w);
      } while (w !== v);
      if (comp.length > 1 || (g.get(v) ?? []).includes(v)) out.push(comp.sort());
    }
  };
  for (const v of g.keys()) if (!idx.has(v)) visit(v);
  return out;
}

const name = (f: string) => relative(root, f);

test("every relative import in src/ resolves to a file in src/", () => {
  const bad: string[] = [];
  for (const [f, deps] of graph()) {
    for (const d of deps) if (!statSync(d, { throwIfNoEntry: false })?.isFile()) bad.push(`${name(f)} → ${name(d)}`);
  }
  assert.deepEqual(bad, []);
});

test("the import parser sees plain, type-only, re-export, multi-line and dynamic imports", () => {
  const text = `import { a } from "./a.ts";\nimport type { B } from "../b.ts";\nexport { c } from "./c.ts";\nexport * from "./d.ts";\n` +
    `import {\n  e,\n  type F,\n} from "./e.ts";\nconst g = await import("./g.ts");\n// import { h } from "./h.ts";\nimport "./side.ts";\nimport x from "node:fs";\n`;
  assert.deepEqual(importsOf(text), ["./a.ts", "../b.ts", "./c.ts", "./d.ts", "./e.ts", "./g.ts", "./side.ts"]);
});

test("no import cycle between files of src/", () => {
  assert.deepEqual(cycles(graph()).map((c) => c.map(name)), []);
});

test("no import cycle between the layers (folders) of src/", () => {
  const g = new Map<string, string[]>();
  for (const [f, deps] of graph()) {
    const from = layerOf(f);
    if (!from) continue;
    const to = new Set(g.get(from) ?? []);
    for (const d of deps) {
      const l = layerOf(d);
      if (l && l !== from) to.add(l);
    }
    g.set(from, [...to]);
  }
  assert.deepEqual(cycles(g), []);
});

test("each layer imports only from itself and the layers below it", () => {
  const up: string[] = [];
  for (const [f, deps] of graph()) {
    const from = layerOf(f);
    if (!from) continue;
    const rank = LAYERS.indexOf(from as (typeof LAYERS)[number]);
    assert.ok(rank >= 0, `${name(f)}: src/${from}/ is not a layer (${LAYERS.join(" → ")})`);
    for (const d of deps) {
      const to = layerOf(d);
      if (to === null) up.push(`${name(f)} → ${name(d)} (src/index.ts is above every layer)`);
      else if (LAYERS.indexOf(to as (typeof LAYERS)[number]) > rank) up.push(`${name(f)} → ${name(d)} (${from} is below ${to})`);
    }
  }
  assert.deepEqual(up, []);
});
