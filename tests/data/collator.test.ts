// DataCollatorForLanguageModeling (src/data/collator.ts) against batches worked out by hand from the
// spec's "Collation" rules and TRL's docstring examples. No GPU. Runs under Node (node --import tsx
// --test) and Deno (deno test -A --no-check).
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { DataCollatorForLanguageModeling, type CollatorExample, type DataCollatorForLanguageModelingOptions } from "../../src/data/collator.ts";
import { pack_dataset } from "../../src/data/packing.ts";

describe("DataCollatorForLanguageModeling, padded", () => {
  test("TRL's docstring example: right padding, attention_mask, labels -100 over padding, position_ids", () => {
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
      position_ids: [
        [0, 1, 2],
        [0, 1, 0],
      ],
      labels: [
        [1, 2, 3],
        [4, 5, -100],
      ],
      num_tokens: 5,
      num_label_tokens: 3, // labels[1:] of each row: 2, 3 and 5
    });
    assert.deepEqual(Object.keys(batch), ["input_ids", "attention_mask", "position_ids", "labels", "num_tokens", "num_label_tokens"]);
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

  test("packed rows keep their padding: position_ids restart per sequence, no label across a boundary", () => {
    const c = new DataCollatorForLanguageModeling({ pad_token_id: 0 });
    const batch = c.collate([
      { input_ids: [1, 2, 3, 4], seq_lengths: [2, 2] },
      { input_ids: [5, 6, 7], labels: [5, -100, 7], seq_lengths: [1, 2] },
    ]);
    assert.deepEqual(batch.position_ids, [
      [0, 1, 0, 1],
      [0, 0, 1, 0],
    ]);
    assert.deepEqual(batch.labels, [
      [1, 2, -100, 4],
      [5, -100, 7, -100],
    ]);
    assert.equal(batch.num_tokens, 7);
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
