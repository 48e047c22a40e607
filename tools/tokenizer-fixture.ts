// The fixture tokenizer (tools/bpe.ts: a small deterministic byte-level BPE tokenizer with a ChatML
// template) for tests, tiny models and the Python fixture scripts. Re-exports tools/bpe.ts.
// CLI: `node --import tsx tools/tokenizer-fixture.ts <dir>` writes the files into <dir> (made if missing).
import { makeTokenizerFiles } from "./bpe.ts";

export * from "./bpe.ts";

// CLI: write the files into the directory named by the first argument.
if (typeof process !== "undefined" && /tokenizer-fixture\.ts$/.test(process.argv?.[1] ?? "")) {
  const dir = process.argv[2];
  if (!dir) {
    console.error("usage: node --import tsx tools/tokenizer-fixture.ts <dir>  (writes the fixture tokenizer's files into <dir>)");
    process.exit(2);
  }
  const { mkdirSync, writeFileSync } = await import("node:fs");
  const { join } = await import("node:path");
  mkdirSync(dir, { recursive: true });
  const files = makeTokenizerFiles();
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
  console.log(`wrote ${Object.keys(files).join(", ")} to ${dir}`);
}
