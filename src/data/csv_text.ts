// CSV and plain-text files, read as Hugging Face datasets' `csv` and `text` builders read them, streamed.
//
// CSV (datasets' csv builder is pandas.read_csv(chunksize=10_000) → pa.Table.from_pandas): the first record is
// the header (an empty name becomes "Unnamed: i", a repeated one "a.1", "a.2", as pandas mangles them); fields
// are separated by `sep` ("," — "\t" for .tsv); a field in double quotes may hold the separator, newlines and
// doubled quotes (""). Blank lines are skipped. Types are inferred per column within each batch of 10,000 rows, as
// pandas does per chunk: a column whose values all read as integers, or all as numbers (pandas' float syntax:
// "1.5", ".5", "5.", "1e3", "inf", "-Infinity", surrounding spaces allowed), becomes numbers; one whose values are
// all True/TRUE/true/False/FALSE/false becomes booleans; any other column keeps strings exactly as written. pandas'
// default missing-value markers ("", "NA", "N/A", "NaN", "null", "None", "<NA>", "#N/A", … — see NA_VALUES) become
// null in every column, quoted or not. A row with fewer fields than the header gets null for the rest; a row with
// more is an error naming the line (pandas would silently turn the first column into an index). An integer
// beyond 2^53 is an error, as for Parquet int64 values.
//
// Text (datasets' text builder): one row per line, {text}, the line break dropped unless `keep_linebreaks`;
// "\r\n" and "\r" read as "\n" (Python's universal newlines); empty lines are rows (text ""); a final line break
// makes no extra row. `sample_by: "paragraph"` gives one row per block between blank lines ("\n\n"), empty blocks
// dropped; "document" one row for the whole file. A leading byte-order mark is dropped (datasets keeps it).

import { invalidUtf8At } from "../io/utf8.ts";

/** One row (sources.ts' Row; not imported from there, which imports this file). */
type Row = Record<string, unknown>;

/** How a CSV file is read (datasets' CsvConfig names). */
export interface CsvOptions {
  /** The field separator (default ","). */
  sep?: string;
}

/** How a text file is read (datasets' TextConfig names). */
export interface TextOptions {
  /** Keep each row's trailing "\n" (default false). */
  keep_linebreaks?: boolean;
  /** One row per "line" (default), "paragraph" (blocks between blank lines) or "document". */
  sample_by?: "line" | "paragraph" | "document";
}

/** The error for a line (a record, a row) past max_line_bytes, naming the file and the line. */
export function lineTooLong(name: string, line: number, limit: number, what = "line"): Error {
  return new Error(
    `${name}:${line}: the ${what} is longer than ${limit} bytes (max_line_bytes); a row that long is not text to train on. ` +
      `If it is meant to be, raise loadDataset's max_line_bytes option`,
  );
}

/** Past this many characters a record or row is an error (loadDataset's max_line_bytes; sources.ts' default). */
interface LineLimit {
  max_line_bytes?: number;
}

/** Rows per batch of type inference: datasets' CsvConfig.chunksize, which pandas infers types over. */
export const CSV_CHUNK_ROWS = 10_000;

/** pandas' default na_values (pandas._libs.parsers.STR_NA_VALUES): these read as null. */
export const NA_VALUES: ReadonlySet<string> = new Set([
  "", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN", "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null",
]);

const INT = /^\s*[+-]?\d+\s*$/;
const FLOAT = /^\s*[+-]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|inf(?:inity)?)\s*$/i;
const TRUE = new Set(["True", "TRUE", "true"]);
const FALSE = new Set(["False", "FALSE", "false"]);

/** Tags a row with where it came from, on sources.ts' ROW_SOURCE key. */
function withTag(row: Row, where: string): Row {
  Object.defineProperty(row, Symbol.for("webtune.row_source"), { value: where, enumerable: false, configurable: true });
  return row;
}

/** The first bytes of a character that `c` ends inside of (what a streaming decoder holds over), else empty. */
export function partialTail(c: Uint8Array): Uint8Array {
  for (let k = 1; k <= Math.min(3, c.length); k++) {
    const b = c[c.length - k]!;
    if ((b & 0xc0) === 0x80) continue; // a continuation byte: look further back
    const need = b >= 0xf0 ? 4 : b >= 0xe0 ? 3 : b >= 0xc0 ? 2 : 1;
    return need > k ? c.subarray(c.length - k) : c.subarray(c.length);
  }
  return c.subarray(c.length);
}

/** Bytes that are not UTF-8: an error naming the file, the line (counted in `bytes` from `line`) and the byte offset. */
export function notUtf8(name: string, bytes: Uint8Array, line: number, fileOffset: number, cause: unknown): Error {
  const at = Math.max(0, invalidUtf8At(bytes));
  let l = line;
  for (let i = 0; i < at; i++) if (bytes[i] === 0x0a) l++;
  return new Error(`${name}:${l}: not UTF-8 text (an invalid byte sequence at byte offset ${fileOffset + at} of the file); save the file as UTF-8`, { cause });
}

/** Text of UTF-8 chunks, decoded as they come (a character split across chunks is joined); errors name file:line. */
async function* decodeChunks(chunks: AsyncIterable<Uint8Array>, name: string): AsyncGenerator<string> {
  const decoder = new TextDecoder("utf-8", { fatal: true });
  let first = true;
  let line = 1; // "\n"s decoded so far + 1 (where a bad byte is reported)
  let offset = 0;
  let tail: Uint8Array = new Uint8Array(0); // a split character's first bytes, from the chunk before
  const decode = (c: Uint8Array | undefined, stream: boolean) => {
    try {
      return decoder.decode(c, { stream });
    } catch (e) {
      if (!c) throw new Error(`${name}:${line}: not UTF-8 text (the file ends inside a character, at byte offset ${offset}); save the file as UTF-8`, { cause: e });
      const bytes = new Uint8Array(tail.length + c.length);
      bytes.set(tail);
      bytes.set(c, tail.length);
      throw notUtf8(name, bytes, line, offset - tail.length, e);
    }
  };
  for await (const c of chunks) {
    let s = decode(c, true);
    for (let i = s.indexOf("\n"); i >= 0; i = s.indexOf("\n", i + 1)) line++;
    offset += c.length;
    tail = partialTail(c);
    if (first && s.length) {
      s = s.replace(/^\uFEFF/, "");
      first = false;
    }
    if (s) yield s;
  }
  const rest = decode(undefined, false);
  if (rest) yield rest;
}

/** One CSV record: its fields and the line it starts on. */
interface CsvRecord {
  fields: string[];
  line: number;
}

/** CSV records of a text stream (RFC 4180 quoting; "\n", "\r\n" or "\r" end a record); blank lines skipped. */
async function* csvRecords(text: AsyncIterable<string>, name: string, sep: string, maxLine: number): AsyncGenerator<CsvRecord> {
  let fields: string[] = [];
  let field = "";
  let quoted = false; // inside a quoted field
  let afterQuote = false; // a quote just seen inside a quoted field: a second one is a literal quote, else the end
  let fieldBegun = false; // the current field has consumed a character (a quote opens a field only at its start)
  let recordBegun = false; // the current record has consumed a character (else the line was blank)
  let line = 1;
  let recordLine = 1;
  let recordChars = 0; // the characters of the current record so far, against max_line_bytes
  let pendingCR = false;
  const SEP = sep.charCodeAt(0);
  const endRecord = (): CsvRecord | null => {
    fields.push(field);
    const rec = recordBegun ? { fields, line: recordLine } : null;
    fields = [];
    field = "";
    fieldBegun = recordBegun = false;
    recordChars = 0;
    return rec;
  };
  const grow = (n: number) => {
    recordChars += n;
    if (recordChars > maxLine) throw lineTooLong(name, recordLine, maxLine, "record");
  };
  // Runs of ordinary characters are sliced out whole (never appended one by one): linear in the text.
  for await (const chunk of text) {
    let i = 0;
    while (i < chunk.length) {
      const ch = chunk[i]!;
      if (pendingCR) {
        pendingCR = false;
        if (ch === "\n") {
          i++; // "\r\n": one line break
          continue;
        }
      }
      if (quoted) {
        if (!afterQuote) {
          let q = chunk.indexOf('"', i);
          if (q < 0) q = chunk.length;
          const run = chunk.slice(i, q);
          for (let k = run.indexOf("\n"); k >= 0; k = run.indexOf("\n", k + 1)) line++;
          for (let k = run.indexOf("\r"); k >= 0; k = run.indexOf("\r", k + 1)) if (chunk[i + k + 1] !== "\n") line++;
          grow(run.length);
          field += run;
          if (q < chunk.length) afterQuote = true;
          i = q + 1;
          continue;
        }
        afterQuote = false;
        if (ch === '"') {
          field += '"';
          grow(1);
          i++;
          continue;
        }
        quoted = false; // that quote closed the field; this character is read as outside quotes
      }
      if (ch === sep) {
        fields.push(field);
        field = "";
        fieldBegun = false;
        recordBegun = true;
        grow(1);
        i++;
      } else if (ch === "\n" || ch === "\r") {
        const rec = endRecord();
        pendingCR = ch === "\r";
        recordLine = ++line;
        i++;
        if (rec) yield rec;
      } else if (ch === '"' && !fieldBegun) {
        quoted = true;
        fieldBegun = recordBegun = true;
        grow(1);
        i++;
      } else {
        let j = i + 1;
        for (; j < chunk.length; j++) {
          const c = chunk.charCodeAt(j);
          if (c === SEP || c === 10 || c === 13) break;
        }
        grow(j - i);
        field += chunk.slice(i, j);
        fieldBegun = recordBegun = true;
        i = j;
      }
    }
  }
  if (quoted && !afterQuote) throw new Error(`${name}:${recordLine}: the file ends inside a quoted field (a " that is never closed)`);
  const rec = endRecord();
  if (rec) yield rec;
}

/** pandas' header names: empty → "Unnamed: i"; a repeat of "a" → "a.1", "a.2", … */
function headerNames(fields: string[]): string[] {
  const seen = new Map<string, number>();
  const used = new Set<string>();
  return fields.map((raw, i) => {
    let name = raw === "" ? `Unnamed: ${i}` : raw;
    if (used.has(name)) {
      let k = seen.get(name) ?? 0;
      let candidate: string;
      do candidate = `${name}.${++k}`;
      while (used.has(candidate));
      seen.set(name, k);
      name = candidate;
    }
    used.add(name);
    return name;
  });
}

type ColumnType = "null" | "int" | "float" | "bool" | "string";

/** The type pandas infers for one column's values in one batch (missing values aside). */
function inferType(values: (string | undefined)[]): ColumnType {
  let int = true;
  let float = true;
  let bool = true;
  let any = false;
  for (const v of values) {
    if (v === undefined || NA_VALUES.has(v)) continue;
    any = true;
    if (int && !INT.test(v)) int = false;
    if (float && !int && !FLOAT.test(v)) float = false;
    if (bool && !TRUE.has(v) && !FALSE.has(v)) bool = false;
    if (!int && !float && !bool) return "string";
  }
  if (!any) return "null";
  return int ? "int" : float ? "float" : bool ? "bool" : "string";
}

function convert(v: string | undefined, type: ColumnType, where: () => string): unknown {
  if (v === undefined || NA_VALUES.has(v)) return null;
  switch (type) {
    case "int": {
      const n = Number(v);
      if (!Number.isSafeInteger(n)) throw new Error(`${where()}: the integer ${v.trim()} is beyond what a JavaScript number holds exactly`);
      return n;
    }
    case "float": {
      const t = v.trim().toLowerCase().replace(/^\+/, "");
      return t === "inf" || t === "infinity" ? Infinity : t === "-inf" || t === "-infinity" ? -Infinity : Number(v);
    }
    case "bool":
      return TRUE.has(v);
    case "string":
      return v;
    default:
      return null;
  }
}

/** Rows of a CSV file's chunks, after the first `skip`; each tagged with its file:line. */
export async function* csvRows(chunks: AsyncIterable<Uint8Array>, name: string, skip = 0, options: CsvOptions & LineLimit = {}): AsyncGenerator<Row> {
  const sep = options.sep ?? ",";
  if (sep.length !== 1 || sep === '"' || sep === "\n" || sep === "\r") throw new Error(`${name}: the CSV separator must be one character other than a quote or a line break, got ${JSON.stringify(sep)}`);
  let names: string[] | null = null;
  let batch: CsvRecord[] = [];
  let index = 0;
  const flush = function* (): Generator<Row> {
    const cols = names!;
    const types = cols.map((_, c) => inferType(batch.map((r) => r.fields[c])));
    for (const rec of batch) {
      if (index++ < skip) continue;
      const row: Row = {};
      cols.forEach((col, c) => (row[col] = convert(rec.fields[c], types[c]!, () => `${name}:${rec.line}, column "${col}"`)));
      yield withTag(row, `${name}:${rec.line}`);
    }
    batch = [];
  };
  for await (const rec of csvRecords(decodeChunks(chunks, name), name, sep, options.max_line_bytes ?? Infinity)) {
    if (!names) {
      names = headerNames(rec.fields);
      continue;
    }
    if (rec.fields.length > names.length) {
      throw new Error(`${name}:${rec.line}: ${rec.fields.length} fields, but the header has ${names.length} (${names.join(", ")}); quote fields that hold the separator ${JSON.stringify(sep)}`);
    }
    batch.push(rec);
    if (batch.length === CSV_CHUNK_ROWS) yield* flush();
  }
  if (batch.length) yield* flush();
}

/** Rows {text} of a text file's chunks, after the first `skip`; each tagged with its file:line. */
export async function* textRows(chunks: AsyncIterable<Uint8Array>, name: string, skip = 0, options: TextOptions & LineLimit = {}): AsyncGenerator<Row> {
  const sampleBy = options.sample_by ?? "line";
  if (!["line", "paragraph", "document"].includes(sampleBy)) throw new Error(`${name}: sample_by must be "line", "paragraph" or "document", got ${JSON.stringify(sampleBy)}`);
  const keep = options.keep_linebreaks ?? false;
  let index = 0;
  let line = 1;
  const emit = (text: string, at: number): Row | null => (index++ < skip ? null : withTag({ text }, `${name}:${at}`));
  const maxLine = options.max_line_bytes ?? Infinity;
  let pendingCR = false;
  // Universal newlines across chunk boundaries: a "\r" at a chunk's end waits to see whether "\n" follows.
  const normalise = (s: string): string => {
    if (pendingCR) {
      pendingCR = false;
      if (s.startsWith("\n")) s = s.slice(1);
    }
    if (s.endsWith("\r")) {
      pendingCR = true;
      s = s.slice(0, -1) + "\n";
    }
    return s.replace(/\r\n?/g, "\n");
  };
  // The text of a row not yet ended, as the pieces it came in (joined once, when it ends): linear in the text.
  let pieces: string[] = [];
  let pendingChars = 0;
  const what = sampleBy === "line" ? "line" : sampleBy;
  const hold = (piece: string, at: number) => {
    if (!piece) return;
    pieces.push(piece);
    pendingChars += piece.length;
    if (pendingChars > maxLine) throw lineTooLong(name, at, maxLine, what);
  };
  const release = (last: string): string => {
    const whole = pieces.length === 0 ? last : pieces.join("") + last;
    pieces = [];
    pendingChars = 0;
    return whole;
  };
  const text = decodeChunks(chunks, name);
  if (sampleBy === "document") {
    for await (const s of text) hold(normalise(s), 1);
    const whole = release("");
    if (whole) {
      const row = emit(whole, 1);
      if (row) yield row;
    }
    return;
  }
  const sep = sampleBy === "line" ? "\n" : "\n\n";
  let blockLine = 1;
  const rowOf = (piece: string): Row | null => {
    if (piece.length > maxLine) throw lineTooLong(name, sampleBy === "line" ? line : blockLine, maxLine, what);
    if (sampleBy === "line") return emit(keep ? `${piece}\n` : piece, line++);
    const lines = piece.split("\n").length + 1;
    const row = piece ? emit(piece, blockLine) : null;
    blockLine += lines;
    return row;
  };
  for await (const raw of text) {
    const s = normalise(raw);
    let from = 0;
    // A paragraph break split across chunks: the held text ends with "\n" and this chunk starts with one.
    if (sep.length === 2 && pieces.length > 0 && s.startsWith("\n") && pieces[pieces.length - 1]!.endsWith("\n")) {
      const row = rowOf(release("").slice(0, -1));
      from = 1;
      if (row) yield row;
    }
    let at: number;
    while ((at = s.indexOf(sep, from)) >= 0) {
      const row = rowOf(release(s.slice(from, at)));
      from = at + sep.length;
      if (row) yield row;
    }
    hold(s.slice(from), sampleBy === "line" ? line : blockLine);
  }
  const rest = release("");
  if (rest) {
    const row = emit(rest, sampleBy === "line" ? line : blockLine);
    if (row) yield row;
  }
}
