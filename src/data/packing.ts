// Packing of tokenized examples into rows of at most `seq_length` tokens, as TRL's `pack_dataset` does
// (trl/data_utils.py: `_pack_bfd`, `_pack_wrapped`), over an array (`pack_dataset`) or a stream
// (`packStream`). No GPU.
//
// Strategies (TRL's names; the spec's "Packing" section):
// - "bfd" (Best Fit Decreasing): empty sequences are dropped; each sequence is truncated to seq_length
//   (keep start); sequences are sorted by length, longest first, ties in their original order; each goes
//   into the bin whose remaining space is the smallest that still fits it — a fresh bin only when no open
//   bin fits; among bins with exactly that remaining space, the one that has had it longest (TRL's FIFO
//   queue per remaining space). Bins are output in the order they were opened; a row is its members'
//   tokens concatenated, with `seq_lengths` the member lengths in order. Rows are not padded.
// - "bfd_split" (TRL's "bfd-requeue"): like bfd, but a sequence longer than seq_length is first cut into
//   seq_length pieces plus a remainder, each packed as a sequence of its own (nothing is lost).
// - "wrapped": everything concatenated and cut every seq_length; the last, shorter row is kept. No
//   `seq_lengths`: attention then crosses example boundaries (allowed, as in TRL, but a document sees
//   the end of the previous one — prefer bfd for SFT).
//
// Every numeric per-token column (`labels`, `completion_mask`, `assistant_masks`, …: an array as long as
// `input_ids`) is cut and concatenated exactly as `input_ids`; `labels` is always present in the output
// (absent in a row means labels = input_ids). Other keys cannot be packed and are dropped.
//
// Streaming: TRL packs with `Dataset.map(batched=True)`, whose default batch is 1000 rows, so its bins only
// ever combine examples of the same 1000-row batch. `packStream` does the same with a bounded window
// (default 1000 rows, optionally also capped in tokens): it buffers at most one window, packs it, yields
// its bins and moves on, so a dataset larger than memory can be packed. Packing quality (fill rate)
// therefore depends on the window: a larger window gives fuller bins. With a window that holds the whole
// dataset the result equals `pack_dataset`. For "wrapped" no window is needed: the remainder shorter than
// seq_length is carried across rows (unlike TRL, which leaves one short row per 1000-row batch), so
// `packStream(…, "wrapped")` always equals `pack_dataset(…, "wrapped")`.

export type PackingStrategy = "bfd" | "bfd_split" | "wrapped";

/** Per-token numeric data: plain arrays or typed arrays. */
export type TokenColumn = ArrayLike<number>;

/** A prepared example: `input_ids`, optional `labels` (-100 where not trained) and other keys. */
export interface PackInputRow {
  input_ids: TokenColumn;
  labels?: TokenColumn;
  [key: string]: unknown;
}

/** A packed row; `seq_lengths` is absent for "wrapped". Other per-token columns ride along under their keys. */
export interface PackedRow {
  input_ids: number[];
  labels: number[];
  seq_lengths?: number[];
  [key: string]: number[] | undefined;
}

export interface PackStreamOptions {
  /** Rows buffered and packed together (bfd, bfd_split). Default 1000, TRL's `Dataset.map` batch size. */
  window?: number;
  /** Also close a window once it holds this many tokens (after bfd truncation). Default: no token cap. */
  window_tokens?: number;
}

/** TRL packs per `Dataset.map` batch, 1000 rows by default; `packStream`'s default window. */
export const DEFAULT_PACKING_WINDOW = 1000;

const KNOWN_TOKEN_COLUMNS = new Set(["completion_mask", "assistant_masks", "attention_mask", "position_ids", "token_type_ids"]);

const STRATEGIES: readonly PackingStrategy[] = ["bfd", "bfd_split", "wrapped"];

/** One sequence to pack: its per-token columns (same length each), sliced to at most seq_length. */
interface Seq {
  cols: number[][]; // in the order of `Columns.names`; cols[0] is input_ids, cols[1] labels
  length: number;
}

/** The per-token columns of a dataset, fixed by its first row: input_ids, labels, then the others. */
class Columns {
  readonly names: string[];

  constructor(first: PackInputRow) {
    const names = ["input_ids", "labels"];
    const n = checkIds(first, 0).length;
    for (const [k, v] of Object.entries(first)) {
      if (k === "input_ids" || k === "labels" || k === "seq_lengths") continue;
      // An empty first row cannot tell a per-token column from another empty list: only known names then.
      if (isNumericArray(v) && v.length === n && (n > 0 || KNOWN_TOKEN_COLUMNS.has(k))) names.push(k);
    }
    this.names = names;
  }

  /** The columns of row `index`, validated (lengths, numbers). */
  read(row: PackInputRow, index: number): number[][] {
    const ids = checkIds(row, index);
    const n = ids.length;
    const cols: number[][] = [ids];
    for (let c = 1; c < this.names.length; c++) {
      const name = this.names[c]!;
      let v = row[name];
      if (name === "labels" && v == null) {
        v = ids;
      } else if (v == null) {
        throw new Error(`pack_dataset: row ${index} has no "${name}", which the first row has (every row needs the same per-token columns)`);
      }
      if (!isNumericArray(v)) throw new Error(`pack_dataset: row ${index}: "${name}" must be an array of numbers`);
      if (v.length !== n) {
        throw new Error(`pack_dataset: row ${index}: "${name}" has ${v.length} values but input_ids has ${n} (per-token columns must be as long as input_ids)`);
      }
      cols.push(v === ids ? ids : Array.from(v));
    }
    return cols;
  }
}

/** Whether `v` is a per-token column: an array of numbers or a typed array. */
export function isNumericArray(v: unknown): v is TokenColumn {
  if (ArrayBuffer.isView(v)) return !(v instanceof DataView);
  return Array.isArray(v) && v.every((x) => typeof x === "number");
}

function checkIds(row: PackInputRow, index: number): number[] {
  if (row == null || typeof row !== "object") throw new Error(`pack_dataset: row ${index} is not an object`);
  const ids = row.input_ids;
  if (!isNumericArray(ids)) throw new Error(`pack_dataset: row ${index}: input_ids must be an array of integers`);
  const out = Array.from(ids);
  for (const x of out) {
    if (!Number.isInteger(x)) throw new Error(`pack_dataset: row ${index}: input_ids must be integers, got ${x}`);
  }
  return out;
}

function checkArgs(seq_length: number, strategy: string): void {
  if (!Number.isInteger(seq_length) || seq_length < 1) {
    throw new Error(`pack_dataset: seq_length must be a positive integer, got ${seq_length}`);
  }
  if (!STRATEGIES.includes(strategy as PackingStrategy)) {
    throw new Error(`pack_dataset: invalid packing strategy "${strategy}"; use ${STRATEGIES.map((s) => `"${s}"`).join(", ")}`);
  }
}

/** The sequences a row contributes under bfd (truncated) or bfd_split (cut into pieces); none when empty. */
function toSeqs(cols: number[][], seq_length: number, split: boolean): Seq[] {
  const n = cols[0]!.length;
  if (n === 0) return [];
  if (n <= seq_length) return [{ cols, length: n }];
  if (!split) return [{ cols: cols.map((c) => c.slice(0, seq_length)), length: seq_length }];
  const out: Seq[] = [];
  for (let s = 0; s < n; s += seq_length) {
    const e = Math.min(n, s + seq_length);
    out.push({ cols: cols.map((c) => c.slice(s, e)), length: e - s });
  }
  return out;
}

/**
 * Smallest present value ≥ x among 1..size, by a max segment tree over leaves 1..size whose leaf v holds v
 * when v is present and 0 otherwise (TRL's `_SegmentTree`).
 */
class SpaceTree {
  private readonly base: number;
  private readonly tree: Int32Array;

  constructor(size: number) {
    let base = 1;
    while (base < size + 1) base <<= 1;
    this.base = base;
    this.tree = new Int32Array(2 * base);
  }

  private set(v: number, value: number): void {
    let i = this.base + v;
    this.tree[i] = value;
    for (i >>= 1; i >= 1; i >>= 1) this.tree[i] = Math.max(this.tree[2 * i]!, this.tree[2 * i + 1]!);
  }
  add(v: number): void {
    this.set(v, v);
  }
  remove(v: number): void {
    this.set(v, 0);
  }
  /** The smallest present value ≥ x (the caller keeps `size` present, so one always exists for x ≤ size). */
  search(x: number): number {
    let i = 1;
    if (this.tree[1]! < x) return -1;
    while (i < this.base) i = this.tree[2 * i]! >= x ? 2 * i : 2 * i + 1;
    return this.tree[i]!;
  }
}

/** Best-fit-decreasing bins over `seqs` (each ≤ seq_length, none empty); returns member indices per bin. */
function bestFitDecreasing(lengths: number[], seq_length: number): number[][] {
  // Longest first, ties in original order (Array.prototype.sort is stable).
  const order = lengths.map((_, i) => i).sort((a, b) => lengths[b]! - lengths[a]!);
  const tree = new SpaceTree(seq_length);
  tree.add(seq_length); // a fresh bin is always available
  const bySpace = new Map<number, { ids: number[] }[]>(); // FIFO queue of open bins per remaining space
  const bins: { ids: number[] }[] = [];
  for (const idx of order) {
    const len = lengths[idx]!;
    const space = tree.search(len);
    let bin: { ids: number[] };
    if (space < seq_length) {
      const q = bySpace.get(space)!;
      bin = q.shift()!;
      if (q.length === 0) {
        bySpace.delete(space);
        tree.remove(space);
      }
    } else {
      bin = { ids: [] };
      bins.push(bin);
    }
    bin.ids.push(idx);
    const left = space - len;
    if (left > 0) {
      let q = bySpace.get(left);
      if (!q) bySpace.set(left, (q = []));
      q.push(bin);
      tree.add(left);
    }
  }
  return bins.map((b) => b.ids);
}

function emitBins(seqs: Seq[], names: string[], seq_length: number): PackedRow[] {
  const bins = bestFitDecreasing(
    seqs.map((s) => s.length),
    seq_length,
  );
  return bins.map((ids) => {
    const row: PackedRow = { input_ids: [], labels: [] };
    for (let c = 2; c < names.length; c++) row[names[c]!] = [];
    const seq_lengths: number[] = [];
    for (const i of ids) {
      const s = seqs[i]!;
      for (let c = 0; c < names.length; c++) {
        const dst = row[names[c]!]!;
        for (const x of s.cols[c]!) dst.push(x);
      }
      seq_lengths.push(s.length);
    }
    row.seq_lengths = seq_lengths;
    return row;
  });
}

/** Concatenates rows' columns and cuts every seq_length; keeps what is left in `carry` for the next call. */
class Wrapper {
  private carry: number[][];
  constructor(
    private readonly names: string[],
    private readonly seq_length: number,
  ) {
    this.carry = names.map(() => []);
  }

  push(cols: number[][]): PackedRow[] {
    const out: PackedRow[] = [];
    const n = cols[0]!.length;
    let s = 0;
    while (s < n) {
      const take = Math.min(this.seq_length - this.carry[0]!.length, n - s);
      for (let c = 0; c < cols.length; c++) {
        const dst = this.carry[c]!;
        const src = cols[c]!;
        for (let t = s; t < s + take; t++) dst.push(src[t]!);
      }
      s += take;
      if (this.carry[0]!.length === this.seq_length) out.push(this.flush()!);
    }
    return out;
  }

  /** The partial row left, if any. */
  flush(): PackedRow | null {
    if (this.carry[0]!.length === 0) return null;
    const row: PackedRow = { input_ids: this.carry[0]!, labels: this.carry[1]! };
    for (let c = 2; c < this.names.length; c++) row[this.names[c]!] = this.carry[c]!;
    this.carry = this.names.map(() => []);
    return row;
  }
}

/**
 * Packs `rows` into rows of at most `seq_length` tokens with TRL's "bfd" (default), "bfd_split" or
 * "wrapped" strategy; see the top of this file for the exact rules. All rows are packed together (one
 * window holding everything); see `packStream` for a bounded-memory stream.
 */
export function pack_dataset(rows: Iterable<PackInputRow>, seq_length: number, strategy: PackingStrategy = "bfd"): PackedRow[] {
  checkArgs(seq_length, strategy);
  const list = Array.isArray(rows) ? (rows as PackInputRow[]) : Array.from(rows);
  if (list.length === 0) return [];
  const columns = new Columns(list[0]!);
  if (strategy === "wrapped") {
    const w = new Wrapper(columns.names, seq_length);
    const out: PackedRow[] = [];
    list.forEach((row, i) => {
      for (const r of w.push(columns.read(row, i))) out.push(r);
    });
    const last = w.flush();
    if (last) out.push(last);
    return out;
  }
  const split = strategy === "bfd_split";
  const seqs: Seq[] = [];
  list.forEach((row, i) => {
    for (const q of toSeqs(columns.read(row, i), seq_length, split)) seqs.push(q);
  });
  return emitBins(seqs, columns.names, seq_length);
}

/**
 * Packs a stream of rows (sync or async iterable) with the same rules as `pack_dataset`, one bounded
 * window at a time: at most `window` rows (default 1000, TRL's `Dataset.map` batch) and, with
 * `window_tokens`, at most about that many tokens are held before the window is packed and its bins are
 * yielded (a window closes after the row that reaches the token cap). Bins never combine rows of
 * different windows, so the fill rate depends on the window; one window holding the whole stream gives
 * exactly `pack_dataset`'s rows. "wrapped" holds no window: it carries the partial row (fewer than
 * seq_length tokens) across rows and equals `pack_dataset` for any window.
 */
export async function* packStream(
  source: AsyncIterable<PackInputRow> | Iterable<PackInputRow>,
  seq_length: number,
  strategy: PackingStrategy = "bfd",
  options: PackStreamOptions = {},
): AsyncGenerator<PackedRow, void, undefined> {
  checkArgs(seq_length, strategy);
  const window = options.window ?? DEFAULT_PACKING_WINDOW;
  const window_tokens = options.window_tokens ?? Infinity;
  if (!Number.isInteger(window) || window < 1) throw new Error(`packStream: window must be a positive integer, got ${window}`);
  if (!(window_tokens >= 1)) throw new Error(`packStream: window_tokens must be ≥ 1, got ${window_tokens}`);
  let columns: Columns | null = null;
  let wrapper: Wrapper | null = null;
  const split = strategy === "bfd_split";
  let seqs: Seq[] = [];
  let rowsInWindow = 0;
  let tokensInWindow = 0;
  let index = 0;
  for await (const row of source as AsyncIterable<PackInputRow>) {
    columns ??= new Columns(row);
    const cols = columns.read(row, index++);
    if (strategy === "wrapped") {
      wrapper ??= new Wrapper(columns.names, seq_length);
      yield* wrapper.push(cols);
      continue;
    }
    for (const q of toSeqs(cols, seq_length, split)) {
      seqs.push(q);
      tokensInWindow += q.length;
    }
    rowsInWindow++;
    if (rowsInWindow >= window || tokensInWindow >= window_tokens) {
      const bins = emitBins(seqs, columns.names, seq_length);
      seqs = [];
      rowsInWindow = 0;
      tokensInWindow = 0;
      yield* bins;
    }
  }
  if (wrapper) {
    const last = wrapper.flush();
    if (last) yield last;
  } else if (columns && seqs.length > 0) {
    yield* emitBins(seqs, columns.names, seq_length);
  }
}
