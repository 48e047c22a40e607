// The tokenizer against transformers' AutoTokenizer on the fixture tokenizer of tools/tokenizer-fixture.ts:
// ids, decoding, special tokens, the ChatML template, tokenized chats and their assistant masks, all as
// tools/fixtures/tokenizer.py recorded them (tests/fixtures/tokenizer.json); and the loader's errors.
// No GPU. Runs under Node (node --import tsx --test) and Deno (deno test -A --no-check).
import { after, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AutoTokenizer, PreTrainedTokenizer, type ChatMessage, type ChatTool } from "../../src/data/tokenizer.ts";
import { CHAT_TEMPLATE, makeTokenizerFiles, SPECIAL_TOKENS } from "../../tools/tokenizer-fixture.ts";
import { rejects } from "../helpers.ts";

interface TextCase {
  text: string;
  ids: number[];
  ids_no_special: number[];
  tokens?: string[];
  decoded: string;
  decoded_skip_special: string;
}
interface ChatCase {
  messages: ChatMessage[];
  add_generation_prompt: boolean;
  tools: ChatTool[] | null;
  rendered: string;
  ids: number[];
  attention_mask: number[];
  assistant_masks: number[];
}
interface Variant {
  tokenizer_config: Record<string, unknown>;
  tokenizer: Record<string, unknown>;
  bos_token_id: number | null;
  pad_token_id: number | null;
  vocab_size: number;
  length: number;
  all_special_ids: number[];
  texts: TextCase[];
  chat_ids: number[];
  chat_assistant_masks: number[];
}
interface Fixture {
  files_sha256: Record<string, string>;
  info: Record<string, unknown>;
  texts: Record<string, TextCase>;
  chats: Record<string, ChatCase>;
  continue_final_message: { messages: ChatMessage[]; rendered: string; ids: number[] };
  variants: Record<string, Variant>;
}

const fx = JSON.parse(readFileSync(new URL("../fixtures/tokenizer.json", import.meta.url), "utf8")) as Fixture;

const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** A temp dir with the fixture's files; `edits` merge top-level keys into a JSON file, `extra` adds files. */
function writeDir(edits: Record<string, Record<string, unknown>> = {}, extra: Record<string, string> = {}, omit: string[] = []): string {
  const dir = mkdtempSync(join(tmpdir(), "webtune-tok-"));
  dirs.push(dir);
  const files = makeTokenizerFiles();
  for (const [name, text] of Object.entries(files)) {
    if (omit.includes(name)) continue;
    const e = edits[name];
    writeFileSync(join(dir, name), e ? JSON.stringify({ ...JSON.parse(text), ...e }) : text);
  }
  for (const [name, text] of Object.entries(extra)) writeFileSync(join(dir, name), text);
  return dir;
}

let shared: PreTrainedTokenizer | null = null;
async function tokenizer(): Promise<PreTrainedTokenizer> {
  return (shared ??= await AutoTokenizer.from_pretrained(writeDir()));
}

async function sha256(text: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

/** The runs of consecutive 1s of a mask, decoded. */
function maskedRuns(tok: PreTrainedTokenizer, ids: number[], mask: number[]): string[] {
  const runs: string[] = [];
  let start = -1;
  for (let i = 0; i <= mask.length; i++) {
    if (i < mask.length && mask[i] === 1) {
      if (start < 0) start = i;
    } else if (start >= 0) {
      runs.push(tok.decode(ids.slice(start, i)));
      start = -1;
    }
  }
  return runs;
}


describe("fixture tokenizer files", () => {
  test("makeTokenizerFiles is deterministic and what tools/fixtures/tokenizer.py recorded", async () => {
    const a = makeTokenizerFiles();
    assert.deepEqual(a, makeTokenizerFiles());
    for (const [name, hash] of Object.entries(fx.files_sha256)) {
      assert.equal(await sha256(a[name]), hash, `${name} differs from the one the reference was made from: rerun tools/fixtures/tokenizer.py`);
    }
    const json = JSON.parse(a["tokenizer.json"]);
    const vocab = json.model.vocab as Record<string, number>;
    assert.ok(Object.keys(vocab).length < 400 && Object.keys(vocab).length > 256 + 3 + 24);
    assert.deepEqual(SPECIAL_TOKENS.map((t) => vocab[t]), [0, 1, 2]);
    assert.equal(vocab["Ġ"], 3 + 0x20);
    const config = JSON.parse(a["tokenizer_config.json"]);
    assert.equal(config.bos_token, null);
    assert.equal(config.eos_token, "<|im_end|>");
    assert.equal(config.pad_token, "<|endoftext|>");
    assert.equal(config.chat_template, CHAT_TEMPLATE);
  });
});

describe("encode / decode", () => {
  test("sizes, special tokens and their ids are transformers'", async () => {
    const tok = await tokenizer();
    const info = fx.info;
    assert.equal(tok.vocab_size, info.vocab_size);
    assert.equal(tok.length, info.length);
    assert.equal(tok.model_max_length, info.model_max_length);
    assert.deepEqual(tok.all_special_ids, info.all_special_ids);
    for (const n of ["bos", "eos", "pad", "unk"] as const) {
      assert.equal(tok[`${n}_token`], info[`${n}_token`], `${n}_token`);
      assert.equal(tok[`${n}_token_id`], info[`${n}_token_id`], `${n}_token_id`);
    }
    assert.deepEqual(tok.special_tokens_map, info.special_tokens_map);
  });

  for (const [name, c] of Object.entries(fx.texts)) {
    test(`"${name}": ids, tokens and decoding equal transformers'`, async () => {
      const tok = await tokenizer();
      const ids = tok.encode(c.text);
      assert.deepEqual(ids, c.ids);
      assert.deepEqual(tok.encode(c.text, { add_special_tokens: false }), c.ids_no_special);
      assert.deepEqual(tok.convert_ids_to_tokens(ids), c.tokens);
      assert.equal(tok.decode(ids), c.decoded);
      assert.equal(tok.decode(ids, { skip_special_tokens: true }), c.decoded_skip_special);
    });
  }

  test("special tokens encode to their ids, whole, wherever they are", async () => {
    const tok = await tokenizer();
    SPECIAL_TOKENS.forEach((t, id) => {
      assert.deepEqual(tok.encode(t), [id]);
      assert.equal(tok.convert_tokens_to_ids(t), id);
      assert.equal(tok.convert_ids_to_tokens(id), t);
    });
    const ids = tok.encode("x<|im_start|>y<|im_end|>");
    assert.deepEqual([ids[1], ids[3]], [1, 2]);
    assert.equal(ids.length, 4);
    assert.deepEqual(tok.convert_tokens_to_ids(["<|im_end|>", "no such token"]), [2, null]);
  });

  test("decode of nothing, batch_decode, and an id out of range", async () => {
    const tok = await tokenizer();
    assert.equal(tok.decode([]), "");
    const texts = [fx.texts.emoji.text, fx.texts.newlines.text];
    assert.deepEqual(tok.batch_decode(texts.map((t) => tok.encode(t))), texts);
    assert.throws(() => tok.decode([5, tok.length]), new RegExp(`${tok.length} is not a token id`));
  });
});

describe("chat template", () => {
  for (const [name, c] of Object.entries(fx.chats)) {
    test(`"${name}": rendered text, ids and assistant mask equal transformers'`, async () => {
      const tok = await tokenizer();
      const options = { tools: c.tools, add_generation_prompt: c.add_generation_prompt };
      assert.equal(tok.apply_chat_template(c.messages, { ...options, tokenize: false }), c.rendered);
      assert.deepEqual(tok.apply_chat_template(c.messages, options), c.ids);
      const enc = tok.apply_chat_template(c.messages, { ...options, return_dict: true, return_assistant_tokens_mask: true });
      assert.deepEqual(enc.input_ids, c.ids);
      assert.deepEqual(enc.attention_mask, c.attention_mask);
      assert.deepEqual(enc.assistant_masks, c.assistant_masks);
      assert.equal(tok.apply_chat_template(c.messages, { ...options, return_dict: true }).assistant_masks, undefined);
    });
  }

  test("the mask covers each assistant message's content and its <|im_end|>, nothing else", async () => {
    const tok = await tokenizer();
    for (const c of Object.values(fx.chats)) {
      const enc = tok.apply_chat_template(c.messages, { tools: c.tools, add_generation_prompt: c.add_generation_prompt, return_dict: true, return_assistant_tokens_mask: true });
      const expected = c.messages.filter((m) => m.role === "assistant").map((m) => `${m.content}<|im_end|>`);
      assert.deepEqual(maskedRuns(tok, enc.input_ids, enc.assistant_masks!), expected);
    }
  });

  test("the ChatML layout: system, turns, generation prompt, tools in the system block", async () => {
    const tok = await tokenizer();
    const { rendered } = fx.chats.two_turns;
    assert.ok(rendered.startsWith("<|im_start|>system\nYou are a concise assistant.<|im_end|>\n<|im_start|>user\n"));
    assert.ok(rendered.endsWith("<|im_start|>assistant\nRome — città eterna.<|im_end|>\n"));
    assert.ok(fx.chats.generation_prompt.rendered.endsWith("<|im_end|>\n<|im_start|>assistant\n"));
    const tools = fx.chats.tools;
    const system = tools.rendered.slice(0, tools.rendered.indexOf("<|im_end|>"));
    assert.ok(system.includes('"name": "get_weather"') && system.includes("°C"));
    const noTools = tok.apply_chat_template(tools.messages, { tokenize: false });
    assert.ok(!noTools.includes("<tools>"));
  });

  test("continue_final_message ends inside the last message, as transformers", async () => {
    const tok = await tokenizer();
    const c = fx.continue_final_message;
    assert.equal(tok.apply_chat_template(c.messages, { continue_final_message: true, tokenize: false }), c.rendered);
    assert.deepEqual(tok.apply_chat_template(c.messages, { continue_final_message: true }), c.ids);
    assert.throws(() => tok.apply_chat_template(c.messages, { continue_final_message: true, add_generation_prompt: true }), /not compatible/);
  });

  test("a template without {% generation %} blocks: the same text, and an error when the mask is asked for", async () => {
    const tok = await tokenizer();
    const plain = CHAT_TEMPLATE.replace(/\{%-? *(end)?generation *-?%\}\n?/g, "");
    assert.ok(!plain.includes("generation %}"));
    const c = fx.chats.two_turns;
    assert.equal(tok.apply_chat_template(c.messages, { chat_template: plain, tokenize: false }), c.rendered);
    assert.throws(
      () => tok.apply_chat_template(c.messages, { chat_template: plain, return_dict: true, return_assistant_tokens_mask: true }),
      /needs a chat template that marks assistant text with \{% generation %\}/,
    );
    assert.throws(() => tok.apply_chat_template(c.messages, { return_assistant_tokens_mask: true }), /return_dict: true/);
  });

  test("generation blocks keep their whitespace control; markers never leak into the text", async () => {
    const tok = await tokenizer();
    const template = "{% for m in messages %}[{{ m.role }}]\n  {%- generation -%}\n  {{ m.content }}  \n{%- endgeneration %}\n|{% endfor %}";
    const messages = [{ role: "assistant", content: "a\uE000b" }];
    const enc = tok.apply_chat_template(messages, { chat_template: template, return_dict: true, return_assistant_tokens_mask: true });
    const text = tok.decode(enc.input_ids);
    assert.equal(text, "[assistant]a\uE000b|");
    assert.deepEqual(maskedRuns(tok, enc.input_ids, enc.assistant_masks!), ["a\uE000b"]);
  });

  test("chat_template.jinja wins over the config; named templates pick default / tool_use", async () => {
    const jinja = "{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}";
    const tok = await AutoTokenizer.from_pretrained(writeDir({}, { "chat_template.jinja": jinja }));
    assert.equal(tok.apply_chat_template([{ role: "user", content: "hi" }], { tokenize: false }), "<user>hi");

    const named = [
      { name: "default", template: "D{{ messages[0].content }}" },
      { name: "tool_use", template: "T{{ tools[0].name }}" },
    ];
    const tok2 = await AutoTokenizer.from_pretrained(writeDir({ "tokenizer_config.json": { chat_template: named } }));
    const msgs = [{ role: "user", content: "x" }];
    assert.equal(tok2.apply_chat_template(msgs, { tokenize: false }), "Dx");
    assert.equal(tok2.apply_chat_template(msgs, { tokenize: false, tools: [{ name: "f" }] }), "Tf");
    assert.equal(tok2.apply_chat_template(msgs, { tokenize: false, chat_template: "tool_use", tools: [{ name: "g" }] }), "Tg");

    const tok3 = await AutoTokenizer.from_pretrained(writeDir({}, { "chat_template.json": JSON.stringify({ chat_template: "J{{ messages|length }}" }) }));
    assert.equal(tok3.apply_chat_template(msgs, { tokenize: false }), "J1");
  });

  test("extra keyword arguments and the special tokens reach the template", async () => {
    const tok = await tokenizer();
    const template = "{{ eos_token }}|{{ pad_token }}|{{ bos_token is defined }}|{{ enable_thinking }}";
    assert.equal(tok.apply_chat_template([{ role: "user", content: "" }], { chat_template: template, tokenize: false, enable_thinking: false }), "<|im_end|>|<|endoftext|>|false|false");
  });

  test("no chat template: an error that says where one comes from", async () => {
    const dir = writeDir({ "tokenizer_config.json": { chat_template: undefined } });
    const tok = await AutoTokenizer.from_pretrained(dir);
    assert.equal(tok.chat_template, null);
    assert.throws(() => tok.apply_chat_template([{ role: "user", content: "hi" }]), /has no chat template.*chat_template\.jinja/s);
  });
});

describe("special-token settings (variants)", () => {
  for (const [name, v] of Object.entries(fx.variants)) {
    test(`"${name}": what transformers adds, decodes and masks`, async () => {
      const tok = await AutoTokenizer.from_pretrained(writeDir({ "tokenizer_config.json": v.tokenizer_config, "tokenizer.json": v.tokenizer }));
      assert.equal(tok.bos_token_id, v.bos_token_id);
      assert.equal(tok.pad_token_id, v.pad_token_id);
      assert.equal(tok.vocab_size, v.vocab_size);
      assert.equal(tok.length, v.length);
      assert.deepEqual(tok.all_special_ids, v.all_special_ids);
      for (const t of v.texts) {
        const ids = tok.encode(t.text);
        assert.deepEqual(ids, t.ids, t.text);
        assert.deepEqual(tok.encode(t.text, { add_special_tokens: false }), t.ids_no_special, t.text);
        assert.equal(tok.decode(ids), t.decoded);
        assert.equal(tok.decode(ids, { skip_special_tokens: true }), t.decoded_skip_special);
      }
      const enc = tok.apply_chat_template(fx.chats.two_turns.messages, { return_dict: true, return_assistant_tokens_mask: true });
      assert.deepEqual(enc.input_ids, v.chat_ids);
      assert.deepEqual(enc.assistant_masks, v.chat_assistant_masks);
    });
  }

  test("a BOS-adding post-processor adds exactly one BOS, and none to a chat", async () => {
    const v = fx.variants.template_post_processor;
    const tok = await AutoTokenizer.from_pretrained(writeDir({ "tokenizer_config.json": v.tokenizer_config, "tokenizer.json": v.tokenizer }));
    const ids = tok.encode("Hello world");
    assert.equal(ids.filter((id) => id === tok.bos_token_id).length, 1);
    assert.equal(ids[0], tok.bos_token_id);
    assert.notEqual(tok.apply_chat_template(fx.chats.two_turns.messages)[0], tok.bos_token_id);
  });

  test("pad_token stays null when no file gives one; from_pretrained options override the config", async () => {
    const tok = await AutoTokenizer.from_pretrained(writeDir({ "tokenizer_config.json": { pad_token: null } }, {}, ["special_tokens_map.json"]));
    assert.equal(tok.pad_token, null);
    assert.equal(tok.pad_token_id, null);
    const tok2 = await AutoTokenizer.from_pretrained(writeDir(), { pad_token: "<|im_end|>", model_max_length: 64 });
    assert.equal(tok2.pad_token_id, 2);
    assert.equal(tok2.model_max_length, 64);
  });

  test("special tokens as AddedToken objects; special_tokens_map.json for configs without added_tokens_decoder", async () => {
    const tok = await AutoTokenizer.from_pretrained(
      writeDir({ "tokenizer_config.json": { eos_token: { content: "<|endoftext|>", lstrip: false, rstrip: false, special: true } } }),
    );
    assert.equal(tok.eos_token, "<|endoftext|>");
    assert.equal(tok.eos_token_id, 0);
    const legacy = writeDir({
      "tokenizer_config.json": { added_tokens_decoder: undefined, eos_token: undefined, pad_token: undefined },
      "special_tokens_map.json": { eos_token: { content: "<|im_end|>" }, bos_token: "<|im_start|>" },
    });
    const tok2 = await AutoTokenizer.from_pretrained(legacy);
    assert.equal(tok2.eos_token_id, 2);
    assert.equal(tok2.bos_token_id, 1);
    assert.equal(tok2.pad_token, "<|endoftext|>");
  });
});

describe("loading errors", () => {
  test("no tokenizer.json: names the source and the files a tokenizer needs", async () => {
    const dir = writeDir({}, {}, ["tokenizer.json"]);
    await rejects(AutoTokenizer.from_pretrained(dir), /No tokenizer\.json in/, new RegExp(dir.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")), /tokenizer_config\.json/);
    writeFileSync(join(dir, "vocab.json"), "{}");
    await rejects(AutoTokenizer.from_pretrained(dir), /vocab\.json/, /save_pretrained/);
    const empty = mkdtempSync(join(tmpdir(), "webtune-tok-"));
    dirs.push(empty);
    mkdirSync(join(empty, "sub"));
    await rejects(AutoTokenizer.from_pretrained(join(empty, "sub")), /No tokenizer\.json/);
  });

  test("malformed tokenizer.json: the error names the file", async () => {
    await rejects(AutoTokenizer.from_pretrained(writeDir({}, { "tokenizer.json": '{"model": {"type": "BPE", ' })), /tokenizer\.json/, /not valid JSON/);
    await rejects(AutoTokenizer.from_pretrained(writeDir({}, { "tokenizer.json": "[1, 2]" })), /tokenizer\.json in .* is not a tokenizer/);
    await rejects(AutoTokenizer.from_pretrained(writeDir({}, { "tokenizer.json": '{"version": "1.0"}' })), /tokenizer\.json in .*no "model"/);
    await rejects(AutoTokenizer.from_pretrained(writeDir({}, { "tokenizer_config.json": "{oops" })), /tokenizer_config\.json/, /not valid JSON/);
    await rejects(
      AutoTokenizer.from_pretrained(writeDir({ "tokenizer.json": { pre_tokenizer: { type: "NoSuchPreTokenizer" } } })),
      /tokenizer\.json in .*could not be loaded/,
      /NoSuchPreTokenizer/,
    );
  });

  test("an unsupported tokenizer model type is named", async () => {
    const model = { type: "WordLevel", vocab: { a: 0 }, unk_token: "a" };
    await rejects(AutoTokenizer.from_pretrained(writeDir({ "tokenizer.json": { model } })), /tokenizer model type "WordLevel" is not supported/);
  });
});

describe("wrong types in the tokenizer files (issue 14)", () => {
  test("each is an error naming the file and the key, not a TypeError", async () => {
    const cases: [string, Record<string, unknown>, RegExp][] = [
      ["tokenizer.json", { added_tokens: 5 }, /tokenizer\.json in .*: "added_tokens" must be a list of \{id, content, …\} objects, got a number \(5\)/],
      ["tokenizer.json", { added_tokens: [{ id: "3", content: "<x>" }] }, /"added_tokens\[0\]\.id" must be a non-negative integer, got a string \("3"\)/],
      ["tokenizer.json", { added_tokens: [null] }, /"added_tokens\[0\]" must be an \{id, content, …\} object, got null/],
      ["tokenizer.json", { pre_tokenizer: "ByteLevel" }, /"pre_tokenizer" must be an object or null, got a string/],
      ["tokenizer.json", { padding: 1 }, /"padding" must be an object or null/],
      ["tokenizer_config.json", { bos_token: 7 }, /tokenizer_config\.json in .*: "bos_token" must be a string, an \{"content": …\} object or null, got a number \(7\)/],
      ["tokenizer_config.json", { added_tokens_decoder: [] }, /"added_tokens_decoder" must be an object of id → \{content, …\}, got an array/],
      ["tokenizer_config.json", { added_tokens_decoder: { x: { content: "<y>" } } }, /"added_tokens_decoder\["x"\]" must be keyed by a token id/],
      ["tokenizer_config.json", { added_tokens_decoder: { "5": "<y>" } }, /"added_tokens_decoder\["5"\]" must be a \{content, …\} object/],
      ["tokenizer_config.json", { additional_special_tokens: "<a>" }, /"additional_special_tokens" must be a list of tokens/],
      ["tokenizer_config.json", { model_max_length: "2048" }, /"model_max_length" must be a positive number/],
      ["tokenizer_config.json", { padding_side: "middle" }, /"padding_side" must be "left" or "right", got a string \("middle"\)/],
      ["tokenizer_config.json", { clean_up_tokenization_spaces: "yes" }, /"clean_up_tokenization_spaces" must be true or false/],
    ];
    for (const [file, edit, re] of cases) {
      const err = await rejects(AutoTokenizer.from_pretrained(writeDir({ [file]: edit })), re);
      assert.ok(!(err instanceof TypeError), `${JSON.stringify(edit)}: ${err.message}`);
    }
    const model = JSON.parse(makeTokenizerFiles()["tokenizer.json"]!).model;
    await rejects(AutoTokenizer.from_pretrained(writeDir({ "tokenizer.json": { model: { ...model, vocab: { a: -1 } } } })), /"model\.vocab\["a"\]" must be a non-negative integer id, got a number \(-1\)/);
    await rejects(AutoTokenizer.from_pretrained(writeDir({ "tokenizer.json": { model: { ...model, merges: "a b" } } })), /"model\.merges" must be a list of merges/);
  });

  test("a template's errors name the file it came from", async () => {
    const dir = writeDir({}, { "chat_template.jinja": "{{ raise_exception('no') }}" });
    const tok = await AutoTokenizer.from_pretrained(dir);
    assert.throws(() => tok.apply_chat_template([{ role: "user", content: "x" }], { tokenize: false }), /Rendering the chat template of chat_template\.jinja in .* failed: no/);
    const broken = await AutoTokenizer.from_pretrained(writeDir({ "tokenizer_config.json": { chat_template: "{% if %}" } }));
    assert.throws(() => broken.apply_chat_template([{ role: "user", content: "x" }], { tokenize: false }), /The chat template of tokenizer_config\.json in .* does not parse/);
  });
});
