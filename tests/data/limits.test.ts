// Bounded parsing of dataset files (issue 14's fault battery): long lines are split in linear time, a line past
// max_line_bytes is an error naming file:line (read no further, also through gzip), and bytes that are not UTF-8
// are an error naming the right line, in JSON Lines, JSON, CSV and text files alike; chat templates (untrusted
// code) render within bounded steps and output, the error naming the template's file. No GPU.
// Runs under Node (node --import tsx --test) and Deno (deno test -A --no-check).
import { after, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { DEFAULT_MAX_LINE_BYTES, loadDataset } from "../../src/data/sources.ts";
import { AutoTokenizer, CHAT_TEMPLATE_LIMITS, PreTrainedTokenizer } from "../../src/data/tokenizer.ts";
import { TRAINING_CHAT_TEMPLATES } from "../../src/data/chat_templates.ts";
import { makeTokenizerFiles } from "../../tools/tokenizer-fixture.ts";
import { rejects } from "../helpers.ts";

const dir = mkdtempSync(join(tmpdir(), "webtune-limits-"));
after(() => rmSync(dir, { recursive: true, force: true }));

function write(name: string, content: string | Uint8Array): string {
  const p = join(dir, name);
  writeFileSync(p, content);
  return p;
}

/** A JSON Lines file: a short row, one row whose text is `n` characters, a short row. */
function longLineFile(name: string, n: number): string {
  return write(name, `{"id":0}\n{"id":1,"text":"${"x".repeat(n)}"}\n{"id":2}\n`);
}

/** The fastest of `times` runs of `f`, in ms. */
async function fastest(times: number, f: () => Promise<unknown>): Promise<number> {
  let best = Infinity;
  for (let i = 0; i < times; i++) {
    const t0 = performance.now();
    await f();
    best = Math.min(best, performance.now() - t0);
  }
  return best;
}

describe("long lines", () => {
  test("a 40 MB line takes about 10x a 4 MB one (linear), not 100x", async () => {
    const small = longLineFile("small.jsonl", 4_000_000);
    const big = longLineFile("big.jsonl", 40_000_000);
    const opts = { chunk_size: 1 << 18 };
    const rows = await loadDataset(big, opts).toArray();
    assert.deepEqual(rows.map((r) => r.id), [0, 1, 2]);
    assert.equal((rows[1]!.text as string).length, 40_000_000);
    const tSmall = await fastest(3, () => loadDataset(small, opts).toArray());
    const tBig = await fastest(2, () => loadDataset(big, opts).toArray());
    // Linear: ~10x. The old splitter rescanned the whole carried line at every chunk: ~100x (and minutes for 100 MB).
    assert.ok(tBig < 35 * Math.max(tSmall, 1), `40 MB took ${tBig.toFixed(0)} ms, 4 MB ${tSmall.toFixed(0)} ms: not linear`);
  });

  test("a text file's and a CSV file's long line: linear too", async () => {
    const files = (n: number) => ({
      txt: write(`long-${n}.txt`, `a\n${"y".repeat(n)}\nb\n`),
      csv: write(`long-${n}.csv`, `id,text\n0,"${"z".repeat(n / 2)}\n${"z".repeat(n / 2)}"\n1,${"w".repeat(n)}\n`),
    });
    const small = files(800_000);
    const big = files(8_000_000);
    const opts = { chunk_size: 1 << 12 };
    assert.deepEqual((await loadDataset(big.txt, opts).toArray()).map((r) => (r.text as string).length), [1, 8_000_000, 1]);
    assert.deepEqual((await loadDataset(big.csv, opts).toArray()).map((r) => (r.text as string).length), [8_000_001, 8_000_000]);
    for (const kind of ["txt", "csv"] as const) {
      const tSmall = await fastest(3, () => loadDataset(small[kind], opts).toArray());
      const tBig = await fastest(2, () => loadDataset(big[kind], opts).toArray());
      assert.ok(tBig < 35 * Math.max(tSmall, 1), `${kind}: 8 MB took ${tBig.toFixed(0)} ms, 0.8 MB ${tSmall.toFixed(0)} ms: not linear`);
    }
  });

  test("a line past max_line_bytes is an error naming file:line", async () => {
    const p = longLineFile("limit.jsonl", 5000);
    await rejects(loadDataset(p, { max_line_bytes: 1000, chunk_size: 256 }).toArray(), /limit\.jsonl:2: the line is longer than 1000 bytes \(max_line_bytes\)/);
    await rejects(loadDataset(p, { max_line_bytes: 1000 }).toArray(), /limit\.jsonl:2: the line is longer than 1000 bytes/); // within one chunk
    assert.equal((await loadDataset(p, { max_line_bytes: 6000, chunk_size: 256 }).toArray()).length, 3);
    const txt = write("limit.txt", `ok\nok\n${"t".repeat(3000)}\n`);
    await rejects(loadDataset(txt, { max_line_bytes: 1000, chunk_size: 128 }).toArray(), /limit\.txt:3: the line is longer than 1000 bytes/);
    const csv = write("limit.csv", `a,b\n1,2\n3,"${"q".repeat(3000)}"\n`);
    await rejects(loadDataset(csv, { max_line_bytes: 1000, chunk_size: 128 }).toArray(), /limit\.csv:3: the record is longer than 1000 bytes/);
    await rejects(async () => loadDataset(p, { max_line_bytes: 0 }), /max_line_bytes must be a positive integer/);
    assert.equal(DEFAULT_MAX_LINE_BYTES, 128 * 1024 * 1024);
  });

  test("through gzip: a small .jsonl.gz holding a huge line stops at the limit, decompressing little of it", async () => {
    const line = new Uint8Array(64_000_000).fill(0x78); // 64 MB of "x": about 60 KB gzipped
    const p = write("huge.jsonl.gz", gzipSync(Buffer.concat([Buffer.from('{"id":0}\n{"text":"'), line, Buffer.from('"}\n')])));
    const tReject = await fastest(2, () => rejects(loadDataset(p, { max_line_bytes: 1 << 20 }).toArray(), /huge\.jsonl\.gz:2: the line is longer than 1048576 bytes/));
    const tWhole = await fastest(1, async () => assert.equal((await loadDataset(p).toArray()).length, 2));
    // Stopping at 1 MiB of a 64 MB line costs a small fraction of reading it all (the old reader ran for minutes).
    assert.ok(tReject < tWhole / 4, `rejecting took ${tReject.toFixed(0)} ms, reading the whole line ${tWhole.toFixed(0)} ms`);
  });
});

describe("not UTF-8", () => {
  const bad = (s: string) => {
    const b = Buffer.from(s.replace("@", "\u0000"));
    b[b.indexOf(0)] = 0xff;
    return b;
  };

  test("JSON Lines: the line that holds the bad byte, and its offset", async () => {
    const p = write("bad.jsonl", bad('{"a":1}\n{"a":"@"}\n{"a":3}\n'));
    await rejects(loadDataset(p).toArray(), /bad\.jsonl:2: not UTF-8 text \(an invalid byte sequence at byte offset 14 of the file\)/);
    await rejects(loadDataset(p, { chunk_size: 3 }).toArray(), /bad\.jsonl:2: not UTF-8 text \(an invalid byte sequence at byte offset 14/);
    const gz = write("bad.jsonl.gz", gzipSync(bad('{"a":1}\n{"a":2}\n\n{"a":"@"}\n')));
    await rejects(loadDataset(gz, { chunk_size: 5 }).toArray(), /bad\.jsonl\.gz:4: not UTF-8/);
  });

  test("a .json array file is strict too (no U+FFFD), naming the line and offset; CSV and text name the line", async () => {
    const p = write("bad.json", bad('[\n{"a":1},\n{"a":"@"}\n]\n'));
    await rejects(loadDataset(p).toArray(), /bad\.json:3: not UTF-8 text \(an invalid byte sequence at byte offset 17 of the file\)/);
    await rejects(loadDataset(p, { chunk_size: 4 }).toArray(), /bad\.json:3: not UTF-8 text \(an invalid byte sequence at byte offset 17/);
    // The offset is exact wherever the chunks end (after multi-byte characters too).
    const accents = write("accents.json", bad('[{"a":"éé🦊"},\n{"a":"ü@"}]'));
    for (const chunk_size of [1, 2, 3, 5, 16, 19, 1 << 20]) {
      await rejects(loadDataset(accents, { chunk_size }).toArray(), /accents\.json:2: not UTF-8 text \(an invalid byte sequence at byte offset 27 of the file\)/);
    }
    // A character split across chunks is still fine.
    const ok = write("ok.json", '[{"a":"café 🦊"}]');
    assert.deepEqual(await loadDataset(ok, { chunk_size: 1 }).toArray(), [{ a: "café 🦊" }]);
    const csv = write("bad.csv", bad('a,b\n1,2\n3,"x\ny@"\n'));
    await rejects(loadDataset(csv, { chunk_size: 2 }).toArray(), /bad\.csv:4: not UTF-8 text \(an invalid byte sequence at byte offset 14 of the file\)/);
    const txt = write("bad.txt", bad("one\ntwo\nthree@\n"));
    await rejects(loadDataset(txt).toArray(), /bad\.txt:3: not UTF-8 text \(an invalid byte sequence at byte offset 13 of the file\)/);
    const cut = write("cut.json", Buffer.from('[{"a":"🦊"}]').subarray(0, 9));
    await rejects(loadDataset(cut).toArray(), /cut\.json:1: not UTF-8 text/);
  });
});

describe("chat templates from untrusted files", () => {
  /** A tokenizer directory whose chat_template.jinja (or tokenizer_config.json's chat_template) is `template`. */
  async function tokenizerWith(template: string, inConfig = false): Promise<PreTrainedTokenizer> {
    const d = mkdtempSync(join(dir, "tok-"));
    for (const [name, text] of Object.entries(makeTokenizerFiles())) {
      const edited = inConfig && name === "tokenizer_config.json" ? JSON.stringify({ ...JSON.parse(text), chat_template: template }) : text;
      writeFileSync(join(d, name), edited);
    }
    if (!inConfig) writeFileSync(join(d, "chat_template.jinja"), template);
    return AutoTokenizer.from_pretrained(d);
  }
  const chat = [{ role: "user", content: "hi" }];
  /** apply_chat_template throws, within `ms`, with a message matching every pattern. */
  const stops = (tok: PreTrainedTokenizer, ms: number, ...patterns: RegExp[]) => {
    const t0 = performance.now();
    assert.throws(() => tok.apply_chat_template(chat, { tokenize: false }), (e: Error) => {
      for (const re of patterns) assert.match(e.message, re);
      return true;
    });
    const took = performance.now() - t0;
    assert.ok(took < ms, `stopping took ${took.toFixed(0)} ms`);
  };

  test("a 3000 x 3000 nested loop stops after max_steps, naming chat_template.jinja", async () => {
    const tok = await tokenizerWith("{% for i in range(3000) %}{% for j in range(3000) %}{% endfor %}{% endfor %}ok");
    // 500,000 steps take about 2 s alone; max_ms (5 s) stops it first on a loaded machine.
    stops(tok, 15_000, /chat_template\.jinja in .*stopped: it ran (past 500000 steps \(CHAT_TEMPLATE_LIMITS\.max_steps\)|for more than 5000 ms)/);
    const saved = CHAT_TEMPLATE_LIMITS.max_ms;
    try {
      CHAT_TEMPLATE_LIMITS.max_ms = 50;
      stops(tok, 2000, /ran for more than 50 ms \(CHAT_TEMPLATE_LIMITS\.max_ms\)/);
    } finally {
      CHAT_TEMPLATE_LIMITS.max_ms = saved;
    }
  });

  test("range(1e7) is refused before it is made, naming tokenizer_config.json", async () => {
    const tok = await tokenizerWith("{% for i in range(10000000) %}x{% endfor %}", true);
    stops(tok, 1000, /tokenizer_config\.json in .*stopped: range\(\) of 10000000 items, past 100000/);
  });

  test("output that doubles past max_output_chars stops", async () => {
    const tok = await tokenizerWith("{% set ns = namespace(s='xxxxxxxxxxxxxxxx') %}{% for i in range(40) %}{% set ns.s = ns.s + ns.s %}{% endfor %}{{ ns.s }}");
    stops(tok, 5000, /chat_template\.jinja in .*it built a string of \d+ characters, past 33554432/);
  });

  test("the limits are adjustable, and real templates on a long chat stay far below them", async () => {
    const tok = await tokenizerWith("{% for i in range(300) %}{% for j in range(300) %}{% endfor %}{% endfor %}ok");
    assert.equal(tok.apply_chat_template(chat, { tokenize: false }), "ok");
    const saved = CHAT_TEMPLATE_LIMITS.max_steps;
    try {
      CHAT_TEMPLATE_LIMITS.max_steps = 10_000;
      stops(tok, 1000, /ran past 10000 steps/);
      // 400 messages through every bundled training template: a tenth of the default step budget is plenty.
      CHAT_TEMPLATE_LIMITS.max_steps = saved / 10;
      const savedMs = CHAT_TEMPLATE_LIMITS.max_ms;
      CHAT_TEMPLATE_LIMITS.max_ms = 60_000;
      const long = Array.from({ length: 200 }, (_, i) => [{ role: "user", content: `q${i}` }, { role: "assistant", content: `a${i}` }]).flat();
      const plain = new PreTrainedTokenizer(JSON.parse(makeTokenizerFiles()["tokenizer.json"]!), JSON.parse(makeTokenizerFiles()["tokenizer_config.json"]!));
      for (const t of TRAINING_CHAT_TEMPLATES.filter((x) => x.name !== "llama3")) {
        const text = plain.apply_chat_template(long, { tokenize: false, chat_template: t.training });
        assert.ok(text.includes("a199"), t.name);
      }
      CHAT_TEMPLATE_LIMITS.max_ms = savedMs;
    } finally {
      CHAT_TEMPLATE_LIMITS.max_steps = saved;
    }
  });
});
