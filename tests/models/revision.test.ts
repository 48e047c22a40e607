// TRL's model_revision reaches the Hub (issue 14, "config keys accepted but never read"): `webtune sft
// --model_revision v1.5` asks for /<id>/resolve/v1.5/… for the model and its tokenizer, as transformers'
// from_pretrained(revision=…) does. A local HTTP server answers as the Hub does for a missing revision.
// Runs under Node (node --import tsx --test) and Deno (deno test -A --no-check).
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { sftMain, type CliHost } from "../../src/trainer/cli.ts";
import { AutoTokenizer } from "../../src/data/tokenizer.ts";
import { rejects } from "../helpers.ts";

const seen: string[] = [];
let server: Server;
let saved: string | undefined;
const dir = mkdtempSync(join(tmpdir(), "webtune-revision-"));

before(async () => {
  server = createServer((req, res) => {
    seen.push(`${req.method} ${req.url}`);
    res.writeHead(404, { "x-error-code": "RevisionNotFound" }).end("Revision Not Found");
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  saved = process.env.HF_ENDPOINT;
  process.env.HF_ENDPOINT = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
after(() => {
  if (saved === undefined) delete process.env.HF_ENDPOINT;
  else process.env.HF_ENDPOINT = saved;
  server.close();
  rmSync(dir, { recursive: true, force: true });
});

test("--model_revision reaches the model's from_pretrained", async () => {
  const data = join(dir, "d.jsonl");
  writeFileSync(data, '{"text":"hello"}\n');
  let text = "";
  const host: CliHost = { write: (s) => (text += s), log: (s) => (text += `${s}\n`), error: (s) => (text += `${s}\n`), isTTY: false, program: "train.ts" };
  seen.length = 0;
  const code = await sftMain(["--model_name_or_path", "acme/tiny", "--model_revision", "v1.5", "--dataset_name", data, "--max_steps", "1"], host);
  assert.notEqual(code, 0);
  assert.ok(seen.length > 0 && seen.every((r) => r.includes("/acme/tiny/resolve/v1.5/")), seen.join("\n"));
  assert.match(text, /there is no revision "v1\.5" in acme\/tiny/);
});

test("the tokenizer is asked for at the same revision", async () => {
  seen.length = 0;
  await rejects(AutoTokenizer.from_pretrained("acme/tiny", { revision: "v1.5" }), /revision "v1\.5"/);
  assert.ok(seen.length > 0 && seen.every((r) => r.includes("/resolve/v1.5/")), seen.join("\n"));
});
