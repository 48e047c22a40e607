// DataCollatorForLanguageModeling (src/data/collator.ts) against batches worked out by hand from the
// spec's "Collation" rules and TRL's docstring examples, and against TRL 1.13's own collator as
// tools/fixtures/collator.py recorded it (tests/fixtures/data/trl_collator.json). No GPU. Runs under Node
// (node --import tsx --test) and Deno (deno test -A --no-check).
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { DataCollatorForLanguageModeling, type CollatorExample, type DataCollatorForLanguageModelingOptions } from "../../src/data/collator.ts";
import { pack_dataset, type PackedRow } from "../../src/data/packing.ts";

/** One batch as TRL made it: its keys in order, the tensors as nested lists, and the Trainer's two counts. */
interface TrlBatch {
  name: string;
  options: DataCollatorForLanguageModelingOptions;
  keys: string[];
  output: Record<string, number[][]>;
  num_items_in_batch: number;
  num_tokens: number;
}
const fx = JSON.parse(readFileSync(new URL("../fixtures/data/trl_collator.json", import.meta.url), "utf8")) as {
  trl_version: string;
  collate: (TrlBatch & { examples: CollatorExample[] })[];
  pack: (TrlBatch & { strategy: string; packed: PackedRow[] })[];
};

/** webtune's batch is TRL's: same keys in the same order, same values, num_label_tokens = num_items_in_batch. */
function assertTrlBatch(examples: readonly CollatorExample[], trl: TrlBatch): void {
  const batch = new DataCollatorForLanguageModeling(trl.options).collate(examples);
  const { num_tokens, num_label_tokens, ...tensors } = batch;
  assert.deepEqual(Object.keys(tensors), trl.keys);
  assert.deepEqual(tensors, trl.output);
  assert.equal(num_label_tokens, trl.num_items_in_batch);
  // TRL's num_tokens metric counts a padding-free row's pad_to_multiple_of padding (position_ids.size(1));
  // webtune's counts the examples' tokens only.
  const real = examples.reduce((a, ex) => a + ex.input_ids.length, 0);
  assert.equal(num_tokens, real);
  if (!(trl.options.padding_free && trl.options.pad_to_multiple_of)) assert.equal(num_tokens, trl.num_tokens);
}

describe(`DataCollatorForLanguageModeling = TRL ${fx.trl_version}'s`, () => {
  for (const c of fx.collate) test(c.name, () => assertTrlBatch(c.examples, c));
  for (const c of fx.pack) {
    // tests/data/packing.test.ts checks that webtune's pack_dataset makes these rows.
    test(`trl.pack_dataset "${c.strategy}" rows, collated as SFTTrainer collates them`, () => assertTrlBatch(c.packed, c));
  }
});

describe("DataCollatorForLanguageModeling, padded", () => {
  test("TRL's docstring example: right padding, attention_mask, labels -100 over padding, no position_ids", () => {
    const c = new DataCollatorForLanguageModeling({ pad_token_id: 0 });
    const batch = c.collate([{ input_ids: [1, 2, 3] }, { input_ids: [4, 5] }]);
    assert.deepEqual(batch, {
      input_ids: [
        [1, 2, 3],
        [4, 5, 0],
      ],
      attention_mask: [
        [1, 1, 1],
        [1, 1, 0],
      ],
      labels: [
        [1, 2, 3],
        [4, 5, -100],
      ],
      num_tokens: 5,
      num_label_tokens: 3, // labels[1:] of each row: 2, 3 and 5
    });
    assert.deepEqual(Object.keys(batch), ["input_ids", "labels", "attention_mask", "num_tokens", "num_label_tokens"]);
  });

  test("return_position_ids: position_ids 0..n-1 per row, padding 0", () => {
    const c = new DataCollatorForLanguageModeling({ pad_token_id: 0, return_position_ids: true });
    const batch = c.collate([{ input_ids: [1, 2, 3] }, { input_ids: [4, 5] }]);
    assert.deepEqual(batch.position_ids, [
      [0, 1, 2],
      [0, 1, 0],
    ]);
    assert.deepEqual(Object.keys(batch), ["input_ids", "labels", "position_ids", "attention_mask", "num_tokens", "num_label_tokens"]);
  });

  test("given labels, pad_to_multiple_of, return_position_ids false, a pad id that is a real token", () => {
    const c = new DataCollatorForLanguageModeling({ pad_token_id: 9, pad_to_multiple_of: 4, return_position_ids: false });
    const batch = c.collate([
      { input_ids: [1, 2, 3, 4, 5], labels: [-100, -100, 3, 4, 5] },
      { input_ids: [6, 9], labels: [-100, 9] },
    ]);
    assert.deepEqual(batch, {
      input_ids: [
        [1, 2, 3, 4, 5, 9, 9, 9],
        [6, 9, 9, 9, 9, 9, 9, 9],
      ],
      attention_mask: [
        [1, 1, 1, 1, 1, 0, 0, 0],
        [1, 1, 0, 0, 0, 0, 0, 0],
      ],
      labels: [
        [-100, -100, 3, 4, 5, -100, -100, -100],
        [-100, 9, -100, -100, -100, -100, -100, -100],
      ],
      num_tokens: 7,
      num_label_tokens: 4,
    });
    // Already a multiple: no extra padding.
    assert.deepEqual(c.collate([{ input_ids: [1, 2, 3, 4] }]).input_ids, [[1, 2, 3, 4]]);
  });

  test("completion_mask (with completion_only_loss, default on) and assistant_masks mask labels", () => {
    const examples = [
      { input_ids: [1, 2, 3, 4], completion_mask: [0, 0, 1, 1] },
      { input_ids: [5, 6, 7], assistant_masks: [0, 1, 0] },
    ];
    const on = new DataCollatorForLanguageModeling({ pad_token_id: 0 }).collate(examples);
    assert.deepEqual(on.labels, [
      [-100, -100, 3, 4],
      [-100, 6, -100, -100],
    ]);
    assert.equal(on.num_label_tokens, 3);
    const off = new DataCollatorForLanguageModeling({ pad_token_id: 0, completion_only_loss: false }).collate(examples);
    assert.deepEqual(off.labels, [
      [1, 2, 3, 4],
      [-100, 6, -100, -100],
    ]);
  });

  test("packed rows keep their padding: labels as given (as TRL), position_ids restart per sequence", () => {
    const examples = [
      { input_ids: [1, 2, 3, 4], seq_lengths: [2, 2] },
      { input_ids: [5, 6, 7], labels: [5, -100, 7], seq_lengths: [1, 2] },
    ];
    const batch = new DataCollatorForLanguageModeling({ pad_token_id: 0, return_position_ids: true }).collate(examples);
    assert.deepEqual(batch.position_ids, [
      [0, 1, 0, 1],
      [0, 0, 1, 0],
    ]);
    assert.deepEqual(batch.labels, [
      [1, 2, 3, 4],
      [5, -100, 7, -100],
    ]);
    assert.equal(batch.num_tokens, 7);
    assert.equal(batch.num_label_tokens, 4);
    assert.ok(!("position_ids" in new DataCollatorForLanguageModeling({ pad_token_id: 0 }).collate(examples)));
  });
});

describe("DataCollatorForLanguageModeling, padding_free", () => {
  test("TRL's docstring example: one row, position_ids restart, labels -100 at every sequence start", () => {
    const c = new DataCollatorForLanguageModeling({ pad_token_id: 0, padding_free: true });
    const batch = c.collate([{ input_ids: [1, 2, 3] }, { input_ids: [4, 5] }]);
    assert.deepEqual(batch, {
      input_ids: [[1, 2, 3, 4, 5]],
      position_ids: [[0, 1, 2, 0, 1]],
      labels: [[-100, 2, 3, -100, 5]],
      num_tokens: 5,
      num_label_tokens: 3,
    });
    assert.ok(!("attention_mask" in batch));
  });

  test("packed rows from seq_lengths, pad_to_multiple_of pads with pad id, label -100, position 0", () => {
    const c = new DataCollatorForLanguageModeling({ pad_token_id: 7, padding_free: true, pad_to_multiple_of: 4, return_position_ids: false });
    const batch = c.collate([
      { input_ids: [1, 2, 3], labels: [1, 2, -100], seq_lengths: [2, 1] },
      { input_ids: [4, 5], labels: [-100, 5] },
    ]);
    assert.deepEqual(batch, {
      input_ids: [[1, 2, 3, 4, 5, 7, 7, 7]],
      position_ids: [[0, 1, 0, 0, 1, 0, 0, 0]], // always returned padding-free: they carry the boundaries
      labels: [[-100, 2, -100, -100, 5, -100, -100, -100]],
      num_tokens: 5, // padding not counted
      num_label_tokens: 2,
    });
  });

  test("pack_dataset → collator: bfd rows collated padding-free keep every sequence apart", () => {
    const rows = [
      { input_ids: [10, 11, 12], labels: [-100, 11, 12] },
      { input_ids: [20, 21, 22, 23, 24] },
      { input_ids: [30, 31] },
    ];
    const packed = pack_dataset(rows, 5);
    // sorted 5(r1) 3(r0) 2(r2): r1 fills A; r0 opens B (space 2); r2 → B.
    assert.deepEqual(
      packed.map((r) => r.seq_lengths),
      [[5], [3, 2]],
    );
    const batch = new DataCollatorForLanguageModeling({ pad_token_id: 0, padding_free: true }).call(packed);
    assert.deepEqual(batch.input_ids, [[20, 21, 22, 23, 24, 10, 11, 12, 30, 31]]);
    assert.deepEqual(batch.position_ids, [[0, 1, 2, 3, 4, 0, 1, 2, 0, 1]]);
    assert.deepEqual(batch.labels, [[-100, 21, 22, 23, 24, -100, 11, 12, -100, 31]]);
    assert.equal(batch.num_tokens, 10);
    assert.equal(batch.num_label_tokens, 7);
    assert.deepEqual(new DataCollatorForLanguageModeling({ pad_token_id: 0, padding_free: true }).__call__(packed), batch);
  });

  test("wrapped rows (no seq_lengths) restart only at each row", () => {
    const packed = pack_dataset([{ input_ids: [1, 2, 3] }, { input_ids: [4, 5, 6] }], 4, "wrapped");
    const batch = new DataCollatorForLanguageModeling({ pad_token_id: 0, padding_free: true }).collate(packed);
    assert.deepEqual(batch.position_ids, [[0, 1, 2, 3, 0, 1]]);
    assert.deepEqual(batch.labels, [[-100, 2, 3, 4, -100, 6]]);
  });
});

describe("DataCollatorForLanguageModeling, errors", () => {
  test("options", () => {
    assert.throws(() => new DataCollatorForLanguageModeling({} as DataCollatorForLanguageModelingOptions), /pad_token_id is required/);
    assert.throws(
      () => new DataCollatorForLanguageModeling({ pad_token_id: null } as unknown as DataCollatorForLanguageModelingOptions),
      /pad_token_id is required/,
    );
    assert.throws(() => new DataCollatorForLanguageModeling({ pad_token_id: -1 }), /pad_token_id must be a non-negative integer/);
    assert.throws(() => new DataCollatorForLanguageModeling({ pad_token_id: 0, pad_to_multiple_of: 0 }), /pad_to_multiple_of must be a positive integer/);
    assert.throws(() => new DataCollatorForLanguageModeling(undefined as unknown as DataCollatorForLanguageModelingOptions), /pad_token_id are required/);
  });

  test("batches", () => {
    const c = new DataCollatorForLanguageModeling({ pad_token_id: 0 });
    assert.throws(() => c.collate([]), /the batch is empty/);
    assert.throws(() => c.collate([{ input_ids: [1, 2] }, { input_ids: [1, 2], labels: [1] }]), /example 1: labels has 1 values but input_ids has 2/);
    assert.throws(() => c.collate([{ input_ids: [1, 2], completion_mask: [1] }]), /example 0: completion_mask has 1 values/);
    assert.throws(() => c.collate([{ input_ids: [1, 2, 3], seq_lengths: [2, 2] }]), /seq_lengths sum to 4 but input_ids has 3 tokens/);
    assert.throws(() => c.collate([{ input_ids: [1, 2], seq_lengths: [2, 0] }]), /seq_lengths must be positive integers/);
    assert.throws(() => c.collate([{ input_ids: [1, 0.5] }]), /input_ids must be integers/);
    assert.throws(() => c.collate([{ labels: [1] } as unknown as CollatorExample]), /example 0: input_ids must be an array/);
    assert.throws(() => c.collate([{ input_ids: [] }]), /every example in the batch is empty/);
  });
});
