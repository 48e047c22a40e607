// SFT dataset preparation on the fixture tokenizer (tools/tokenizer-fixture.ts): every format to input_ids and
// labels, against TRL 1.13's SFTTrainer._prepare_dataset as tools/fixtures/sft_data.py recorded it
// (tests/fixtures/data/trl_sft.json), and against ids computed here from tokenizer.encode and the chat template;
// masks, eos, truncation, the dropped count, and the errors. No GPU.
// Runs under Node (node --import tsx --test) and Deno (deno test -A --no-check).
import { after, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AutoTokenizer, type PreTrainedTokenizer } from "../../src/data/tokenizer.ts";
import { maybe_convert_to_chatml, parseRow } from "../../src/data/formats.ts";
import { prepareDataset, truncate_dataset, type PrepareOptions, type PreparedExample } from "../../src/data/prepare.ts";
import type { Row } from "../../src/data/sources.ts";
import { makeTokenizerFiles } from "../../tools/tokenizer-fixture.ts";
import { rejects } from "../helpers.ts";

interface Case {
  name: string;
  rows: Row[];
  options: PrepareOptions & { formatting_func?: string };
  expected: PreparedExample[];
}
const fx = JSON.parse(readFileSync(new URL("../fixtures/data/trl_sft.json", import.meta.url), "utf8")) as { trl_version: string; tools: Row[]; cases: Case[] };

const FORMATTING: Record<string, (row: Row) => string> = {
  qa: (row) => `Question: ${row.question}\nAnswer: ${row.answer}`,
};

const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** The fixture tokenizer; `edit` merges keys into tokenizer.json / tokenizer_config.json. */
async function loadTokenizer(edit: Record<string, Record<string, unknown>> = {}): Promise<PreTrainedTokenizer> {
  const dir = mkdtempSync(join(tmpdir(), "webtune-prep-"));
  dirs.push(dir);
  for (const [name, text] of Object.entries(makeTokenizerFiles())) {
    writeFileSync(join(dir, name), edit[name] ? JSON.stringify({ ...JSON.parse(text), ...edit[name] }) : text);
  }
  return AutoTokenizer.from_pretrained(dir);
}
let shared: PreTrainedTokenizer | null = null;
const tokenizer = async () => (shared ??= await loadTokenizer());

const EOS = "<|im_end|>";
const EOS_ID = 2;

async function prepare(rows: Row[], options: PrepareOptions = {}) {
  const warnings: string[] = [];
  const ds = prepareDataset(rows, await tokenizer(), { warn: (m) => warnings.push(m), ...options });
  const out = await ds.toArray();
  return { out, stats: { ...ds.stats }, warnings, ds };
}


/** The decoded runs of tokens whose label is kept. */
function trainedRuns(tok: PreTrainedTokenizer, ex: PreparedExample): string[] {
  const runs: string[] = [];
  let start = -1;
  for (let i = 0; i <= ex.labels.length; i++) {
    if (i < ex.labels.length && ex.labels[i] !== -100) {
      if (start < 0) start = i;
    } else if (start >= 0) {
      runs.push(tok.decode(ex.input_ids.slice(start, i)));
      start = -1;
    }
  }
  return runs;
}

describe(`the same ids and labels as TRL ${fx.trl_version}'s SFTTrainer._prepare_dataset`, () => {
  for (const c of fx.cases) {
    test(c.name, async () => {
      const { formatting_func, ...options } = c.options;
      const { out } = await prepare(c.rows, { ...options, formatting_func: formatting_func ? FORMATTING[formatting_func] : undefined });
      assert.deepEqual(out, c.expected);
    });
  }
});

describe("formats, with ids computed from encode() and the chat template", () => {
  test("text: the tokenizer's special tokens (none here), eos appended once, never twice", async () => {
    const tok = await tokenizer();
    const { out } = await prepare([{ text: "The dog" }, { text: `The dog${EOS}` }]);
    const ids = [...tok.encode("The dog"), EOS_ID];
    assert.deepEqual(out, [
      { input_ids: ids, labels: ids },
      { input_ids: ids, labels: ids },
    ]);
    assert.equal(out[0].input_ids.filter((t) => t === EOS_ID).length, 1);
  });

  test("dataset_text_field and eos_token override", async () => {
    const tok = await tokenizer();
    const { out } = await prepare([{ body: "Hi there" }], { dataset_text_field: "body", eos_token: "<|endoftext|>" });
    const ids = [...tok.encode("Hi there"), 0];
    assert.deepEqual(out, [{ input_ids: ids, labels: ids }]);
    await rejects(prepare([{ text: "x" }], { eos_token: "<eos-nope>" }), /eos_token "<eos-nope>" is not in the vocabulary/);
  });

  test("prompt-completion strings: completion-only loss by default, eos on the completion", async () => {
    const tok = await tokenizer();
    const { out } = await prepare([{ prompt: "The sky is", completion: " blue." }]);
    const prompt = tok.encode("The sky is");
    const full = tok.encode(`The sky is blue.${EOS}`);
    assert.deepEqual(full.slice(0, prompt.length), prompt);
    assert.deepEqual(out[0].input_ids, full);
    assert.deepEqual(out[0].labels, full.map((id, i) => (i < prompt.length ? -100 : id)));
    assert.deepEqual(trainedRuns(tok, out[0]), [` blue.${EOS}`]);
    const off = await prepare([{ prompt: "The sky is", completion: " blue." }], { completion_only_loss: false });
    assert.deepEqual(off.out[0].labels, full);
  });

  test("messages: the whole chat, or with assistant_only_loss only the assistant's content and its <|im_end|>", async () => {
    const tok = await tokenizer();
    const messages = [
      { role: "system", content: "Be brief." },
      { role: "user", content: "Hi" },
      { role: "assistant", content: "Hello there." },
      { role: "user", content: "Time?" },
      { role: "assistant", content: "Time to rest." },
    ];
    const ids = tok.apply_chat_template(messages);
    const all = await prepare([{ messages }]);
    assert.deepEqual(all.out, [{ input_ids: ids, labels: ids }]);
    assert.equal(tok.decode(ids).endsWith(`Time to rest.${EOS}\n`), true, "no eos appended to conversations");
    const only = await prepare([{ messages }], { assistant_only_loss: true });
    assert.deepEqual(only.out[0].input_ids, ids);
    assert.deepEqual(trainedRuns(tok, only.out[0]), [`Hello there.${EOS}`, `Time to rest.${EOS}`]);
  });

  test("conversational prompt-completion: the prompt with its generation prompt is masked", async () => {
    const tok = await tokenizer();
    const prompt = [{ role: "user", content: "Sky?" }];
    const completion = [{ role: "assistant", content: "Blue." }];
    const { out } = await prepare([{ prompt, completion }]);
    const promptIds = tok.apply_chat_template(prompt, { add_generation_prompt: true });
    const full = tok.apply_chat_template([...prompt, ...completion]);
    assert.deepEqual(out[0].input_ids, full);
    assert.deepEqual(out[0].labels, full.map((id, i) => (i < promptIds.length ? -100 : id)));
    assert.deepEqual(trainedRuns(tok, out[0]), [`Blue.${EOS}\n`]);
  });

  test("conversations: from/value become role/content (human → user, gpt → assistant)", async () => {
    const tok = await tokenizer();
    const conversations = [
      { from: "system", value: "Be brief." },
      { from: "human", value: "Hi" },
      { from: "gpt", value: "Hello!" },
    ];
    assert.deepEqual(maybe_convert_to_chatml({ conversations, id: 7 }), {
      id: 7,
      messages: [
        { role: "system", content: "Be brief." },
        { role: "user", content: "Hi" },
        { role: "assistant", content: "Hello!" },
      ],
    });
    const { out } = await prepare([{ conversations }], { assistant_only_loss: true });
    const messages = maybe_convert_to_chatml({ conversations }).messages as { role: string; content: string }[];
    assert.deepEqual(out[0].input_ids, tok.apply_chat_template(messages));
    assert.deepEqual(trainedRuns(tok, out[0]), [`Hello!${EOS}`]);
  });

  test("tools (a list or its JSON string) and chat_template_kwargs reach the template", async () => {
    const tok = await tokenizer();
    const messages = [
      { role: "user", content: "Weather?" },
      { role: "assistant", content: "Sunny." },
    ];
    const ids = tok.apply_chat_template(messages, { tools: fx.tools });
    assert.ok(tok.decode(ids).includes('"name": "get_weather"'));
    const a = await prepare([{ messages, tools: fx.tools }]);
    const b = await prepare([{ messages, tools: JSON.stringify(fx.tools) }]);
    assert.deepEqual(a.out[0].input_ids, ids);
    assert.deepEqual(b.out[0].input_ids, ids);
    await rejects(prepare([{ messages, tools: "{nope" }]), /row 0: "tools" is a string but not valid JSON/);
    const tmpl = "{% for m in messages %}{{ m.content }}{% endfor %}{% if shout %}!{% endif %}";
    const tk = await loadTokenizer({ "tokenizer_config.json": { chat_template: tmpl } });
    const out = await prepareDataset([{ messages, chat_template_kwargs: { shout: true } }], tk).toArray();
    assert.equal(tk.decode(out[0].input_ids), "Weather?Sunny.!");
  });

  test("pre-tokenized rows: labels as given; assistant_masks always; completion_mask under completion_only_loss", async () => {
    const rows = [
      { input_ids: [10, 11, 12, 13], labels: [-100, 11, 12, -100], assistant_masks: [0, 0, 0, 0] },
      { input_ids: [10, 11, 12, 13], assistant_masks: [0, 1, 1, 0] },
      { input_ids: [10, 11, 12, 13], completion_mask: [0, 0, 1, 1] },
    ];
    const { out } = await prepare(rows);
    assert.deepEqual(out.map((e) => e.labels), [
      [-100, 11, 12, -100],
      [-100, 11, 12, -100],
      [10, 11, 12, 13],
    ]);
    const co = await prepare(rows.slice(2), { completion_only_loss: true });
    assert.deepEqual(co.out[0].labels, [-100, -100, 12, 13]);
    await rejects(prepare([{ input_ids: [1, 2], labels: [1] }]), /row 0: "labels" has 1 entries but input_ids has 2/);
    await rejects(prepare([{ input_ids: [1, 2.5] }]), /row 0: input_ids\[1\] must be an integer, got 2\.5/);
  });

  test("formatting_func makes text rows; with completion_only_loss it is an error", async () => {
    const tok = await tokenizer();
    const { out } = await prepare([{ question: "Q", answer: "A" }], { formatting_func: FORMATTING.qa });
    const ids = tok.encode(`Question: Q\nAnswer: A${EOS}`);
    assert.deepEqual(out, [{ input_ids: ids, labels: ids }]);
    assert.throws(() => prepareDataset([{ question: "Q", answer: "A" }], tok, { formatting_func: FORMATTING.qa, completion_only_loss: true }), /formatting function .* completion_only_loss/);
    // null resolves from the first row, as TRL: a prompt-completion first row makes it true, hence the same error.
    await rejects(prepare([{ prompt: "a", completion: "b" }], { formatting_func: () => "x" }), /formatting function was provided while completion_only_loss is true/);
    await rejects(prepare([{ question: "Q" }], { formatting_func: () => ["a", "b"] as unknown as string }), /must return a string .* row 0 it returned an array/);
  });

  test("completion_only_loss null follows the FIRST row only", async () => {
    const rows = [{ text: "Hi" }, { prompt: "The sky is", completion: " blue." }];
    const { out } = await prepare(rows);
    assert.ok(out[1].labels.every((l) => l !== -100), "a text first row: no completion-only loss for any row");
  });

  test("a text that already starts with the BOS the tokenizer adds gets one BOS, not two", async () => {
    const postProcessor = {
      type: "TemplateProcessing",
      single: [{ SpecialToken: { id: "<|endoftext|>", type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }],
      pair: [{ SpecialToken: { id: "<|endoftext|>", type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }, { Sequence: { id: "B", type_id: 1 } }],
      special_tokens: { "<|endoftext|>": { id: "<|endoftext|>", ids: [0], tokens: ["<|endoftext|>"] } },
    };
    const tk = await loadTokenizer({ "tokenizer.json": { post_processor: postProcessor }, "tokenizer_config.json": { bos_token: "<|endoftext|>" } });
    assert.deepEqual(tk.encode("Hi").slice(0, 1), [0]);
    const out = await prepareDataset([{ text: "Hi" }, { text: "<|endoftext|>Hi" }], tk).toArray();
    const ids = [0, ...tk.encode("Hi", { add_special_tokens: false }), EOS_ID];
    assert.deepEqual(out.map((e) => e.input_ids), [ids, ids]);
  });
});

describe("truncation and dropping", () => {
  test("keep_start / keep_end, and the examples left with no trainable token dropped and counted", async () => {
    const tok = await tokenizer();
    const long = "The quick brown fox jumps over the lazy dog.";
    const ids = [...tok.encode(long), EOS_ID];
    const start = await prepare([{ text: long }], { max_length: 5 });
    assert.deepEqual(start.out, [{ input_ids: ids.slice(0, 5), labels: ids.slice(0, 5) }]);
    assert.deepEqual(start.stats, { rows: 1, examples: 1, dropped: 0, truncated: 1, done: true });
    const end = await prepare([{ text: long }], { max_length: 5, truncation_mode: "keep_end" });
    assert.deepEqual(end.out[0].input_ids, ids.slice(-5));
    const rows = [
      { prompt: "The quick brown fox jumps over the lazy dog and", completion: " sleeps." },
      { prompt: "Hi", completion: " there." },
      { prompt: "In the morning the children walk to the station", completion: " today." },
    ];
    const r = await prepare(rows, { max_length: 6 });
    assert.equal(r.out.length, 1);
    assert.deepEqual(r.stats, { rows: 3, examples: 1, dropped: 2, truncated: 2, done: true });
    // Packing does its own cutting: nothing is truncated or dropped here.
    const p = await prepare(rows, { max_length: 6, packing: true });
    assert.equal(p.out.length, 3);
    assert.ok(p.out[0].input_ids.length > 6);
    // max_length null: no truncation.
    assert.deepEqual((await prepare([{ text: long }], { max_length: null })).out[0].input_ids, ids);
    await rejects(prepare([{ text: long }], { truncation_mode: "middle" as never }), /Unsupported truncation_mode "middle"/);
  });

  test("truncate_dataset over arrays and async iterables", async () => {
    const rows = [
      { input_ids: [1, 2, 3, 4], labels: [1, 2, 3, 4] },
      { input_ids: [5], labels: [-100] },
    ];
    assert.deepEqual(truncate_dataset(rows, 2), [
      { input_ids: [1, 2], labels: [1, 2] },
      { input_ids: [5], labels: [-100] },
    ]);
    assert.deepEqual(truncate_dataset(rows, 2, "keep_end")[0], { input_ids: [3, 4], labels: [3, 4] });
    const got: PreparedExample[] = [];
    for await (const r of truncate_dataset(new Set(rows), 3)) got.push(r);
    assert.deepEqual(got[0], { input_ids: [1, 2, 3], labels: [1, 2, 3] });
    assert.throws(() => truncate_dataset(rows, 0), /max_length must be a positive integer/);
  });

  test("skip(n) skips prepared examples; stats reset every pass", async () => {
    const tok = await tokenizer();
    const ds = prepareDataset([{ text: "a" }, { text: "b" }, { text: "c" }], tok);
    const all = await ds.toArray();
    assert.deepEqual(await ds.skip(2).toArray(), all.slice(2));
    await ds.toArray();
    assert.equal(ds.stats.examples, 3);
  });
});

describe("errors", () => {
  test("a row that fits no format names its fields and lists the formats", async () => {
    const err = await rejects(prepare([{ text: "ok" }, { question: "Q", answer: "A" }]), /row 1 has the fields \{question, answer\}, which fit no dataset format/);
    for (const f of ["{text: string}", "{messages: [{role, content}, …]}", "{prompt: string, completion: string}", "{prompt: [messages], completion: [messages]}", "{conversations: [{from, value}, …]}", "{input_ids: number[], labels? | assistant_masks? | completion_mask?}"]) {
      assert.ok(err.message.includes(f), `lists ${f}`);
    }
    await rejects(prepare([{ prompt: "only a prompt" }]), /row 0 has "prompt" but no "completion"/);
    await rejects(prepare([{ prompt: "a", completion: [{ role: "assistant", content: "b" }] }]), /"prompt" is a string and "completion" is an array/);
    await rejects(prepare([{ messages: [{ content: "no role" }] }]), /messages\[0\] has no string "role"/);
    assert.throws(() => parseRow({ body: "x", text: "y" }, "row 0", "content"), /it has "text", but dataset_text_field is "content"/);
  });

  test("the row's file and line are in the message", async () => {
    const dir = mkdtempSync(join(tmpdir(), "webtune-prep-"));
    dirs.push(dir);
    const path = join(dir, "rows.jsonl");
    writeFileSync(path, '{"text": "a"}\n\n{"txt": "b"}\n');
    await rejects(prepareDataset(path, await tokenizer()).toArray(), new RegExp(`row 1 \\(${path.replace(/[.]/g, "\\.")}:3\\) has the fields \\{txt\\}`));
  });

  test("assistant_only_loss: a non-conversational row, or an example with no assistant token, is an error naming it", async () => {
    await rejects(prepare([{ text: "plain" }], { assistant_only_loss: true }), /assistant_only_loss is true but row 0 is not conversational/);
    await rejects(
      prepare([{ messages: [{ role: "user", content: "Hi" }, { role: "assistant", content: "Yo" }] }, { messages: [{ role: "user", content: "no answer" }] }], { assistant_only_loss: true }),
      /row 1 has no assistant token/,
    );
    const noGen = await loadTokenizer({ "tokenizer_config.json": { chat_template: "{% for m in messages %}{{ m.content }}{% endfor %}" } });
    // TRL raises in SFTTrainer.__init__, before any row: a template it has no training version of.
    assert.throws(
      () => prepareDataset([{ messages: [{ role: "user", content: "Hi" }, { role: "assistant", content: "Yo" }] }], noGen, { assistant_only_loss: true }),
      /not training-compatible: it has no \{% generation %\} markers.*chat_template_path.*assistant_only_loss: false/s,
    );
  });
});
