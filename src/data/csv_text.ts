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

/** Text of UTF-8 chunks, decoded as they come (a character split across chunks is joined); errors name the file. */
async function* decodeChunks(chunks: AsyncIterable<Uint8Array>, name: string): AsyncGenerator<string> {
  const decoder = new TextDecoder("utf-8", { fatal: true });
  let first = true;
  const decode = (b: Uint8Array | undefined, stream: boolean) => {
    try {
      return decoder.decode(b, { stream });
    } catch (e) {
      throw new Error(`${name}: not UTF-8 text: ${(e as Error).message}`, { cause: e });
    }
  };
  for await (const c of chunks) {
    let s = decode(c, true);
    if (first && s.length) {
      s = s.replace(/^\uFEFF/, "");
      first = false;
    }
    if (s) yield s;
  }
  const tail = decode(undefined, false);
  if (tail) yield tail;
}

/** One CSV record: its fields and the line it starts on. */
interface CsvRecord {
  fields: string[];
  line: number;
}

/** CSV records of a text stream (RFC 4180 quoting; "\n", "\r\n" or "\r" end a record); blank lines skipped. */
async function* csvRecords(text: AsyncIterable<string>, name: string, sep: string): AsyncGenerator<CsvRecord> {
  let fields: string[] = [];
  let field = "";
  let quoted = false; // inside a quoted field
  let afterQuote = false; // a quote just seen inside a quoted field: a second one is a literal quote, else the end
  let fieldBegun = false; // the current field has consumed a character (a quote opens a field only at its start)
  let recordBegun = false; // the current record has consumed a character (else the line was blank)
  let line = 1;
  let recordLine = 1;
  let pendingCR = false;
  const endRecord = (): CsvRecord | null => {
    fields.push(field);
    const rec = recordBegun ? { fields, line: recordLine } : null;
    fields = [];
    field = "";
    fieldBegun = recordBegun = false;
    return rec;
  };
  for await (const chunk of text) {
    for (let i = 0; i < chunk.length; i++) {
      const ch = chunk[i]!;
      if (pendingCR) {
        pendingCR = false;
        if (ch === "\n") continue; // "\r\n": one line break
      }
      if (quoted) {
        if (!afterQuote) {
          if (ch === '"') afterQuote = true;
          else {
            if (ch === "\n" || (ch === "\r" && chunk[i + 1] !== "\n")) line++;
            field += ch;
          }
          continue;
        }
        afterQuote = false;
        if (ch === '"') {
          field += '"';
          continue;
        }
        quoted = false; // that quote closed the field; this character is read as outside quotes
      }
      if (ch === sep) {
        fields.push(field);
        field = "";
        fieldBegun = false;
        recordBegun = true;
      } else if (ch === "\n" || ch === "\r") {
        const rec = endRecord();
        pendingCR = ch === "\r";
        recordLine = ++line;
        if (rec) yield rec;
      } else {
        if (ch === '"' && !fieldBegun) quoted = true;
        else field += ch;
        fieldBegun = recordBegun = true;
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
export async function* csvRows(chunks: AsyncIterable<Uint8Array>, name: string, skip = 0, options: CsvOptions = {}): AsyncGenerator<Row> {
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
  for await (const rec of csvRecords(decodeChunks(chunks, name), name, sep)) {
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
export async function* textRows(chunks: AsyncIterable<Uint8Array>, name: string, skip = 0, options: TextOptions = {}): AsyncGenerator<Row> {
  const sampleBy = options.sample_by ?? "line";
  if (!["line", "paragraph", "document"].includes(sampleBy)) throw new Error(`${name}: sample_by must be "line", "paragraph" or "document", got ${JSON.stringify(sampleBy)}`);
  const keep = options.keep_linebreaks ?? false;
  let index = 0;
  let line = 1;
  const emit = (text: string, at: number): Row | null => (index++ < skip ? null : withTag({ text }, `${name}:${at}`));
  let carry = "";
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
  const text = decodeChunks(chunks, name);
  if (sampleBy === "document") {
    for await (const s of text) carry += normalise(s);
    if (carry) {
      const row = emit(carry, 1);
      if (row) yield row;
    }
    return;
  }
  const sep = sampleBy === "line" ? "\n" : "\n\n";
  let blockLine = 1;
  for await (const s of text) {
    carry += normalise(s);
    let at: number;
    while ((at = carry.indexOf(sep)) >= 0) {
      const piece = carry.slice(0, at);
      carry = carry.slice(at + sep.length);
      if (sampleBy === "line") {
        const row = emit(keep ? `${piece}\n` : piece, line++);
        if (row) yield row;
      } else {
        const lines = piece.split("\n").length + 1;
        if (piece) {
          const row = emit(piece, blockLine);
          if (row) yield row;
        }
        blockLine += lines;
      }
    }
  }
  if (carry) {
    const row = emit(carry, sampleBy === "line" ? line : blockLine);
    if (row) yield row;
  }
}
