// Tokenizers, as transformers' AutoTokenizer loads them: tokenizer.json (the "fast" tokenizer: normalizer,
// pre-tokenizer, model, post-processor, decoder, added tokens) run by @huggingface/tokenizers, plus
// tokenizer_config.json (special tokens, model_max_length, chat template), special_tokens_map.json and
// chat_template.jinja / chat_template.json. Chat templates are rendered by @huggingface/jinja, with
// transformers' {% generation %} extension implemented here for assistant_masks.
//
// What transformers (5.x, TokenizersBackend) does and this mirrors:
//   - encode(text) runs tokenizer.json's pipeline; its post_processor alone decides what add_special_tokens
//     adds (a TemplateProcessing adds BOS for Llama 3, a ByteLevel one adds nothing). transformers 5 ignores
//     tokenizer_config.json's add_bos_token / add_eos_token when tokenizer.json exists, and so does this: no
//     BOS is ever added on top of the post-processor's.
//   - The named special tokens (bos/eos/unk/sep/pad/cls/mask) come from tokenizer_config.json, as strings or
//     AddedToken objects ({content, …}). Old configs without added_tokens_decoder take them from
//     special_tokens_map.json (whose entries win). A named special token that tokenizer.json does not list
//     as an added token becomes one (special), as transformers adds it. pad_token stays null when no file
//     gives one (the trainer sets pad = eos, as TRL does).
//   - apply_chat_template renders with messages, tools, documents, add_generation_prompt, the special tokens
//     (bos_token, eos_token, …) and any extra keyword, then encodes the text with add_special_tokens=false,
//     so the template's own BOS is the only one.
//
// The files are untrusted input: tokenizer.json's and tokenizer_config.json's keys are type-checked (an error
// names the file and the key), and a chat template, which is code, renders under CHAT_TEMPLATE_LIMITS (steps,
// time, range() length, string length), a render past them stopping with an error naming the template's file.
import { Tokenizer } from "@huggingface/tokenizers";
import { Environment, Interpreter, Template, parse, tokenize } from "@huggingface/jinja";
import type { SourceOptions } from "../io/http.ts";
import { openGGUFLocation, openSource, type ModelLocation } from "../io/open.ts";
import { GGUFFile, ggufTokenizer } from "../models/gguf.ts";
import type { ModelSource } from "../io/source.ts";

/** transformers' VERY_LARGE_INTEGER: model_max_length when the config gives none (no limit). */
export const VERY_LARGE_INTEGER = 1e30;

/** The named special tokens, in transformers' SPECIAL_TOKENS_ATTRIBUTES order. */
export const SPECIAL_TOKEN_NAMES = ["bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token"] as const;
export type SpecialTokenName = (typeof SPECIAL_TOKEN_NAMES)[number];

/** The model types of tokenizer.json that @huggingface/tokenizers runs. */
const SUPPORTED_MODELS = ["BPE", "WordPiece", "Unigram"];

/** A special token as the files give it: its string, or an AddedToken-like object. */
type TokenSpec = string | { content: string; [key: string]: unknown } | null | undefined;

/** An added token of tokenizer.json (added_tokens) or tokenizer_config.json (added_tokens_decoder). */
interface AddedTokenJson {
  id: number;
  content: string;
  single_word?: boolean;
  lstrip?: boolean;
  rstrip?: boolean;
  normalized?: boolean;
  special?: boolean;
}

/** The parts of tokenizer.json this file looks at (the rest goes to @huggingface/tokenizers as is). */
interface TokenizerJson {
  model: { type?: string; vocab?: Record<string, number> | [string, number][]; [key: string]: unknown };
  added_tokens?: AddedTokenJson[];
  normalizer?: unknown;
  pre_tokenizer?: { type?: string; pretokenizers?: { type?: string }[] } | null;
  post_processor?: unknown;
  decoder?: { type?: string; decoders?: { type?: string }[] } | null;
  padding?: { pad_token?: string } | null;
  [key: string]: unknown;
}

/** A chat template as the files give it: one string, or named templates. */
type ChatTemplates = string | Record<string, string>;

/** tokenizer_config.json (the keys used here; the rest is kept in `init_kwargs`). */
export interface TokenizerConfig {
  bos_token?: TokenSpec;
  eos_token?: TokenSpec;
  unk_token?: TokenSpec;
  sep_token?: TokenSpec;
  pad_token?: TokenSpec;
  cls_token?: TokenSpec;
  mask_token?: TokenSpec;
  additional_special_tokens?: TokenSpec[];
  extra_special_tokens?: TokenSpec[] | Record<string, TokenSpec>;
  added_tokens_decoder?: Record<string, Omit<AddedTokenJson, "id">>;
  model_max_length?: number;
  padding_side?: "left" | "right";
  truncation_side?: "left" | "right";
  clean_up_tokenization_spaces?: boolean;
  chat_template?: string | { name: string; template: string }[];
  [key: string]: unknown;
}

/** Options of AutoTokenizer.from_pretrained: where the files come from, and overrides of tokenizer_config.json. */
export interface TokenizerOptions extends SourceOptions {
  /** transformers' gguf_file: the tokenizer of this GGUF file of the location (a .gguf location needs none). */
  gguf_file?: string;
  /** A chat template to use instead of the files' (transformers: `chat_template=` kwarg). */
  chat_template?: string;
  bos_token?: string | null;
  eos_token?: string | null;
  unk_token?: string | null;
  pad_token?: string | null;
  model_max_length?: number;
  padding_side?: "left" | "right";
}

export interface EncodeOptions {
  /** Add what tokenizer.json's post-processor adds (e.g. BOS); default true. */
  add_special_tokens?: boolean;
}

export interface DecodeOptions {
  /** Leave out added tokens marked special (default false). */
  skip_special_tokens?: boolean;
  /** transformers' clean-up of spaces before punctuation; default tokenizer_config.json's, else false. */
  clean_up_tokenization_spaces?: boolean;
}

/** One chat message: a role and content (a string, or content blocks), plus whatever the template reads. */
export interface ChatMessage {
  role: string;
  content?: unknown;
  [key: string]: unknown;
}

/** A tool as a JSON schema ({type: "function", function: {name, description, parameters}}). */
export type ChatTool = Record<string, unknown>;

export interface ChatTemplateOptions {
  /** End with the header of an assistant turn, for generation (default false). */
  add_generation_prompt?: boolean;
  /** Tools, passed to the template as `tools` (null when absent, as transformers passes None). */
  tools?: ChatTool[] | null;
  /** Documents for RAG templates, passed as `documents`. */
  documents?: Record<string, unknown>[] | null;
  /** Return token ids (default true) or the rendered string (false). */
  tokenize?: boolean;
  /** With tokenize: {input_ids, attention_mask[, assistant_masks]} instead of the ids (default false). */
  return_dict?: boolean;
  /** With tokenize and return_dict: assistant_masks, 1 on the tokens inside {% generation %} blocks. */
  return_assistant_tokens_mask?: boolean;
  /** A template string, or the name of one of the tokenizer's templates; default the tokenizer's. */
  chat_template?: string;
  /** End the text inside the final message (to continue it) instead of closing it; a string names the field. */
  continue_final_message?: boolean | string;
  /** Anything else is passed to the template as a variable (e.g. enable_thinking). */
  [kwarg: string]: unknown;
}

/** apply_chat_template with return_dict. */
export interface ChatEncoding {
  input_ids: number[];
  attention_mask: number[];
  /** 1 on the tokens of the template's {% generation %} blocks (assistant content and its end of turn). */
  assistant_masks?: number[];
}

/** A rendered chat and the [start, end) character ranges of its generation blocks. */
export interface RenderedChat {
  text: string;
  generation_spans: [number, number][];
}

const CHAT_TEMPLATE_DOCS = "https://huggingface.co/docs/transformers/main/en/chat_templating";

/** The content of a special token as the files give it (a string, or an AddedToken-like {content}). */
function tokenContent(spec: unknown): string | null {
  if (spec === null || spec === undefined) return null;
  if (typeof spec === "string") return spec;
  if (typeof spec === "object" && typeof (spec as { content?: unknown }).content === "string") return (spec as { content: string }).content;
  return null;
}

/** JSON's name for a value's type, for messages: "a number (5)", "an array", "null", … */
function shown(v: unknown): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "an array";
  if (typeof v === "object") return "an object";
  const text = JSON.stringify(v) ?? String(v);
  return `${typeof v === "number" ? "a number" : typeof v === "string" ? "a string" : typeof v === "boolean" ? "a boolean" : typeof v} (${text.length > 40 ? `${text.slice(0, 40)}…` : text})`;
}

const isId = (v: unknown): boolean => Number.isSafeInteger(v) && (v as number) >= 0;

/**
 * tokenizer.json's shapes checked before use, each wrong one an error naming the file and the key (rather than a
 * TypeError from deep inside): added_tokens a list of {id, content}, the model's vocab a map of ids (or Unigram's
 * [piece, score] list), merges a list, the pipeline parts objects or null, padding an object or null.
 */
function checkTokenizerJson(json: TokenizerJson, file: string): void {
  const fail = (key: string, want: string, got: unknown): never => {
    throw new Error(`${file}: "${key}" must be ${want}, got ${shown(got)}`);
  };
  const raw = json as unknown as Record<string, unknown>;
  const added = raw.added_tokens;
  if (added !== undefined && added !== null) {
    if (!Array.isArray(added)) fail("added_tokens", "a list of {id, content, …} objects", added);
    (added as unknown[]).forEach((t, i) => {
      if (!t || typeof t !== "object" || Array.isArray(t)) fail(`added_tokens[${i}]`, "an {id, content, …} object", t);
      const { id, content } = t as { id?: unknown; content?: unknown };
      if (!isId(id)) fail(`added_tokens[${i}].id`, "a non-negative integer", id);
      if (typeof content !== "string") fail(`added_tokens[${i}].content`, "a string", content);
    });
  }
  for (const key of ["normalizer", "pre_tokenizer", "post_processor", "decoder", "padding", "truncation"]) {
    const v = raw[key];
    if (v !== undefined && v !== null && (typeof v !== "object" || Array.isArray(v))) fail(key, "an object or null", v);
  }
  const pad = (raw.padding as { pad_token?: unknown } | null | undefined)?.pad_token;
  if (pad !== undefined && pad !== null && typeof pad !== "string") fail("padding.pad_token", "a string", pad);
  const model = json.model as unknown as Record<string, unknown>;
  if (model.type !== undefined && typeof model.type !== "string") fail("model.type", "a string", model.type);
  const vocab = model.vocab;
  if (Array.isArray(vocab)) {
    vocab.forEach((e, i) => {
      if (!Array.isArray(e) || typeof e[0] !== "string" || typeof e[1] !== "number") fail(`model.vocab[${i}]`, "a [piece, score] pair", e);
    });
  } else if (vocab !== undefined && vocab !== null) {
    if (typeof vocab !== "object") fail("model.vocab", "an object of piece → id (or Unigram's list of [piece, score])", vocab);
    for (const [piece, id] of Object.entries(vocab)) if (!isId(id)) fail(`model.vocab[${JSON.stringify(piece)}]`, "a non-negative integer id", id);
  }
  if (model.merges !== undefined && model.merges !== null && !Array.isArray(model.merges)) fail("model.merges", "a list of merges", model.merges);
  for (const key of ["unk_token", "continuing_subword_prefix", "end_of_word_suffix"]) {
    const v = model[key];
    if (v !== undefined && v !== null && typeof v !== "string") fail(`model.${key}`, "a string or null", v);
  }
}

/** A special-token entry of tokenizer_config.json: a string, an {content} object, or null. */
const isTokenSpec = (v: unknown): boolean =>
  v === null || typeof v === "string" || (typeof v === "object" && !Array.isArray(v) && typeof (v as { content?: unknown }).content === "string");

/** tokenizer_config.json's keys webtune reads, checked: a wrong type is an error naming the file and the key. */
function checkTokenizerConfig(config: TokenizerConfig, file: string): void {
  const fail = (key: string, want: string, got: unknown): never => {
    throw new Error(`${file}: "${key}" must be ${want}, got ${shown(got)}`);
  };
  if (!config || typeof config !== "object" || Array.isArray(config)) throw new Error(`${file} is not a JSON object`);
  for (const key of SPECIAL_TOKEN_NAMES) {
    const v = config[key];
    if (v !== undefined && !isTokenSpec(v)) fail(key, "a string, an {\"content\": …} object or null", v);
  }
  const extras = config.additional_special_tokens;
  if (extras !== undefined && extras !== null && (!Array.isArray(extras) || !extras.every(isTokenSpec))) fail("additional_special_tokens", "a list of tokens", extras);
  const extra = config.extra_special_tokens;
  if (extra !== undefined && extra !== null) {
    const list = Array.isArray(extra) ? extra : typeof extra === "object" ? Object.values(extra) : null;
    if (!list || !list.every(isTokenSpec)) fail("extra_special_tokens", "a list or an object of tokens", extra);
  }
  const decoder = config.added_tokens_decoder;
  if (decoder !== undefined && decoder !== null) {
    if (typeof decoder !== "object" || Array.isArray(decoder)) fail("added_tokens_decoder", "an object of id → {content, …}", decoder);
    for (const [id, t] of Object.entries(decoder)) {
      if (!/^\d+$/.test(id) || !Number.isSafeInteger(Number(id))) fail(`added_tokens_decoder[${JSON.stringify(id)}]`, "keyed by a token id (a non-negative integer)", id);
      if (!t || typeof t !== "object" || typeof (t as { content?: unknown }).content !== "string") fail(`added_tokens_decoder["${id}"]`, "a {content, …} object", t);
    }
  }
  const max = config.model_max_length;
  if (max !== undefined && max !== null && !(typeof max === "number" && max > 0)) fail("model_max_length", "a positive number", max);
  for (const key of ["padding_side", "truncation_side"] as const) {
    const v = config[key];
    if (v !== undefined && v !== null && v !== "left" && v !== "right") fail(key, `"left" or "right"`, v);
  }
  const clean = config.clean_up_tokenization_spaces;
  if (clean !== undefined && clean !== null && typeof clean !== "boolean") fail("clean_up_tokenization_spaces", "true or false", clean);
}

/** GPT-2's bytes_to_unicode, inverted: the byte of each byte-level symbol. */
let byteLevelDecoder: Map<string, number> | null = null;
function unicodeToBytes(): Map<string, number> {
  if (byteLevelDecoder) return byteLevelDecoder;
  const printable = new Set<number>();
  for (const [lo, hi] of [[0x21, 0x7e], [0xa1, 0xac], [0xae, 0xff]]) for (let b = lo; b <= hi; b++) printable.add(b);
  const map = new Map<string, number>();
  let extra = 0;
  for (let b = 0; b < 256; b++) map.set(String.fromCodePoint(printable.has(b) ? b : 256 + extra++), b);
  return (byteLevelDecoder = map);
}

/** Whether a pre-tokenizer or decoder config is (or contains) a ByteLevel step. */
function hasByteLevel(component: { type?: string; pretokenizers?: { type?: string }[]; decoders?: { type?: string }[] } | null | undefined): boolean {
  if (!component) return false;
  if (component.type === "ByteLevel") return true;
  return [...(component.pretokenizers ?? []), ...(component.decoders ?? [])].some((c) => c?.type === "ByteLevel");
}

const utf8 = new TextEncoder();

/** Two private-use characters that appear nowhere in `haystack`: the generation-block markers. */
function pickMarkers(haystack: string): [string, string] {
  const found: string[] = [];
  for (let c = 0xe000; c <= 0xf8ff && found.length < 2; c++) {
    const ch = String.fromCharCode(c);
    if (!haystack.includes(ch)) found.push(ch);
  }
  if (found.length < 2) throw new Error("apply_chat_template: no free private-use character to mark {% generation %} blocks with");
  return [found[0], found[1]];
}

/** JSON of the render inputs, to keep markers out of them (values JSON cannot hold are skipped). */
function safeJson(value: unknown): string {
  try {
    return JSON.stringify(value, (_k, v) => (typeof v === "bigint" ? String(v) : v)) ?? "";
  } catch {
    return "";
  }
}

const GENERATION_TAG = /\{%-?\s*generation\s*-?%\}/;

/**
 * Python's str.strip / lstrip / rstrip take the characters to strip (`content.lstrip('\n')` in Qwen3's template
 * keeps a leading space); @huggingface/jinja 0.5 ignores the argument and strips all whitespace. Its string
 * methods come from a `builtins` getter on the string value's prototype, so that getter is wrapped once, here,
 * to give the three methods Python's meaning (no argument or none: whitespace, as before).
 */
function patchStringStrip(): void {
  const sample = new Interpreter(new Environment()).run(parse(tokenize("{{ 'a' }}"))) as object;
  const proto = Object.getPrototypeOf(sample) as object;
  const desc = Object.getOwnPropertyDescriptor(proto, "builtins");
  if (!desc?.get || (desc.get as { patched?: boolean }).patched) return;
  const original = desc.get;
  const upper = (original.call(sample) as Map<string, unknown>).get("upper") as object;
  const FunctionValue = upper.constructor as new (fn: (args: { value?: unknown }[]) => unknown) => unknown;
  const StringValue = sample.constructor as new (value: string) => unknown;
  const strip = (text: string, chars: unknown, left: boolean, right: boolean): string => {
    if (typeof chars !== "string") return left && right ? text.trim() : left ? text.trimStart() : text.trimEnd();
    let a = 0;
    let b = text.length;
    if (left) while (a < b && chars.includes(text[a])) a++;
    if (right) while (b > a && chars.includes(text[b - 1])) b--;
    return text.slice(a, b);
  };
  const done = new WeakSet<Map<string, unknown>>();
  const getter = function (this: { value: string }) {
    const map = original.call(this) as Map<string, unknown>;
    if (!done.has(map)) {
      const make = (left: boolean, right: boolean) => new FunctionValue((args) => new StringValue(strip(this.value, args[0]?.value, left, right)));
      map.set("strip", make(true, true)).set("lstrip", make(true, false)).set("rstrip", make(false, true));
      done.add(map);
    }
    return map;
  };
  (getter as { patched?: boolean }).patched = true;
  Object.defineProperty(proto, "builtins", { ...desc, get: getter });
}
patchStringStrip();

/**
 * Bounds on rendering one chat template. A template is code from an untrusted file (tokenizer_config.json,
 * chat_template.jinja, a GGUF file's metadata), so a render that runs past them stops with an error naming the
 * template's source, rather than looping for minutes or exhausting memory. Real templates need a few hundred steps
 * per message. Assignable, process-wide.
 */
export const CHAT_TEMPLATE_LIMITS = {
  /**
   * Interpreter steps per render: each statement or expression evaluated and each loop iteration is one (about
   * 100 per message for the templates models ship; @huggingface/jinja runs some 10^5 to 10^6 a second).
   */
  max_steps: 500_000,
  /** Milliseconds per render (checked every 256 steps): a bound on time where steps are slow. */
  max_ms: 5_000,
  /** Characters of any string the template builds, the rendered text included (32 Mi). */
  max_output_chars: 1 << 25,
  /** Items of one range() (a render takes a step per item, too). */
  max_range: 100_000,
};

/** The render in progress (renders are synchronous: one at a time), with its step count; null outside renders. */
let budget: { steps: number; max: number; chars: number; deadline: number } | null = null;

class TemplateLimitError extends Error {}

/**
 * Counts steps in @huggingface/jinja's Interpreter: its evaluate() (every node) and evaluateBlock() (every loop
 * iteration, an empty body included) are wrapped once, here, and check the active render's budget and the length
 * of each string made. Outside webtune's renders (budget null) they run unchanged.
 */
function patchInterpreterBudget(): void {
  const proto = Interpreter.prototype as unknown as Record<string, ((...a: unknown[]) => unknown) & { budgeted?: boolean }>;
  for (const method of ["evaluate", "evaluateBlock"]) {
    const original = proto[method];
    if (typeof original !== "function" || original.budgeted) continue;
    const wrapped = function (this: unknown, ...args: unknown[]) {
      const b = budget;
      if (b !== null) {
        if (++b.steps > b.max) throw new TemplateLimitError(`it ran past ${b.max} steps (CHAT_TEMPLATE_LIMITS.max_steps): a runaway loop?`);
        if ((b.steps & 255) === 0 && Date.now() > b.deadline) {
          throw new TemplateLimitError(`it ran for more than ${CHAT_TEMPLATE_LIMITS.max_ms} ms (CHAT_TEMPLATE_LIMITS.max_ms): a runaway loop?`);
        }
      }
      const out = original.apply(this, args) as { value?: unknown };
      if (b !== null && typeof out?.value === "string" && out.value.length > b.chars) {
        throw new TemplateLimitError(`it built a string of ${out.value.length} characters, past ${b.chars} (CHAT_TEMPLATE_LIMITS.max_output_chars)`);
      }
      return out;
    };
    (wrapped as { budgeted?: boolean }).budgeted = true;
    proto[method] = wrapped;
  }
  // The global range() (Template.render sets it with Environment.set): bounded during webtune's renders.
  const env = Environment.prototype as unknown as { set: ((name: string, value: unknown) => unknown) & { budgeted?: boolean } };
  const set = env.set;
  if (set.budgeted) return;
  const bounded = function (this: unknown, name: string, value: unknown) {
    return set.call(this, name, budget !== null && name === "range" ? boundedRange : value);
  };
  bounded.budgeted = true;
  env.set = bounded;
}
patchInterpreterBudget();

/** Jinja's range(), refusing more than CHAT_TEMPLATE_LIMITS.max_range items before making any. */
function boundedRange(start: number, stop?: number, step = 1): number[] {
  if (stop === undefined) {
    stop = start;
    start = 0;
  }
  if (![start, stop, step].every((x) => typeof x === "number" && Number.isFinite(x))) throw new Error(`range() needs finite numbers, got (${start}, ${stop}, ${step})`);
  if (step === 0) throw new Error("range() step must not be zero");
  const n = Math.max(0, Math.ceil((stop - start) / step));
  const max = CHAT_TEMPLATE_LIMITS.max_range;
  if (n > max) throw new TemplateLimitError(`range() of ${n} items, past ${max} (CHAT_TEMPLATE_LIMITS.max_range)`);
  return Array.from({ length: n }, (_, i) => start + i * step);
}

/** `template` rendered with `variables` under CHAT_TEMPLATE_LIMITS; a limit's error says which and names `source`. */
function renderBounded(template: Template, variables: Record<string, unknown>, source: string): string {
  const outer = budget;
  const { max_steps, max_output_chars, max_ms } = CHAT_TEMPLATE_LIMITS;
  budget = { steps: 0, max: max_steps, chars: max_output_chars, deadline: Date.now() + max_ms };
  try {
    return template.render(variables);
  } catch (e) {
    if (e instanceof TemplateLimitError || e instanceof RangeError) {
      throw new Error(`Rendering the chat template of ${source} stopped: ${(e as Error).message}. The template is untrusted code; check it, or raise CHAT_TEMPLATE_LIMITS if it is meant to do this much`, { cause: e });
    }
    throw new Error(`Rendering the chat template of ${source} failed: ${(e as Error).message}`, { cause: e });
  } finally {
    budget = outer;
  }
}

/** A tokenizer: encode/decode, special tokens and chat templates, with transformers' names and semantics. */
export class PreTrainedTokenizer {
  /** The @huggingface/tokenizers tokenizer that runs tokenizer.json. */
  readonly backend: Tokenizer;
  /** Where the files came from. */
  readonly name_or_path: string;
  /** tokenizer_config.json as read (after from_pretrained overrides). */
  readonly init_kwargs: TokenizerConfig;
  /** The named special tokens (null where none). */
  readonly bos_token: string | null;
  readonly eos_token: string | null;
  readonly unk_token: string | null;
  readonly sep_token: string | null;
  readonly pad_token: string | null;
  readonly cls_token: string | null;
  readonly mask_token: string | null;
  /** Special tokens beyond the named ones (additional_special_tokens / extra_special_tokens). */
  readonly extra_special_tokens: string[];
  /** Longest input the model takes, from tokenizer_config.json; VERY_LARGE_INTEGER when it gives none. */
  readonly model_max_length: number;
  /** Which side padding goes on (tokenizer_config.json's padding_side, default "right"). */
  readonly padding_side: "left" | "right";
  /** The chat template(s): one string, named templates, or null. */
  /** The chat template(s); assignable, as transformers' tokenizer.chat_template (TRL's chat_template_path sets it). */
  chat_template: ChatTemplates | null;
  /** Where the tokenizer's own chat_template was read from ("chat_template.jinja in <dir>", …), for messages. */
  chat_template_source: string;
  /** Base vocabulary size (the model's vocab, without added tokens not in it), as transformers' vocab_size. */
  readonly vocab_size: number;
  /** Vocabulary size with the added tokens: transformers' len(tokenizer). */
  readonly length: number;

  private readonly cleanUp: boolean;
  private readonly addedIds: Set<number>;
  private readonly byteLevel: boolean;
  private readonly continuingPrefix: string | null;
  private tokenBytesCache: (Uint8Array | null)[] | null = null;
  private readonly templates = new Map<string, Template>();

  /**
   * Use AutoTokenizer.from_pretrained; this takes the parsed files: tokenizer.json, tokenizer_config.json and,
   * in options, special_tokens_map.json and the chat template (default: the config's chat_template).
   */
  constructor(
    tokenizerJson: unknown,
    config: TokenizerConfig = {},
    options: { name?: string; special_tokens_map?: Record<string, unknown>; chat_template?: ChatTemplates | null; chat_template_source?: string } = {},
  ) {
    const name = options.name ?? "(in memory)";
    const file = `tokenizer.json in ${name}`;
    if (!tokenizerJson || typeof tokenizerJson !== "object" || Array.isArray(tokenizerJson)) {
      throw new Error(`${file} is not a tokenizer: expected a JSON object with "model", "pre_tokenizer", "decoder", … as transformers saves it`);
    }
    const json = { ...(tokenizerJson as TokenizerJson) };
    if (!json.model || typeof json.model !== "object") {
      throw new Error(`${file} is not a tokenizer: it has no "model" object (BPE, WordPiece or Unigram vocabulary)`);
    }
    const type = json.model.type;
    if (type !== undefined && !SUPPORTED_MODELS.includes(type)) {
      throw new Error(`${file}: tokenizer model type "${type}" is not supported (webtune runs ${SUPPORTED_MODELS.join(", ")} through @huggingface/tokenizers)`);
    }
    if (type === undefined && !json.model.vocab) {
      throw new Error(`${file}: the model has neither a "type" nor a "vocab", so it is no tokenizer model webtune knows (${SUPPORTED_MODELS.join(", ")})`);
    }
    for (const key of ["normalizer", "pre_tokenizer", "post_processor", "decoder"]) json[key] ??= null;
    checkTokenizerJson(json, file);
    checkTokenizerConfig(config, `tokenizer_config.json in ${name}`);
    json.added_tokens = [...(json.added_tokens ?? [])];

    this.name_or_path = name;
    this.init_kwargs = config;

    // The named special tokens: tokenizer_config.json; old configs (no added_tokens_decoder) take
    // special_tokens_map.json's on top, as transformers 5 does. tokenizer.json's padding gives pad last.
    const specs: Record<string, unknown> = { ...config };
    if (!config.added_tokens_decoder && options.special_tokens_map) Object.assign(specs, options.special_tokens_map);
    const named = {} as Record<SpecialTokenName, string | null>;
    for (const key of SPECIAL_TOKEN_NAMES) named[key] = tokenContent(specs[key]);
    named.pad_token ??= json.padding?.pad_token ?? null;
    this.bos_token = named.bos_token;
    this.eos_token = named.eos_token;
    this.unk_token = named.unk_token;
    this.sep_token = named.sep_token;
    this.pad_token = named.pad_token;
    this.cls_token = named.cls_token;
    this.mask_token = named.mask_token;
    const extraSpecs = specs.extra_special_tokens ?? specs.additional_special_tokens ?? [];
    const extras = (Array.isArray(extraSpecs) ? extraSpecs : Object.values(extraSpecs as Record<string, unknown>)).map(tokenContent);
    this.extra_special_tokens = [...new Set(extras.filter((t): t is string => t !== null))];

    // The model's vocabulary, then the added tokens transformers would add: the config's added_tokens_decoder
    // and named/extra special tokens that tokenizer.json does not list (existing vocab ids are reused).
    const vocab = new Map<string, number>();
    const modelVocab = json.model.vocab;
    if (Array.isArray(modelVocab)) modelVocab.forEach(([piece], i) => vocab.set(piece, i));
    else if (modelVocab && typeof modelVocab === "object") for (const [piece, id] of Object.entries(modelVocab)) vocab.set(piece, id);
    this.vocab_size = vocab.size;
    const added = json.added_tokens;
    const addedContents = new Set(added.map((t) => t.content));
    let nextId = 0; // one past the largest id (a loop: spreading a 150k vocabulary into Math.max overflows the stack)
    for (const id of vocab.values()) nextId = Math.max(nextId, id + 1);
    for (const t of added) nextId = Math.max(nextId, t.id + 1);
    for (const [id, t] of Object.entries(config.added_tokens_decoder ?? {})) {
      if (!addedContents.has(t.content)) {
        added.push({ ...t, id: Number(id) });
        addedContents.add(t.content);
        nextId = Math.max(nextId, Number(id) + 1);
      }
    }
    for (const content of [...SPECIAL_TOKEN_NAMES.map((k) => named[k]), ...this.extra_special_tokens]) {
      if (content === null || addedContents.has(content)) continue;
      const id = vocab.get(content) ?? nextId++;
      added.push({ id, content, special: true, normalized: false, lstrip: false, rstrip: false, single_word: false });
      addedContents.add(content);
    }
    for (const t of added) vocab.set(t.content, t.id);
    this.length = vocab.size;
    this.addedIds = new Set(added.map((t) => t.id));

    this.cleanUp = config.clean_up_tokenization_spaces ?? false;
    const backendConfig = {
      ...config,
      ...Object.fromEntries(SPECIAL_TOKEN_NAMES.map((k) => [k, named[k]])),
      additional_special_tokens: this.extra_special_tokens,
      clean_up_tokenization_spaces: this.cleanUp,
    };
    try {
      this.backend = new Tokenizer(json, backendConfig);
    } catch (e) {
      throw new Error(`${file} could not be loaded by @huggingface/tokenizers: ${(e as Error).message}`);
    }

    this.model_max_length = typeof config.model_max_length === "number" ? config.model_max_length : VERY_LARGE_INTEGER;
    this.padding_side = config.padding_side ?? "right";
    this.chat_template = options.chat_template !== undefined ? options.chat_template : templatesOf(config.chat_template, `tokenizer_config.json in ${name}`);
    this.chat_template_source = options.chat_template_source ?? (options.chat_template !== undefined ? `${name} (the chat_template given to the tokenizer)` : `tokenizer_config.json in ${name}`);
    this.byteLevel = hasByteLevel(json.pre_tokenizer) || hasByteLevel(json.decoder);
    const prefix = json.model.continuing_subword_prefix;
    this.continuingPrefix = typeof prefix === "string" && prefix !== "" ? prefix : null;
  }

  /** The ids of a named special token (null when it is unset or not in the vocabulary). */
  private idOf(token: string | null): number | null {
    return token === null ? null : (this.backend.token_to_id(token) ?? null);
  }

  get bos_token_id(): number | null {
    return this.idOf(this.bos_token);
  }
  get eos_token_id(): number | null {
    return this.idOf(this.eos_token);
  }
  get unk_token_id(): number | null {
    return this.idOf(this.unk_token);
  }
  get sep_token_id(): number | null {
    return this.idOf(this.sep_token);
  }
  get pad_token_id(): number | null {
    return this.idOf(this.pad_token);
  }
  get cls_token_id(): number | null {
    return this.idOf(this.cls_token);
  }
  get mask_token_id(): number | null {
    return this.idOf(this.mask_token);
  }

  /** The named special tokens that are set, by name (what chat templates get as variables). */
  get special_tokens_map(): Partial<Record<SpecialTokenName, string>> {
    const out: Partial<Record<SpecialTokenName, string>> = {};
    for (const key of SPECIAL_TOKEN_NAMES) {
      const t = this[key];
      if (t !== null) out[key] = t;
    }
    return out;
  }

  /** Named special tokens (in SPECIAL_TOKEN_NAMES order) then the extra ones, each once. */
  get all_special_tokens(): string[] {
    return [...new Set([...Object.values(this.special_tokens_map), ...this.extra_special_tokens])];
  }

  /** The ids of all_special_tokens. */
  get all_special_ids(): number[] {
    return this.all_special_tokens.map((t) => this.idOf(t)).filter((id): id is number => id !== null);
  }

  /** Token → id over the model's vocabulary and the added tokens. */
  get_vocab(): Map<string, number> {
    return this.backend.get_vocab(true);
  }

  /** The added tokens (tokenizer.json's added_tokens and those transformers adds), token → id: transformers' get_added_vocab. */
  get_added_vocab(): Map<string, number> {
    const out = new Map<string, number>();
    for (const id of [...this.addedIds].sort((a, b) => a - b)) {
      const token = this.backend.id_to_token(id);
      if (token !== undefined) out.set(token, id);
    }
    return out;
  }

  /** Token ids of `text`; with add_special_tokens (default) what tokenizer.json's post-processor adds. */
  encode(text: string, { add_special_tokens = true }: EncodeOptions = {}): number[] {
    if (typeof text !== "string") throw new TypeError(`encode expects a string, got ${text === null ? "null" : typeof text}`);
    if (text === "" && !add_special_tokens) return [];
    return this.backend.encode(text, { add_special_tokens }).ids;
  }

  /** The tokens (strings) of `text`, without special tokens added. */
  tokenize(text: string, { add_special_tokens = false }: EncodeOptions = {}): string[] {
    return this.convert_ids_to_tokens(this.encode(text, { add_special_tokens })).map((t) => t ?? "");
  }

  /** The text of `ids`. */
  decode(ids: readonly number[], { skip_special_tokens = false, clean_up_tokenization_spaces }: DecodeOptions = {}): string {
    if (ids.length === 0) return "";
    for (const id of ids) {
      if (!Number.isInteger(id) || id < 0 || this.backend.id_to_token(id) === undefined) {
        throw new Error(`decode: ${id} is not a token id of ${this.name_or_path} (ids are integers 0..${this.length - 1})`);
      }
    }
    return this.backend.decode(ids as number[], { skip_special_tokens, clean_up_tokenization_spaces: clean_up_tokenization_spaces ?? this.cleanUp });
  }

  /** decode of each sequence. */
  batch_decode(sequences: readonly (readonly number[])[], options: DecodeOptions = {}): string[] {
    return sequences.map((ids) => this.decode(ids, options));
  }

  /** Token string → id; unknown tokens give unk_token_id (null when there is no unk token). */
  convert_tokens_to_ids(token: string): number | null;
  convert_tokens_to_ids(tokens: readonly string[]): (number | null)[];
  convert_tokens_to_ids(tokens: string | readonly string[]): number | null | (number | null)[] {
    const one = (t: string) => this.backend.token_to_id(t) ?? this.unk_token_id;
    return typeof tokens === "string" ? one(tokens) : tokens.map(one);
  }

  /** Id → token string (null for an id outside the vocabulary). */
  convert_ids_to_tokens(id: number): string | null;
  convert_ids_to_tokens(ids: readonly number[]): (string | null)[];
  convert_ids_to_tokens(ids: number | readonly number[]): string | null | (string | null)[] {
    const one = (id: number) => this.backend.id_to_token(id) ?? null;
    return typeof ids === "number" ? one(ids) : ids.map(one);
  }

  /**
   * The template to use, as transformers' get_chat_template: `chat_template` (a template, or the name of
   * one of several), else the tokenizer's ("tool_use" when there are tools and such a template, else
   * "default"). No template: an error saying where one would come from.
   */
  get_chat_template(chat_template?: string, tools?: unknown): string {
    const own = this.chat_template;
    if (own !== null && typeof own === "object") {
      if (chat_template !== undefined) return own[chat_template] ?? chat_template;
      if (tools && own.tool_use !== undefined) return own.tool_use;
      if (own.default !== undefined) return own.default;
      throw new Error(
        `${this.name_or_path} has several chat templates and none is named "default": pass one of ${Object.keys(own).sort().join(", ")} ` +
          `(or a template) as apply_chat_template's chat_template`,
      );
    }
    if (chat_template !== undefined) return chat_template;
    if (own !== null) return own;
    throw new Error(
      `${this.name_or_path} has no chat template (no chat_template in tokenizer_config.json, no chat_template.jinja or ` +
        `chat_template.json): pass one as apply_chat_template(messages, {chat_template}), load the model's instruct/chat ` +
        `variant, or format the text yourself. See ${CHAT_TEMPLATE_DOCS}`,
    );
  }

  /** Where a template came from, for messages: the file it was read from, else how it was given. */
  templateSource(template: string): string {
    const own = this.chat_template;
    const where = this.chat_template_source;
    if (own === template || (own && typeof own === "object" && Object.values(own).includes(template))) return where;
    return `${this.name_or_path} (a chat_template given in code or by chat_template_path)`;
  }

  private compile(template: string, original = template): Template {
    let t = this.templates.get(template);
    if (!t) {
      try {
        t = new Template(template);
      } catch (e) {
        throw new Error(`The chat template of ${this.templateSource(original)} does not parse: ${(e as Error).message}`);
      }
      this.templates.set(template, t);
    }
    return t;
  }

  /**
   * Renders `messages` with the chat template and finds its generation blocks. {% generation %} and
   * {% endgeneration %} (a transformers extension) are rewritten into blocks that print two marker
   * characters (unused anywhere in the inputs); the markers' positions in the output are the blocks'
   * character spans, and are then cut out. Block tags keep their whitespace control, so the text is
   * exactly what transformers renders.
   */
  render_chat(messages: readonly ChatMessage[], options: ChatTemplateOptions = {}): RenderedChat {
    const {
      add_generation_prompt = false,
      tools = null,
      documents = null,
      tokenize: _tokenize,
      return_dict: _returnDict,
      return_assistant_tokens_mask: _returnMask,
      chat_template,
      continue_final_message = false,
      ...kwargs
    } = options;
    if (!Array.isArray(messages) || messages.length === 0) {
      throw new Error("apply_chat_template needs a non-empty array of messages ({role, content})");
    }
    if (continue_final_message && add_generation_prompt) {
      throw new Error(
        "continue_final_message and add_generation_prompt are not compatible: continue_final_message ends the text inside the " +
          "final message, add_generation_prompt starts a new assistant message",
      );
    }
    const template = this.get_chat_template(chat_template, tools);

    // continue_final_message, as transformers: tag the end of the final message's text, cut the render there.
    const TAG = "CONTINUE_FINAL_MESSAGE_TAG ";
    let chat = messages;
    let finalText = "";
    if (continue_final_message) {
      const field = typeof continue_final_message === "string" ? continue_final_message : "content";
      const last = { ...messages[messages.length - 1] };
      const value = last[field];
      if (value === undefined || value === null) throw new Error(`continue_final_message is set but the final message has no "${field}" to continue`);
      if (!template.includes(field)) throw new Error(`continue_final_message is set to "${field}" but the chat template never reads that field`);
      if (typeof value === "string") {
        finalText = value;
        last[field] = value + TAG;
      } else if (Array.isArray(value)) {
        const blocks = value.map((b) => ({ ...(b as Record<string, unknown>) }));
        const block = [...blocks].reverse().find((b) => typeof b.text === "string");
        if (!block) throw new Error("continue_final_message is set but the final message has no text block to continue");
        finalText = block.text as string;
        block.text = finalText + TAG;
        last[field] = blocks;
      } else {
        throw new Error(`continue_final_message: the final message's "${field}" is neither text nor a list of content blocks`);
      }
      chat = [...messages.slice(0, -1), last];
    }

    const variables: Record<string, unknown> = {
      ...this.special_tokens_map,
      ...kwargs,
      messages: chat,
      tools,
      documents,
      add_generation_prompt,
    };
    const [open, close] = pickMarkers(template + safeJson(variables));
    const marked = template
      .replace(/\{%(-?)\s*generation\s*(-?)%\}/g, (_m, l: string, r: string) => `{%${l} if true %}${open}{% endif ${r}%}`)
      .replace(/\{%(-?)\s*endgeneration\s*(-?)%\}/g, (_m, l: string, r: string) => `{%${l} if true %}${close}{% endif ${r}%}`);
    const raw = renderBounded(this.compile(marked, template), variables, this.templateSource(template));

    let text = "";
    const spans: [number, number][] = [];
    let start = -1;
    for (const ch of raw) {
      if (ch === open) {
        if (start >= 0) throw new Error("The chat template opens a {% generation %} block inside another one");
        start = text.length;
      } else if (ch === close) {
        if (start < 0) throw new Error("The chat template closes a {% generation %} block it never opened");
        spans.push([start, text.length]);
        start = -1;
      } else {
        text += ch;
      }
    }

    if (continue_final_message) {
      const tagAt = text.lastIndexOf(TAG.trim());
      if (!text.includes(finalText.trim()) || tagAt < 0) {
        throw new Error(
          "continue_final_message is set but the final message does not appear in the rendered chat: the template changes " +
            `or drops part of it. Final message: ${finalText.trim()}\nRendered chat:\n${text}`,
        );
      }
      text = text.startsWith(TAG, tagAt) ? text.slice(0, tagAt) : text.slice(0, tagAt).trimEnd();
    }
    return { text, generation_spans: spans };
  }

  /**
   * transformers' apply_chat_template for one conversation: the rendered string (tokenize false), its ids
   * (encoded without adding special tokens: the template writes them), or with return_dict
   * {input_ids, attention_mask, assistant_masks?}. assistant_masks is 1 on every token from the one holding
   * a generation block's first character to the one holding its last (the assistant's content and its
   * end-of-turn token in TRL-style templates), 0 elsewhere. A template without {% generation %} blocks is
   * an error here (transformers warns and returns all zeros, which trains assistant-only loss on nothing).
   */
  apply_chat_template(messages: readonly ChatMessage[], options: ChatTemplateOptions & { tokenize: false }): string;
  apply_chat_template(messages: readonly ChatMessage[], options: ChatTemplateOptions & { return_dict: true }): ChatEncoding;
  apply_chat_template(messages: readonly ChatMessage[], options?: ChatTemplateOptions): number[];
  apply_chat_template(messages: readonly ChatMessage[], options: ChatTemplateOptions = {}): string | number[] | ChatEncoding {
    const tokenize = options.tokenize ?? true;
    const return_dict = tokenize && (options.return_dict ?? false);
    const wantMask = options.return_assistant_tokens_mask ?? false;
    if (wantMask && !return_dict) {
      throw new Error("return_assistant_tokens_mask needs tokenize: true and return_dict: true (the mask comes with the ids, in the dict)");
    }
    if (wantMask && options.continue_final_message) {
      throw new Error("continue_final_message is not compatible with return_assistant_tokens_mask");
    }
    if (wantMask) {
      const template = this.get_chat_template(options.chat_template, options.tools);
      if (!GENERATION_TAG.test(template)) {
        throw new Error(
          `return_assistant_tokens_mask needs a chat template that marks assistant text with {% generation %} … {% endgeneration %} ` +
            `blocks, and the template of ${this.name_or_path} has none: every mask would be 0, so assistant-only loss would train on ` +
            `nothing. Pass a template with generation blocks as chat_template (TRL ships some), or train on the whole text.`,
        );
      }
    }
    const { text, generation_spans } = this.render_chat(messages, options);
    if (!tokenize) return text;
    const input_ids = this.encode(text, { add_special_tokens: false });
    if (!return_dict) return input_ids;
    const out: ChatEncoding = { input_ids, attention_mask: new Array<number>(input_ids.length).fill(1) };
    if (wantMask) out.assistant_masks = this.spanMask(text, input_ids, generation_spans);
    return out;
  }

  /** 1 on the tokens from the one holding each span's first character to the one holding its last. */
  private spanMask(text: string, ids: number[], spans: [number, number][]): number[] {
    const mask = new Array<number>(ids.length).fill(0);
    const live = spans.filter(([s, e]) => e > s);
    if (live.length === 0) return mask;
    const offsets = this.byteOffsets(text, ids);
    for (const [s, e] of live) {
      let first: number;
      let last: number;
      if (offsets) {
        const bs = utf8.encode(text.slice(0, s)).length;
        const be = utf8.encode(text.slice(0, e)).length;
        first = -1;
        last = -1;
        for (let i = 0; i < ids.length; i++) {
          const [ts, te] = offsets[i];
          if (te > ts && ts < be && te > bs) {
            if (first < 0) first = i;
            last = i;
          }
        }
        if (first < 0) continue;
      } else {
        [first, last] = this.spanByPrefixes(text, ids, s, e);
      }
      for (let i = first; i <= last; i++) mask[i] = 1;
    }
    return mask;
  }

  /** The UTF-8 bytes each token stands for (null where that cannot be told from the token alone). */
  private tokenBytes(id: number): Uint8Array | null {
    if (!this.tokenBytesCache) this.tokenBytesCache = new Array<Uint8Array | null>(this.length);
    const cached = this.tokenBytesCache[id];
    if (cached !== undefined) return cached;
    const token = this.backend.id_to_token(id);
    let bytes: Uint8Array | null = null;
    if (token === undefined) {
      bytes = null;
    } else if (this.addedIds.has(id)) {
      bytes = utf8.encode(token);
    } else if (this.byteLevel) {
      const map = unicodeToBytes();
      const out: number[] = [];
      for (const ch of token) {
        const b = map.get(ch);
        if (b === undefined) {
          out.length = 0;
          bytes = null;
          break;
        }
        out.push(b);
      }
      if (out.length > 0 || token === "") bytes = Uint8Array.from(out);
    } else {
      const hex = /^<0x([0-9A-Fa-f]{2})>$/.exec(token);
      if (hex) bytes = Uint8Array.of(parseInt(hex[1], 16));
      else {
        let t = token.replaceAll("\u2581", " ");
        if (this.continuingPrefix && t.startsWith(this.continuingPrefix)) t = t.slice(this.continuingPrefix.length);
        bytes = utf8.encode(t);
      }
    }
    this.tokenBytesCache[id] = bytes;
    return bytes;
  }

  /**
   * [start, end) UTF-8 byte offsets of each token in `text`, by laying the tokens' bytes along the text's:
   * exact for byte-level BPE; SentencePiece-style prepended spaces and whitespace that pre-tokenizers drop
   * are allowed for. null when the tokens do not line up with the text (a normalizer changed it, unknown
   * tokens): the caller then finds the spans by encoding prefixes.
   */
  private byteOffsets(text: string, ids: number[]): [number, number][] | null {
    const t = utf8.encode(text);
    const isSpace = (b: number) => b === 0x20 || b === 0x09 || b === 0x0a || b === 0x0d || b === 0x0b || b === 0x0c;
    const matchAt = (at: number, b: Uint8Array, from: number) => {
      if (at + b.length - from > t.length) return false;
      for (let i = from; i < b.length; i++) if (t[at + i - from] !== b[i]) return false;
      return true;
    };
    const out: [number, number][] = [];
    let cur = 0;
    for (const id of ids) {
      const b = this.tokenBytes(id);
      if (b === null) return null;
      let placed = false;
      for (let at = cur; at <= t.length; at++) {
        if (at > cur && !isSpace(t[at - 1])) break;
        if (matchAt(at, b, 0)) {
          out.push([at, at + b.length]);
          cur = at + b.length;
          placed = true;
        } else if (b.length > 0 && b[0] === 0x20 && matchAt(at, b, 1)) {
          out.push([at, at + b.length - 1]);
          cur = at + b.length - 1;
          placed = true;
        }
        if (placed) break;
      }
      if (!placed) return null;
    }
    for (let i = cur; i < t.length; i++) if (!isSpace(t[i])) return null;
    return out;
  }

  /**
   * The first and last token of the span [s, e) of `text`, by encoding text[0, s) and text[0, e): the tokens
   * they share with the whole text's. Where a prefix's tokens are not a prefix of the whole's, the first
   * token that differs is the one straddling the boundary, and belongs to the span.
   */
  private spanByPrefixes(text: string, ids: number[], s: number, e: number): [number, number] {
    const common = (prefix: number[]) => {
      let n = 0;
      while (n < prefix.length && n < ids.length && prefix[n] === ids[n]) n++;
      return { n, exact: n === prefix.length };
    };
    const a = common(this.encode(text.slice(0, s), { add_special_tokens: false }));
    const b = common(this.encode(text.slice(0, e), { add_special_tokens: false }));
    const last = b.exact ? b.n - 1 : Math.min(b.n, ids.length - 1);
    return [a.n, last];
  }
}

/** The named chat templates of a list [{name, template}], or the one string. */
function templatesOf(value: unknown, where: string): ChatTemplates | null {
  if (value === undefined || value === null) return null;
  if (typeof value === "string") return value;
  if (Array.isArray(value)) {
    const out: Record<string, string> = {};
    for (const item of value) {
      if (!item || typeof item.name !== "string" || typeof item.template !== "string") {
        throw new Error(`${where}: chat_template is a list, so each entry must be {name, template} strings`);
      }
      out[item.name] = item.template;
    }
    return out;
  }
  throw new Error(`${where}: chat_template must be a string or a list of {name, template}`);
}

/** The files of a tokenizer, read from a ModelSource. */
async function readTokenizerFiles(source: ModelSource) {
  if (!(await source.exists("tokenizer.json"))) {
    const slow = [];
    for (const f of ["tokenizer.model", "vocab.json", "merges.txt", "vocab.txt"]) if (await source.exists(f)) slow.push(f);
    throw new Error(
      `No tokenizer.json in ${source.name}. A webtune tokenizer needs tokenizer.json (the fast-tokenizer file transformers ` +
        `saves), with tokenizer_config.json beside it for the special tokens and the chat template` +
        (slow.length
          ? `; ${slow.join(", ")} (slow-tokenizer files) are there but are not read: convert them once with transformers, ` +
            `AutoTokenizer.from_pretrained(dir).save_pretrained(dir), which writes tokenizer.json`
          : ""),
    );
  }
  const tokenizerJson = await source.json<unknown>("tokenizer.json");
  const optional = async <T>(file: string): Promise<T | null> => ((await source.exists(file)) ? source.json<T>(file) : null);
  const config = (await optional<TokenizerConfig>("tokenizer_config.json")) ?? {};
  if (typeof config !== "object" || Array.isArray(config)) throw new Error(`tokenizer_config.json in ${source.name} is not a JSON object`);
  const specialTokensMap = await optional<Record<string, unknown>>("special_tokens_map.json");

  // Chat template: chat_template.jinja, then chat_template.json, then tokenizer_config.json's.
  let chatTemplate: ChatTemplates | null = null;
  let chatTemplateSource: string;
  if (await source.exists("chat_template.jinja")) {
    chatTemplate = await source.text("chat_template.jinja");
    chatTemplateSource = `chat_template.jinja in ${source.name}`;
  } else if (await source.exists("chat_template.json")) {
    const file = await source.json<{ chat_template?: unknown }>("chat_template.json");
    chatTemplateSource = `chat_template.json in ${source.name}`;
    chatTemplate = templatesOf(file?.chat_template, chatTemplateSource);
  } else {
    chatTemplateSource = `tokenizer_config.json in ${source.name}`;
    chatTemplate = templatesOf(config.chat_template, chatTemplateSource);
  }
  return { tokenizerJson, config, specialTokensMap, chatTemplate, chatTemplateSource };
}

/** transformers' AutoTokenizer: the tokenizer of a model directory, URL, Hub id or browser files. */
export const AutoTokenizer = {
  /**
   * Reads tokenizer.json (required), tokenizer_config.json, special_tokens_map.json and chat_template.jinja /
   * chat_template.json from `location` (anything openSource takes). Options may override tokenizer_config.json
   * entries (special tokens, model_max_length, padding_side, chat_template), as from_pretrained kwargs do.
   */
  async from_pretrained(location: ModelLocation | URL | Blob, options: TokenizerOptions = {}): Promise<PreTrainedTokenizer> {
    const { chat_template, bos_token, eos_token, unk_token, pad_token, model_max_length, padding_side } = options;
    const overrides = Object.fromEntries(
      Object.entries({ bos_token, eos_token, unk_token, pad_token, model_max_length, padding_side }).filter(([, v]) => v !== undefined),
    );
    // A GGUF file (as the model's loader takes one): the tokenizer from its tokenizer.ggml.* metadata, with the
    // chat template of tokenizer.chat_template, as transformers' from_pretrained(…, gguf_file) builds it.
    const gguf = await openGGUFLocation(location, options);
    if (gguf) {
      const { tokenizer, config } = ggufTokenizer(await GGUFFile.open(gguf.bytes, gguf.name));
      return new PreTrainedTokenizer(tokenizer, { ...(config as TokenizerConfig), ...overrides }, {
        name: gguf.name,
        chat_template_source: chat_template !== undefined ? `${gguf.name} (from_pretrained's chat_template)` : `the GGUF metadata (tokenizer.chat_template) of ${gguf.name}`,
        ...(chat_template !== undefined ? { chat_template } : {}),
      });
    }
    const source = await openSource(location as ModelLocation, options);
    const { tokenizerJson, config, specialTokensMap, chatTemplate, chatTemplateSource } = await readTokenizerFiles(source);
    const merged: TokenizerConfig = { ...config, ...overrides };
    const special = specialTokensMap ? { ...specialTokensMap } : undefined;
    if (special) for (const k of Object.keys(overrides)) delete special[k];
    return new PreTrainedTokenizer(tokenizerJson, merged, {
      name: source.name,
      special_tokens_map: special,
      chat_template: chat_template ?? chatTemplate,
      chat_template_source: chat_template !== undefined ? `${source.name} (from_pretrained's chat_template)` : chatTemplateSource,
    });
  },
};
