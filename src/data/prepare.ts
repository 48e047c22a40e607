// TRL's SFTTrainer._prepare_dataset (TRL 1.13, trl/trainer/sft_trainer.py), streamed one row at a time:
//
//   1. formatting_func(row) → text (the row becomes a plain-text row); pre-tokenized rows ignore it, as TRL does;
//   2. {conversations: [{from, value}]} → {messages: [{role, content}]} (maybe_convert_to_chatml);
//   3. non-conversational rows: eos_token appended to the text, or to the completion, unless already there;
//   4. tokenize: plain text with the tokenizer's own special tokens (BOS where its post-processor adds one);
//      conversations with the chat template (which writes its own special tokens), tools and
//      chat_template_kwargs passed to it; string prompt-completion: prompt ids = encode(prompt), ids =
//      encode(prompt + completion), completion_mask 0 over the prompt's ids; conversational prompt-completion:
//      prompt ids = template(prompt, add_generation_prompt true), ids = template(prompt + completion);
//   5. labels: an existing labels column as is; else each token keeps its id where every applicable mask is 1
//      (assistant_masks whenever the tokenizer produced them, i.e. under assistant_only_loss, or a pre-tokenized
//      row has them; completion_mask only when completion_only_loss), -100 elsewhere;
//   6. without packing: truncate input_ids and labels to max_length (truncation_mode "keep_start" keeps the
//      first tokens, "keep_end" the last) and drop examples left with every label -100, counting them;
//   7. packing is packing.ts's, on this output (untruncated, undropped).
//
// assistant_only_loss with a chat template that has no {% generation %} markers: the training template TRL swaps in
// for the templates models ship (chat_templates.ts), chosen when the PreparedDataset is made (before any row is read),
// used for every chat rendering of the pass (prompt ids too, as TRL passes it to each apply_chat_template call); an
// unknown template is an error then, and TRL's warning comes when the assistant's end-of-turn token is not masked.
//
// completion_only_loss null means true when the dataset's FIRST row has both prompt and completion (TRL reads
// the raw first row). Where webtune does better than TRL, it says so: a text that already starts with the BOS
// the tokenizer adds gets one BOS, not two; assistant_only_loss on a row that is not conversational, or an
// example whose assistant mask is all 0, is an error naming the row.
import { loadDataset, type Dataset, type DatasetSource, type Row } from "./sources.ts";
import { maybe_convert_to_chatml, parseRow, remove_none_values, rowName, type ParsedRow } from "./formats.ts";
import type { PreTrainedTokenizer } from "./tokenizer.ts";
import { resolve_assistant_only_chat_template } from "./chat_templates.ts";

/** One prepared example: token ids and labels (-100 where no loss is taken), the same length. */
export interface PreparedExample {
  input_ids: number[];
  labels: number[];
}

export type TruncationMode = "keep_start" | "keep_end";

export interface PrepareOptions {
  /** The text field of language-modeling rows (default "text"). */
  dataset_text_field?: string;
  /** Truncate to this many tokens without packing (default 1024; null: no truncation). */
  max_length?: number | null;
  /** "keep_start" (default) keeps the first max_length tokens, "keep_end" the last. */
  truncation_mode?: TruncationMode;
  /** Loss on the completion only for prompt-completion rows (default null: true when the first row has prompt and completion). */
  completion_only_loss?: boolean | null;
  /** Loss on the assistant's tokens only ({% generation %} blocks of the chat template); default false. */
  assistant_only_loss?: boolean;
  /** The end-of-sequence token appended to non-conversational rows (default the tokenizer's eos_token); must be in the vocabulary. */
  eos_token?: string | null;
  /** Turns each row into the text to train on. */
  formatting_func?: ((row: Row) => string) | null;
  /** Packing follows (packing.ts): no truncation and no dropping here. Default false. */
  packing?: boolean;
  /** Where warnings go (default console.warn). */
  warn?: (message: string) => void;
}

/** Counts of the latest pass (reset when a pass starts). */
export interface PrepareStats {
  /** Rows read from the dataset. */
  rows: number;
  /** Examples yielded. */
  examples: number;
  /** Examples dropped because every label was -100 after truncation. */
  dropped: number;
  /** Examples cut to max_length. */
  truncated: number;
  /** Whether the pass read the whole dataset. */
  done: boolean;
}

/** TRL's rule for completion_only_loss null: true when the first row has both prompt and completion. */
export function resolve_completion_only_loss(option: boolean | null | undefined, firstRow: Row | undefined): boolean {
  if (option !== null && option !== undefined) return option;
  return !!firstRow && "prompt" in firstRow && "completion" in firstRow;
}

/** The settings one example is tokenized with (prepareDataset resolves them once). */
export interface ExampleSettings {
  dataset_text_field: string;
  completion_only_loss: boolean;
  assistant_only_loss: boolean;
  /** The eos token to append to non-conversational rows (null: the tokenizer has none and none was given). */
  eos_token: string | null;
  formatting_func: ((row: Row) => string) | null;
  warn: (message: string) => void;
  /** The chat template to render with instead of the tokenizer's (the training template of assistant_only_loss); null or absent: the tokenizer's. */
  chat_template?: string | null;
}

/** Steps 1-5 for one row: the example's input_ids and labels, untruncated. `index` names the row in errors. */
export function tokenize_example(row: Row, index: number, tokenizer: PreTrainedTokenizer, s: ExampleSettings): PreparedExample {
  const name = rowName(index, row);
  let r = remove_none_values(row);

  // 1. formatting_func (ignored, with a warning, for pre-tokenized rows, as TRL does).
  if (s.formatting_func && !("input_ids" in r)) {
    let text: unknown;
    try {
      text = s.formatting_func(row);
    } catch (e) {
      throw new Error(`formatting_func failed on ${name}: ${(e as Error).message}`, { cause: e });
    }
    if (typeof text !== "string") {
      throw new Error(`formatting_func must return a string for each row; on ${name} it returned ${Array.isArray(text) ? "an array (batched formatting functions are not supported: return one string per row)" : typeof text}`);
    }
    r = { [s.dataset_text_field]: text };
  }

  // 2. from/value → role/content.
  if (Array.isArray(r.conversations)) r = maybe_convert_to_chatml(r);

  const parsed = parseRow(r, name, s.dataset_text_field);
  if (s.assistant_only_loss && !(parsed.format === "messages" || parsed.format === "conversational_prompt_completion" || (parsed.format === "pretokenized" && parsed.assistant_masks))) {
    throw new Error(
      `assistant_only_loss is true but ${name} is ${parsed.format === "pretokenized" ? "pre-tokenized without assistant_masks" : `not conversational (${parsed.format.replace("_", "-")})`}: ` +
        `assistant-only loss needs chat messages (messages, conversations, or prompt/completion message lists), whose assistant turns the chat template marks`,
    );
  }

  // 3. eos for non-conversational rows.
  const eos = (): string => {
    if (s.eos_token === null) throw new Error(`${name} is plain text and needs an eos_token appended, but the tokenizer has none: pass eos_token`);
    return s.eos_token;
  };

  // 4. tokenize, 5. labels.
  let ids: number[];
  let assistant_masks: number[] | undefined;
  let completion_mask: number[] | undefined;
  let labels: number[] | undefined;
  switch (parsed.format) {
    case "pretokenized":
      ({ input_ids: ids, labels, assistant_masks, completion_mask } = parsed);
      ids = [...ids];
      break;
    case "text": {
      const e = eos();
      const text = parsed.text.endsWith(e) ? parsed.text : parsed.text + e;
      ids = encodeText(tokenizer, text);
      break;
    }
    case "prompt_completion": {
      const e = eos();
      const completion = parsed.completion.endsWith(e) ? parsed.completion : parsed.completion + e;
      const promptIds = encodeText(tokenizer, parsed.prompt);
      ids = encodeText(tokenizer, parsed.prompt + completion);
      checkPrefix(promptIds, ids, name, s.warn);
      completion_mask = ids.map((_, i) => (i < promptIds.length ? 0 : 1));
      break;
    }
    case "messages": {
      const out = chat(tokenizer, parsed.messages, parsed, s, name);
      ids = out.input_ids;
      assistant_masks = out.assistant_masks;
      break;
    }
    case "conversational_prompt_completion": {
      const promptIds = chatIds(tokenizer, parsed.prompt, { ...templateOption(s), ...parsed.kwargs, tools: parsed.tools, add_generation_prompt: true }, name);
      const out = chat(tokenizer, [...parsed.prompt, ...parsed.completion], parsed, s, name);
      ids = out.input_ids;
      assistant_masks = out.assistant_masks;
      checkPrefix(promptIds, ids, name, s.warn);
      completion_mask = ids.map((_, i) => (i < promptIds.length ? 0 : 1));
      break;
    }
  }
  if (s.assistant_only_loss && assistant_masks && !assistant_masks.includes(1)) {
    throw new Error(
      `assistant_only_loss is true but ${name} has no assistant token: its assistant mask is all 0 (no assistant message, or ` +
        `the chat template's {% generation %} blocks cover none of it), so it would train on nothing`,
    );
  }
  if (labels) return { input_ids: ids, labels: [...labels] };
  const masks: number[][] = [];
  if (s.completion_only_loss && completion_mask) masks.push(completion_mask);
  if (assistant_masks) masks.push(assistant_masks);
  return { input_ids: ids, labels: ids.map((id, t) => (masks.every((m) => m[t] === 1) ? id : -100)) };
}

/** encode() with the tokenizer's special tokens, without a second BOS when the text already starts with it. */
function encodeText(tokenizer: PreTrainedTokenizer, text: string): number[] {
  const ids = tokenizer.encode(text);
  const bos = tokenizer.bos_token;
  const bosId = tokenizer.bos_token_id;
  if (bos && bosId !== null && ids.length >= 2 && ids[0] === bosId && ids[1] === bosId && text.startsWith(bos) && !text.startsWith(bos + bos)) {
    return ids.slice(1);
  }
  return ids;
}

function chatIds(tokenizer: PreTrainedTokenizer, messages: ParsedRowMessages, options: Record<string, unknown>, name: string): number[] {
  try {
    return tokenizer.apply_chat_template(messages, options);
  } catch (e) {
    throw new Error(`${name}: ${(e as Error).message}`, { cause: e });
  }
}

type ParsedRowMessages = Extract<ParsedRow, { format: "messages" }>["messages"];

/** The chat_template option of the settings' template, if any (a row's chat_template_kwargs come after it, as in TRL). */
function templateOption(s: ExampleSettings): { chat_template?: string } {
  return s.chat_template ? { chat_template: s.chat_template } : {};
}

function chat(
  tokenizer: PreTrainedTokenizer,
  messages: ParsedRowMessages,
  row: { tools: Extract<ParsedRow, { format: "messages" }>["tools"]; kwargs: Record<string, unknown> },
  s: ExampleSettings,
  name: string,
) {
  try {
    return tokenizer.apply_chat_template(messages, {
      ...templateOption(s),
      ...row.kwargs,
      tools: row.tools,
      return_dict: true,
      return_assistant_tokens_mask: s.assistant_only_loss,
    });
  } catch (e) {
    throw new Error(`${name}: ${(e as Error).message}`, { cause: e });
  }
}

/** TRL's warning when the prompt's ids are not the start of the whole example's. */
function checkPrefix(promptIds: number[], ids: number[], name: string, warn: (m: string) => void): void {
  if (promptIds.length > ids.length || promptIds.some((id, i) => ids[i] !== id)) {
    warn(
      `${name}: mismatch between the tokenized prompt and the start of the tokenized prompt + completion (tokenizer ` +
        `merges across the boundary, whitespace, or special tokens); the completion mask starts after ${promptIds.length} tokens as TRL's does`,
    );
  }
}

/** Cuts an example to max_length: its first tokens ("keep_start") or its last ("keep_end"). */
function truncateExample<T extends PreparedExample>(ex: T, max_length: number, mode: TruncationMode): T {
  if (ex.input_ids.length <= max_length) return ex;
  const cut = (a: number[]) => (mode === "keep_start" ? a.slice(0, max_length) : a.slice(a.length - max_length));
  return { ...ex, input_ids: cut(ex.input_ids), labels: cut(ex.labels) };
}

function checkTruncation(max_length: number, mode: string): void {
  if (!Number.isSafeInteger(max_length) || max_length < 1) throw new Error(`max_length must be a positive integer or null, got ${max_length}`);
  if (mode !== "keep_start" && mode !== "keep_end") throw new Error(`Unsupported truncation_mode "${mode}": expected "keep_start" or "keep_end"`);
}

/**
 * TRL's truncate_dataset: every example cut to max_length tokens (input_ids and labels alike). Arrays give an
 * array; (async) iterables give an async iterable. Dropping fully masked examples is prepareDataset's, not this.
 */
export function truncate_dataset<T extends PreparedExample>(rows: readonly T[], max_length: number, truncation_mode?: TruncationMode): T[];
export function truncate_dataset<T extends PreparedExample>(rows: Iterable<T> | AsyncIterable<T>, max_length: number, truncation_mode?: TruncationMode): AsyncIterable<T>;
export function truncate_dataset<T extends PreparedExample>(
  rows: readonly T[] | Iterable<T> | AsyncIterable<T>,
  max_length: number,
  truncation_mode: TruncationMode = "keep_start",
): T[] | AsyncIterable<T> {
  checkTruncation(max_length, truncation_mode);
  if (Array.isArray(rows)) return (rows as readonly T[]).map((r) => truncateExample(r, max_length, truncation_mode));
  return {
    async *[Symbol.asyncIterator]() {
      for await (const r of rows as AsyncIterable<T>) yield truncateExample(r, max_length, truncation_mode);
    },
  };
}

/** Whether an example has at least one label other than -100 (TRL's filter after truncation). */
export function has_trainable_token(ex: PreparedExample): boolean {
  return ex.labels.some((l) => l !== -100);
}

/** prepareDataset's output: async-iterable (one pass per epoch), with the counts of the latest pass. */
export class PreparedDataset implements AsyncIterable<PreparedExample> {
  /** Counts of the latest (or current) pass: rows read, examples yielded, dropped, truncated. */
  readonly stats: PrepareStats = { rows: 0, examples: 0, dropped: 0, truncated: 0, done: false };
  private resolved: Promise<ExampleSettings> | null = null;
  /** The chat template every chat rendering uses: the training template under assistant_only_loss, else null (the tokenizer's). */
  readonly chat_template: string | null = null;

  constructor(
    /** The rows prepared. */
    readonly dataset: Dataset,
    readonly tokenizer: PreTrainedTokenizer,
    readonly options: PrepareOptions = {},
    private readonly skipExamples = 0,
  ) {
    const o = options;
    if (o.formatting_func && o.completion_only_loss === true) throw formattingConflict();
    if (o.max_length !== null && o.max_length !== undefined && !o.packing) checkTruncation(o.max_length, o.truncation_mode ?? "keep_start");
    else if (o.truncation_mode !== undefined && o.truncation_mode !== "keep_start" && o.truncation_mode !== "keep_end") checkTruncation(1, o.truncation_mode);
    if (o.eos_token !== null && o.eos_token !== undefined && tokenizer.convert_tokens_to_ids(o.eos_token) === null) {
      throw new Error(`The eos_token "${o.eos_token}" is not in the vocabulary of the tokenizer of ${tokenizer.name_or_path}: it must be a token the model knows`);
    }
    // TRL's SFTTrainer.__init__: the training template for assistant-only loss, or the error, before any row is read.
    if (o.assistant_only_loss && tokenizer.chat_template !== null) {
      this.chat_template = resolve_assistant_only_chat_template(tokenizer, o.warn ?? ((m: string) => console.warn(m)));
    }
  }

  /** The settings of every example, with completion_only_loss resolved from the dataset's first row. */
  settings(): Promise<ExampleSettings> {
    return (this.resolved ??= (async () => {
      const o = this.options;
      let completion_only_loss = o.completion_only_loss ?? null;
      if (completion_only_loss === null) completion_only_loss = resolve_completion_only_loss(null, await this.dataset.first());
      if (completion_only_loss && o.formatting_func) throw formattingConflict();
      return {
        dataset_text_field: o.dataset_text_field ?? "text",
        completion_only_loss,
        assistant_only_loss: o.assistant_only_loss ?? false,
        eos_token: o.eos_token ?? this.tokenizer.eos_token,
        formatting_func: o.formatting_func ?? null,
        warn: o.warn ?? ((m: string) => console.warn(m)),
        chat_template: this.chat_template,
      };
    })().catch((e) => {
      this.resolved = null; // a failed read of the first row is retried on the next pass
      throw e;
    }));
  }

  /** The examples after the first `n` (for resuming): a pass that prepares and drops them. */
  skip(n: number): PreparedDataset {
    if (!Number.isSafeInteger(n) || n < 0) throw new Error(`PreparedDataset.skip: n must be a non-negative integer, got ${n}`);
    const next = new PreparedDataset(this.dataset, this.tokenizer, this.options, this.skipExamples + n);
    next.resolved = this.resolved;
    return next;
  }

  async *[Symbol.asyncIterator](): AsyncIterator<PreparedExample> {
    const s = await this.settings();
    const stats = this.stats;
    Object.assign(stats, { rows: 0, examples: 0, dropped: 0, truncated: 0, done: false });
    const o = this.options;
    const max_length = o.packing ? null : (o.max_length === undefined ? 1024 : o.max_length);
    const mode = o.truncation_mode ?? "keep_start";
    let warnedIgnored = false;
    let toSkip = this.skipExamples;
    let index = 0;
    for await (const row of this.dataset) {
      const i = index++;
      stats.rows++;
      if (s.formatting_func && "input_ids" in row && !warnedIgnored) {
        warnedIgnored = true;
        s.warn(`${rowName(i, row)} is already tokenized (it has input_ids), so formatting_func is ignored for it, as TRL ignores it`);
      }
      let ex = tokenize_example(row, i, this.tokenizer, s);
      if (max_length !== null) {
        if (ex.input_ids.length > max_length) {
          ex = truncateExample(ex, max_length, mode);
          stats.truncated++;
        }
        if (!has_trainable_token(ex)) {
          stats.dropped++;
          continue;
        }
      }
      if (toSkip > 0) {
        toSkip--;
        continue;
      }
      stats.examples++;
      yield ex;
    }
    stats.done = true;
  }

  /** All examples in an array (small datasets and tests). */
  async toArray(): Promise<PreparedExample[]> {
    const out: PreparedExample[] = [];
    for await (const ex of this) out.push(ex);
    return out;
  }
}

function formattingConflict(): Error {
  return new Error(
    "A formatting function was provided while completion_only_loss is true, which is incompatible: the formatting function " +
      "turns each row into plain text, so there is no completion to restrict the loss to (completion_only_loss null becomes " +
      "true when the first row has prompt and completion). Apply the formatting yourself before preparing, or set completion_only_loss: false.",
  );
}

/**
 * The dataset's rows (anything loadDataset takes) tokenized into {input_ids, labels}, streamed; see the top of
 * this file for the steps. `stats` counts the latest pass, e.g. `stats.dropped` examples with no trainable token
 * after truncation.
 */
export function prepareDataset(dataset: DatasetSource, tokenizer: PreTrainedTokenizer, options: PrepareOptions = {}): PreparedDataset {
  return new PreparedDataset(loadDataset(dataset), tokenizer, options);
}
