// Writes src/data/tiny_tokenizer.ts: the embedded tiny model's tokenizer files (tools/bpe.ts's
// makeTokenizerFiles) as a committed module, so the product carries the trainer's output, not the trainer.
// tests/models/tiny.test.ts checks that the committed file is what this writes.
// CLI: `node --import tsx tools/tiny-tokenizer.ts` (rewrites src/data/tiny_tokenizer.ts).
import { writeFileSync } from "node:fs";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { makeTokenizerFiles } from "./bpe.ts";

/** The committed module's path. */
export const TINY_TOKENIZER_MODULE = fileURLToPath(new URL("../src/data/tiny_tokenizer.ts", import.meta.url));

/** The text of src/data/tiny_tokenizer.ts. */
export function tinyTokenizerModule(): string {
  const entries = Object.entries(makeTokenizerFiles()).map(([name, text]) => `  ${JSON.stringify(name)}: ${JSON.stringify(text)},`);
  return [
    "// The embedded tiny model's tokenizer files (a 319-token byte-level BPE with a ChatML template), as",
    "// tools/bpe.ts trains them. Written by tools/tiny-tokenizer.ts: do not edit.",
    "",
    "/** tokenizer.json, tokenizer_config.json and special_tokens_map.json, as text. */",
    "export const TINY_TOKENIZER_FILES: Readonly<Record<string, string>> = {",
    ...entries,
    "};",
    "",
  ].join("\n");
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  writeFileSync(TINY_TOKENIZER_MODULE, tinyTokenizerModule());
  console.log(`wrote ${TINY_TOKENIZER_MODULE}`);
}
