// TRL's DataCollatorForLanguageModeling (trl/trainer/sft_trainer.py): turns a list of prepared or packed
// examples into one batch of plain arrays. No GPU.
//
// - padding_free false: input_ids right-padded with pad_token_id, labels with -100, attention_mask 1 over
//   tokens and 0 over padding; every row as long as the longest, rounded up to pad_to_multiple_of. Labels
//   are kept as given, in packed rows (with seq_lengths) too: attention spans the whole row, as in TRL. With
//   return_position_ids (default false, as TRL), position_ids count 0..n-1 in each row (restarting at 0 at
//   every packed sequence of a row with seq_lengths), padding 0.
// - padding_free true: position_ids restart at 0 at each packed sequence (from seq_lengths, else 0..n-1
//   per example); all examples are concatenated into ONE row, padded to pad_to_multiple_of with pad id,
//   label -100 and position 0; labels where position_ids == 0 become -100 (no document predicts across a
//   boundary); no attention_mask — attention keeps every token inside its own sequence from the
//   position_ids restarts. position_ids are always returned here (they carry the boundaries).
// - labels: the example's labels, else its input_ids. Then, where the example has completion_mask and
//   completion_only_loss is on (default true), labels are -100 where the mask is 0; where it has
//   assistant_masks, labels are -100 where that mask is 0 (TRL 1.13 builds these labels in
//   _prepare_dataset and its collator ignores the masks; webtune's prepare does the same, so prepared rows
//   carry no masks and this only acts on examples given to the collator directly).
// - Keys in TRL's order: input_ids, labels, then position_ids and/or attention_mask.
// - num_tokens: the number of non-pad tokens in the batch (prompt included), TRL's `num_tokens` metric
//   (TRL counts a padding-free row's pad_to_multiple_of padding too; webtune does not);
//   num_label_tokens: the labels != -100 after the causal shift (what the loss averages over).
import { IGNORE_INDEX } from "../ops/cross_entropy.ts";
import { isNumericArray, type TokenColumn } from "./packing.ts";

/** An example for the collator: a prepared row or a packed row (with seq_lengths). */
export interface CollatorExample {
  input_ids: TokenColumn;
  labels?: TokenColumn;
  seq_lengths?: TokenColumn;
  completion_mask?: TokenColumn;
  assistant_masks?: TokenColumn;
  [key: string]: unknown;
}

export interface DataCollatorForLanguageModelingOptions {
  /** Id written into padded input_ids positions (required). */
  pad_token_id: number;
  /** Concatenate the batch into one row with position_ids restarts and no padding. Default false. */
  padding_free?: boolean;
  /** Round the padded length up to a multiple of this. Default null (no rounding). */
  pad_to_multiple_of?: number | null;
  /** Return position_ids in padded mode too (always returned when padding_free). Default false, as TRL. */
  return_position_ids?: boolean;
  /** Mask labels where an example's completion_mask is 0. Default true. */
  completion_only_loss?: boolean;
}

export interface CollatedBatch {
  input_ids: number[][];
  labels: number[][];
  /** Present when padding_free, or with return_position_ids. */
  position_ids?: number[][];
  /** 1 over tokens, 0 over padding; absent when padding_free. */
  attention_mask?: number[][];
  /** Non-pad tokens in the batch, prompt included (TRL's num_tokens metric counts these). */
  num_tokens: number;
  /** Labels other than -100 after the causal shift (labels[1:] of each row): the tokens the loss averages. */
  num_label_tokens: number;
}

function roundUp(n: number, m: number | null): number {
  return m ? Math.ceil(n / m) * m : n;
}

export class DataCollatorForLanguageModeling {
  readonly pad_token_id: number;
  readonly padding_free: boolean;
  readonly pad_to_multiple_of: number | null;
  readonly return_position_ids: boolean;
  readonly completion_only_loss: boolean;

  constructor(options: DataCollatorForLanguageModelingOptions) {
    if (options == null || typeof options !== "object") {
      throw new Error("DataCollatorForLanguageModeling: options with pad_token_id are required");
    }
    const { pad_token_id, padding_free = false, pad_to_multiple_of = null, return_position_ids = false, completion_only_loss = true } = options;
    if (pad_token_id == null) {
      throw new Error(
        "DataCollatorForLanguageModeling: pad_token_id is required (TRL uses the tokenizer's pad token, else its eos token)",
      );
    }
    if (!Number.isInteger(pad_token_id) || pad_token_id < 0) {
      throw new Error(`DataCollatorForLanguageModeling: pad_token_id must be a non-negative integer, got ${pad_token_id}`);
    }
    if (pad_to_multiple_of != null && (!Number.isInteger(pad_to_multiple_of) || pad_to_multiple_of < 1)) {
      throw new Error(`DataCollatorForLanguageModeling: pad_to_multiple_of must be a positive integer or null, got ${pad_to_multiple_of}`);
    }
    this.pad_token_id = pad_token_id;
    this.padding_free = padding_free;
    this.pad_to_multiple_of = pad_to_multiple_of;
    this.return_position_ids = return_position_ids;
    this.completion_only_loss = completion_only_loss;
  }

  /** Same as `collate` (Python's `__call__`). */
  call(examples: readonly CollatorExample[]): CollatedBatch {
    return this.collate(examples);
  }

  /** Same as `collate`. */
  __call__(examples: readonly CollatorExample[]): CollatedBatch {
    return this.collate(examples);
  }

  collate(examples: readonly CollatorExample[]): CollatedBatch {
    if (!Array.isArray(examples) || examples.length === 0) {
      throw new Error("DataCollatorForLanguageModeling: the batch is empty (expected a non-empty array of examples)");
    }
    const rows = examples.map((ex, i) => this.read(ex, i));
    const num_tokens = rows.reduce((a, r) => a + r.ids.length, 0);
    if (num_tokens === 0) throw new Error("DataCollatorForLanguageModeling: every example in the batch is empty (no tokens)");
    let ids = rows.map((r) => r.ids);
    let labels = rows.map((r) => r.labels);
    let pos = rows.map((r) => r.pos);
    if (this.padding_free) {
      ids = [ids.flat()];
      pos = [pos.flat()];
      // No sequence predicts the first token of the next one: labels -100 where a sequence starts.
      labels = [labels.flat().map((l, t) => (pos[0]![t] === 0 ? IGNORE_INDEX : l))];
    }
    const width = roundUp(Math.max(...ids.map((r) => r.length)), this.pad_to_multiple_of);
    const padded = (rs: number[][], v: number) => rs.map((r) => r.concat(new Array<number>(width - r.length).fill(v)));
    let num_label_tokens = 0;
    for (const row of labels) for (let t = 1; t < row.length; t++) if (row[t] !== IGNORE_INDEX) num_label_tokens++;
    // Keys in TRL's order: input_ids, labels, position_ids, attention_mask; then webtune's counts.
    const batch = { input_ids: padded(ids, this.pad_token_id), labels: padded(labels, IGNORE_INDEX) } as CollatedBatch;
    if (this.padding_free || this.return_position_ids) batch.position_ids = padded(pos, 0);
    if (!this.padding_free) batch.attention_mask = padded(ids.map((r) => r.map(() => 1)), 0);
    batch.num_tokens = num_tokens;
    batch.num_label_tokens = num_label_tokens;
    return batch;
  }

  /** One example's ids, masked labels and position ids, validated. */
  private read(ex: CollatorExample, i: number): { ids: number[]; labels: number[]; pos: number[] } {
    const where = `DataCollatorForLanguageModeling: example ${i}`;
    if (ex == null || typeof ex !== "object") throw new Error(`${where} is not an object`);
    if (!isNumericArray(ex.input_ids)) throw new Error(`${where}: input_ids must be an array of integers`);
    const ids = Array.from(ex.input_ids);
    for (const x of ids) if (!Number.isInteger(x)) throw new Error(`${where}: input_ids must be integers, got ${x}`);
    const n = ids.length;
    const column = (name: string): number[] | null => {
      const v = ex[name];
      if (v == null) return null;
      if (!isNumericArray(v)) throw new Error(`${where}: ${name} must be an array of numbers`);
      if (v.length !== n) throw new Error(`${where}: ${name} has ${v.length} values but input_ids has ${n}`);
      return Array.from(v);
    };
    const labels = column("labels") ?? ids.slice();
    const completion = this.completion_only_loss ? column("completion_mask") : null;
    const assistant = column("assistant_masks");
    for (let t = 0; t < n; t++) {
      if ((completion && completion[t] === 0) || (assistant && assistant[t] === 0)) labels[t] = IGNORE_INDEX;
    }
    let pos: number[];
    if (ex.seq_lengths != null) {
      if (!isNumericArray(ex.seq_lengths)) throw new Error(`${where}: seq_lengths must be an array of integers`);
      const lens = Array.from(ex.seq_lengths);
      let total = 0;
      for (const l of lens) {
        if (!Number.isInteger(l) || l < 1) throw new Error(`${where}: seq_lengths must be positive integers, got ${l}`);
        total += l;
      }
      if (total !== n) throw new Error(`${where}: seq_lengths sum to ${total} but input_ids has ${n} tokens`);
      pos = lens.flatMap((l) => Array.from({ length: l }, (_, k) => k));
    } else {
      pos = Array.from({ length: n }, (_, k) => k);
    }
    return { ids, labels, pos };
  }
}
