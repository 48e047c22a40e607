// Packing (src/data/packing.ts) against rows worked out by hand from the spec's rules and TRL's own
// docstring examples (trl/data_utils.py, pack_dataset / pack_examples), against TRL 1.13's pack_dataset as
// tools/fixtures/collator.py recorded it (tests/fixtures/data/trl_collator.json), a brute-force best-fit
// reference on random inputs, and the streaming packer against pack_dataset. No GPU. Runs under Node
// (node --import tsx --test) and Deno (deno test -A --no-check).
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { DEFAULT_PACKING_WINDOW, pack_dataset, packStream, type PackedRow, type PackInputRow, type PackingStrategy } from "../../src/data/packing.ts";

const trl = JSON.parse(readFileSync(new URL("../fixtures/data/trl_collator.json", import.meta.url), "utf8")) as {
  trl_version: string;
  pack: { rows: PackInputRow[]; seq_length: number; strategy: PackingStrategy; packed: PackedRow[] }[];
};

describe(`pack_dataset = TRL ${trl.trl_version}'s`, () => {
  for (const c of trl.pack) {
    test(`"${c.strategy}", seq_length ${c.seq_length}: the same rows, in the same order; packStream too`, async () => {
      assert.deepEqual(pack_dataset(c.rows, c.seq_length, c.strategy), c.packed);
      assert.deepEqual(await collect(packStream(c.rows, c.seq_length, c.strategy)), c.packed);
    });
  }
});

/** Row i made of tokens i*100, i*100+1, … so a packed row shows which rows it holds. */
function rowsOfLengths(lengths: number[]): PackInputRow[] {
  return lengths.map((n, i) => ({ input_ids: Array.from({ length: n }, (_, k) => i * 100 + k) }));
}
/** The source rows each packed row holds, in order. */
function members(rows: PackedRow[]): number[][] {
  return rows.map((r) => [...new Set(r.input_ids.map((t) => Math.floor(t / 100)))]);
}
async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

/** Best fit decreasing by brute force: scans every bin; equal spaces → the bin that has had that space longest. */
function referenceBins(lengths: number[], L: number): number[][] {
  const order = lengths.map((_, i) => i).sort((a, b) => lengths[b]! - lengths[a]!);
  const bins: { ids: number[]; space: number; since: number }[] = [];
  let clock = 0;
  for (const i of order) {
    const len = lengths[i]!;
    let best = -1;
    for (let b = 0; b < bins.length; b++) {
      const c = bins[b]!;
      if (c.space < len) continue;
      const o = best < 0 ? null : bins[best]!;
      if (!o || c.space < o.space || (c.space === o.space && c.since < o.since)) best = b;
    }
    if (best < 0) bins.push({ ids: [i], space: L - len, since: clock++ });
    else {
      const b = bins[best]!;
      b.ids.push(i);
      b.space -= len;
      b.since = clock++;
    }
  }
  return bins.map((b) => b.ids);
}

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

describe("pack_dataset bfd", () => {
  test("TRL's docstring example: truncation, best fit, seq_lengths, other per-token columns aligned", () => {
    const rows = [
      { input_ids: [1, 2, 3, 4, 5], attention_mask: [1, 1, 1, 0, 0] },
      { input_ids: [6, 7], attention_mask: [1, 0] },
      { input_ids: [8, 9, 10], attention_mask: [1, 1, 0] },
      { input_ids: [11], attention_mask: [1] },
    ];
    assert.deepEqual(pack_dataset(rows, 4), [
      { input_ids: [1, 2, 3, 4], labels: [1, 2, 3, 4], attention_mask: [1, 1, 1, 0], seq_lengths: [4] },
      { input_ids: [8, 9, 10, 11], labels: [8, 9, 10, 11], attention_mask: [1, 1, 0, 1], seq_lengths: [3, 1] },
      { input_ids: [6, 7], labels: [6, 7], attention_mask: [1, 0], seq_lengths: [2] },
    ]);
  });

  test("best fit, not first fit: the tightest bin takes the sequence", () => {
    // L=7, lengths 5,1,3,3 → sorted 5(r0) 3(r2) 3(r3) 1(r1): r0 opens A (space 2); r2 opens B (space 4);
    // r3 → B (A's 2 is too small; space 1); r1 → smallest space ≥ 1 is B's 1, not A's 2 (first fit: A).
    const out = pack_dataset(rowsOfLengths([5, 1, 3, 3]), 7);
    assert.deepEqual(members(out), [[0], [2, 3, 1]]);
    assert.deepEqual(out[1]!.input_ids, [200, 201, 202, 300, 301, 302, 100]);
    assert.deepEqual(out.map((r) => r.seq_lengths), [[5], [3, 3, 1]]);
  });

  test("sort ties keep the original order; equal remaining spaces → the oldest bin", () => {
    // L=3, lengths 2,2,1: r0 opens A (space 1), r1 opens B (space 1), r2 → A (the older of the two).
    assert.deepEqual(members(pack_dataset(rowsOfLengths([2, 2, 1]), 3)), [[0, 2], [1]]);
    // L=5, lengths 1,2,1,2 → sorted 2(r1) 2(r3) 1(r0) 1(r2): r1, r3, r0 fill A (5); r2 opens B.
    const out = pack_dataset(rowsOfLengths([1, 2, 1, 2]), 5);
    assert.deepEqual(members(out), [[1, 3, 0], [2]]);
    assert.deepEqual(out.map((r) => r.seq_lengths), [[2, 2, 1], [1]]);
  });

  test("equal remaining spaces: the bin that has had that space longest (TRL's FIFO queue per space)", () => {
    // L=9, lengths 4,4,2,6,1 → sorted 6(r3) 4(r0) 4(r1) 2(r2) 1(r4): r3 opens A (space 3); r0 opens B (space 5);
    // r1 → B (space 1); r2 → A (space 1). Both have space 1 now; B got there first, so r4 → B (TRL's
    // space_to_bin deque), although A was opened first.
    assert.deepEqual(members(pack_dataset(rowsOfLengths([4, 4, 2, 6, 1]), 9)), [[3, 2], [0, 1, 4]]);
  });

  test("empty sequences are dropped, long ones truncated keeping the start; labels carried along", () => {
    const rows = [
      { input_ids: [], labels: [] },
      { input_ids: [1, 2, 3, 4, 5], labels: [-100, -100, 3, 4, 5] },
      { input_ids: [6], labels: [-100] },
      { input_ids: [7, 8] }, // no labels: labels = input_ids
    ];
    assert.deepEqual(pack_dataset(rows, 3), [
      { input_ids: [1, 2, 3], labels: [-100, -100, 3], seq_lengths: [3] },
      { input_ids: [7, 8, 6], labels: [7, 8, -100], seq_lengths: [2, 1] },
    ]);
  });

  test("keys that are not per-token columns are dropped; typed arrays are read", () => {
    const rows = [
      { input_ids: Int32Array.from([1, 2]), completion_mask: [0, 1], text: "ab", id: 7, messages: [{ role: "user" }] },
      { input_ids: [3], completion_mask: Uint8Array.from([1]), text: "c", id: 8, messages: [] },
    ];
    assert.deepEqual(pack_dataset(rows, 4), [{ input_ids: [1, 2, 3], labels: [1, 2, 3], completion_mask: [0, 1, 1], seq_lengths: [2, 1] }]);
  });

  test("an empty first row: only known per-token names become columns; big rows do not blow the stack", () => {
    const rows = [
      { input_ids: [], completion_mask: [], messages: [] },
      { input_ids: [1, 2], completion_mask: [0, 1], messages: [{ role: "user" }] },
    ];
    assert.deepEqual(pack_dataset(rows, 4), [{ input_ids: [1, 2], labels: [1, 2], completion_mask: [0, 1], seq_lengths: [2] }]);
    const big = { input_ids: Array.from({ length: 300_000 }, (_, i) => i % 50) };
    assert.equal(pack_dataset([big], 1, "bfd_split").length, 300_000);
    assert.equal(pack_dataset([big], 1, "wrapped").length, 300_000);
  });

  test("matches a brute-force best-fit-decreasing reference on random inputs", () => {
    const rand = rng(7);
    for (let trial = 0; trial < 2000; trial++) {
      const L = 1 + Math.floor(rand() * 16);
      const lengths = Array.from({ length: Math.floor(rand() * 14) }, () => Math.floor(rand() * (L + 4)));
      const out = pack_dataset(rowsOfLengths(lengths), L);
      const kept = lengths.map((n, i) => [Math.min(n, L), i] as const).filter(([n]) => n > 0);
      const expected = referenceBins(
        kept.map(([n]) => n),
        L,
      ).map((ids) => ids.map((j) => kept[j]![1]));
      assert.deepEqual(members(out), expected, `L=${L} lengths=${lengths}`);
      for (const r of out) {
        assert.ok(r.input_ids.length <= L);
        assert.equal(r.seq_lengths!.reduce((a, b) => a + b, 0), r.input_ids.length);
        assert.deepEqual(r.labels, r.input_ids);
      }
    }
  });

  test("errors: bad seq_length, unknown strategy, misaligned columns", () => {
    assert.throws(() => pack_dataset([{ input_ids: [1] }], 0), /seq_length must be a positive integer/);
    assert.throws(() => pack_dataset([{ input_ids: [1] }], 2.5), /seq_length must be a positive integer/);
    assert.throws(() => pack_dataset([{ input_ids: [1] }], 4, "bfd-requeue" as PackingStrategy), /invalid packing strategy "bfd-requeue"/);
    assert.throws(() => pack_dataset([{ input_ids: [1, 2], labels: [1] }], 4), /row 0: "labels" has 1 values but input_ids has 2/);
    assert.throws(
      () => pack_dataset([{ input_ids: [1], completion_mask: [1] }, { input_ids: [2, 3] }], 4),
      /row 1 has no "completion_mask", which the first row has/,
    );
    assert.throws(() => pack_dataset([{ input_ids: [1, 2.5] }], 4), /input_ids must be integers/);
    assert.throws(() => pack_dataset([{ input_ids: "abc" } as unknown as PackInputRow], 4), /row 0: input_ids must be an array/);
    assert.deepEqual(pack_dataset([], 4), []);
  });
});

describe("pack_dataset bfd_split", () => {
  test("TRL's docstring example (its bfd-requeue): overflow packed as sequences of their own", () => {
    const rows = [
      { input_ids: [1, 2, 3, 4, 5], attention_mask: [1, 1, 1, 0, 0] },
      { input_ids: [6, 7], attention_mask: [1, 0] },
      { input_ids: [8, 9, 10], attention_mask: [1, 1, 0] },
      { input_ids: [11], attention_mask: [1] },
    ];
    assert.deepEqual(pack_dataset(rows, 4, "bfd_split"), [
      { input_ids: [1, 2, 3, 4], labels: [1, 2, 3, 4], attention_mask: [1, 1, 1, 0], seq_lengths: [4] },
      { input_ids: [8, 9, 10, 5], labels: [8, 9, 10, 5], attention_mask: [1, 1, 0, 0], seq_lengths: [3, 1] },
      { input_ids: [6, 7, 11], labels: [6, 7, 11], attention_mask: [1, 0, 1], seq_lengths: [2, 1] },
    ]);
  });

  test("an overlong sequence becomes seq_length pieces plus a remainder, labels cut alike", () => {
    // L=3: [1..8] → [1,2,3] [4,5,6] [7,8]; with [9]: sorted 3,3,2,1 → A, B, C (space 1) ← [9].
    const rows = [
      { input_ids: [1, 2, 3, 4, 5, 6, 7, 8], labels: [-100, -100, 3, 4, 5, 6, 7, 8] },
      { input_ids: [9], labels: [9] },
      { input_ids: [10, 11, 12, 13, 14, 15] }, // an exact multiple: no empty remainder
    ];
    assert.deepEqual(pack_dataset(rows, 3, "bfd_split"), [
      { input_ids: [1, 2, 3], labels: [-100, -100, 3], seq_lengths: [3] },
      { input_ids: [4, 5, 6], labels: [4, 5, 6], seq_lengths: [3] },
      { input_ids: [10, 11, 12], labels: [10, 11, 12], seq_lengths: [3] },
      { input_ids: [13, 14, 15], labels: [13, 14, 15], seq_lengths: [3] },
      { input_ids: [7, 8, 9], labels: [7, 8, 9], seq_lengths: [2, 1] },
    ]);
  });

  test("keeps every token (bfd drops the overflow)", () => {
    const rows = rowsOfLengths([9, 0, 4, 7, 1, 12]);
    const total = (rs: PackedRow[]) => rs.reduce((a, r) => a + r.input_ids.length, 0);
    assert.equal(total(pack_dataset(rows, 5, "bfd_split")), 33);
    assert.equal(total(pack_dataset(rows, 5, "bfd")), 5 + 4 + 5 + 1 + 5);
  });
});

describe("pack_dataset wrapped", () => {
  test("TRL's pack_examples docstring examples: concatenate, cut every seq_length, keep the short last row", () => {
    const rows = [
      { input_ids: [1, 2, 3], attention_mask: [0, 1, 1] },
      { input_ids: [4, 5, 6, 7], attention_mask: [0, 0, 1, 1] },
      { input_ids: [8], attention_mask: [1] },
    ];
    assert.deepEqual(pack_dataset(rows, 5, "wrapped"), [
      { input_ids: [1, 2, 3, 4, 5], labels: [1, 2, 3, 4, 5], attention_mask: [0, 1, 1, 0, 0] },
      { input_ids: [6, 7, 8], labels: [6, 7, 8], attention_mask: [1, 1, 1] },
    ]);
    assert.deepEqual(
      pack_dataset(rows, 2, "wrapped").map((r) => [r.input_ids, r.attention_mask]),
      [
        [
          [1, 2],
          [0, 1],
        ],
        [
          [3, 4],
          [1, 0],
        ],
        [
          [5, 6],
          [0, 1],
        ],
        [
          [7, 8],
          [1, 1],
        ],
      ],
    );
  });

  test("labels carried, empty rows contribute nothing, no seq_lengths", () => {
    const rows = [{ input_ids: [1, 2], labels: [-100, 2] }, { input_ids: [] }, { input_ids: [3, 4, 5, 6, 7, 8, 9] }];
    const out = pack_dataset(rows, 4, "wrapped");
    assert.deepEqual(out, [
      { input_ids: [1, 2, 3, 4], labels: [-100, 2, 3, 4] },
      { input_ids: [5, 6, 7, 8], labels: [5, 6, 7, 8] },
      { input_ids: [9], labels: [9] },
    ]);
    assert.ok(out.every((r) => !("seq_lengths" in r)));
  });
});

describe("packStream", () => {
  const strategies: PackingStrategy[] = ["bfd", "bfd_split", "wrapped"];

  test("equals pack_dataset when the window holds everything (sync and async sources)", async () => {
    const rand = rng(11);
    for (let trial = 0; trial < 200; trial++) {
      const L = 1 + Math.floor(rand() * 12);
      const lengths = Array.from({ length: Math.floor(rand() * 30) }, () => Math.floor(rand() * (2 * L)));
      const rows = rowsOfLengths(lengths).map((r, i) => ({ ...r, labels: (r.input_ids as number[]).map((t) => (t % 3 === 0 ? -100 : t + i)) }));
      for (const s of strategies) {
        const expected = pack_dataset(rows, L, s);
        assert.deepEqual(await collect(packStream(rows, L, s)), expected); // default window 1000 ≥ rows
        async function* gen() {
          for (const r of rows) yield r;
        }
        assert.deepEqual(await collect(packStream(gen(), L, s, { window: rows.length || 1 })), expected);
      }
    }
    assert.equal(DEFAULT_PACKING_WINDOW, 1000);
  });

  test("a smaller window packs each window on its own (TRL packs per Dataset.map batch)", async () => {
    const rand = rng(5);
    for (let trial = 0; trial < 100; trial++) {
      const L = 2 + Math.floor(rand() * 10);
      const rows = rowsOfLengths(Array.from({ length: 1 + Math.floor(rand() * 40) }, () => Math.floor(rand() * (2 * L))));
      const W = 1 + Math.floor(rand() * 8);
      for (const s of ["bfd", "bfd_split"] as const) {
        const expected: PackedRow[] = [];
        for (let i = 0; i < rows.length; i += W) expected.push(...pack_dataset(rows.slice(i, i + W), L, s));
        assert.deepEqual(await collect(packStream(rows, L, s, { window: W })), expected);
      }
      // wrapped carries the remainder across windows: the same rows whatever the window.
      assert.deepEqual(await collect(packStream(rows, L, "wrapped", { window: W })), pack_dataset(rows, L, "wrapped"));
    }
  });

  test("stays bounded: a window's bins are out before the next window's rows are read", async () => {
    const lengths = Array.from({ length: 23 }, (_, i) => 1 + ((i * 7) % 5));
    const rows = rowsOfLengths(lengths);
    const W = 4;
    for (const s of ["bfd", "bfd_split"] as const) {
      let pulled = 0;
      async function* source() {
        for (const r of rows) {
          pulled++;
          yield r;
        }
      }
      const seen: number[] = [];
      for await (const packed of packStream(source(), 6, s, { window: W })) {
        const window = Math.floor(Math.max(...members([packed])[0]!) / W); // its rows all belong to one window
        assert.ok(members([packed])[0]!.every((m) => Math.floor(m / W) === window), "a bin mixes windows");
        // Read exactly through the end of its window, never into the next one.
        assert.equal(pulled, Math.min(rows.length, (window + 1) * W));
        seen.push(window);
      }
      assert.deepEqual([...new Set(seen)], [0, 1, 2, 3, 4, 5]);
    }
  });

  test("window_tokens closes a window after the row that reaches the token cap", async () => {
    const rows = rowsOfLengths([4, 4, 4, 4, 4]);
    let pulled = 0;
    async function* source() {
      for (const r of rows) {
        pulled++;
        yield r;
      }
    }
    const pulledAt: number[] = [];
    const out: PackedRow[] = [];
    for await (const p of packStream(source(), 8, "bfd", { window_tokens: 8 })) {
      pulledAt.push(pulled);
      out.push(p);
    }
    assert.deepEqual(members(out), [[0, 1], [2, 3], [4]]);
    assert.deepEqual(pulledAt, [2, 4, 5]);
  });

  test("wrapped streams with at most one partial row held", async () => {
    let pulled = 0;
    async function* source() {
      for (let i = 0; i < 6; i++) {
        pulled++;
        yield { input_ids: [3 * i, 3 * i + 1, 3 * i + 2] };
      }
    }
    const pulledAt: number[] = [];
    const out: number[][] = [];
    for await (const p of packStream(source(), 4, "wrapped", { window: 1000 })) {
      pulledAt.push(pulled);
      out.push(p.input_ids);
    }
    assert.deepEqual(out, [
      [0, 1, 2, 3],
      [4, 5, 6, 7],
      [8, 9, 10, 11],
      [12, 13, 14, 15],
      [16, 17],
    ]);
    assert.deepEqual(pulledAt, [2, 3, 4, 6, 6]); // each row yielded as soon as its tokens have arrived
  });

  test("errors", async () => {
    await assert.rejects(collect(packStream([{ input_ids: [1] }], 4, "bfd", { window: 0 })), /window must be a positive integer/);
    await assert.rejects(collect(packStream([{ input_ids: [1] }], 0)), /seq_length must be a positive integer/);
    await assert.rejects(collect(packStream([{ input_ids: [1], labels: [] }], 4)), /"labels" has 0 values but input_ids has 1/);
    assert.deepEqual(await collect(packStream([], 4)), []);
  });
});
