// Datasets by name, as `trl sft` loads them: datasets.load_dataset(path, name, data_dir, data_files, split,
// streaming) for a Hugging Face Hub id, a builder ("json", "csv", "parquet", "text") with data_files, a local
// directory or a local file / URL; TRL's `datasets:` mixtures (trl.scripts.utils.get_dataset); and the train and
// eval splits TRL's sft script hands SFTTrainer (loadSFTDatasets).
//
// A Hub id is resolved as datasets 5 resolves it (HubDatasetModuleFactory), one request for the repository:
// GET {endpoint}/api/datasets/{id}/revision/{revision} gives its files (`siblings`) and its card's YAML
// (`cardData.configs`: config_name, data_files, data_dir, default). The config is dataset_config (else the one
// marked default, else the only one); its data_files patterns, or without any datasets' split-name inference over
// the file names (data/{split}-00000-of-00001.*, then train/validation/test and their synonyms as directory
// names, then in file names, else every file is train) pick each split's files, and the most common extension
// (Parquet first on a tie, as datasets' infer_module_for_data_files) picks the builder. Only when the repository
// has no file webtune reads (JSON / JSON Lines / CSV / TSV / Parquet / text), e.g. Arrow shards or images, is the
// dataset viewer's Parquet conversion used instead: GET {endpoint}/api/datasets/{id}/parquet gives
// {config: {split: [urls]}}, each url answering with a redirect to
// {endpoint}/datasets/{id}/resolve/refs%2Fconvert%2Fparquet/{config}/{split}/{n:04}.parquet. (datasets 5 itself
// no longer falls back to the conversion; webtune does so that such datasets train at all.)
//
// Files are read through src/io's HttpFile from {endpoint}/datasets/{id}/resolve/{revision}/{path}: Parquet by
// ranged reads one row group at a time, the text formats streamed, the token (the `token` option, else $HF_TOKEN)
// as `Authorization: Bearer`, progress per file, and in browsers the Cache API. The token is never put in a
// message. Errors say what to check: a dataset that does not exist, a gated or private one (with and without a
// token), a config or a split that does not exist (listing those there are), an unknown builder.
//
// Not streaming (datasets' default), the split's rows are read once into memory and re-read from there each
// epoch; `streaming` reads them as the trainer consumes them and holds none (datasets' IterableDataset).
// Split names take datasets' "train+test" (concatenation) and slices "train[:100]", "train[10%:20%]"
// (rounded to the closest row, as datasets' ReadInstruction); slices need the rows in memory (not streaming).
import { fs, hasFilesystem, isNotFound } from "../io/fs.ts";
import { DEFAULT_HUB_ENDPOINT, env, hubEndpoint, httpFile, type FetchLike, type ProgressCallback } from "../io/http.ts";
import { permutation } from "../models/sampling.ts";
import { concatenate, Dataset, describe, loadDataset, ROW_SOURCE, type DataFile, type DataFormat, type LoadDatasetOptions, type Row } from "./sources.ts";

/** How Hub requests are made. */
export interface HubDatasetOptions {
  /** A Hugging Face access token (default $HF_TOKEN where the environment is readable); sent as a bearer, never shown. */
  token?: string;
  /** The Hub's address (default $HF_ENDPOINT, else https://huggingface.co). */
  endpoint?: string;
  /** The branch, tag or commit of a Hub dataset (default "main"). */
  revision?: string;
  /** The fetch to use (default the global fetch). */
  fetch?: FetchLike;
  /** Called as files download (per file: loaded bytes of total). */
  onProgress?: ProgressCallback;
  /** Keep downloaded files in the browser's Cache API (default: in browsers; see src/io/http.ts). */
  cache?: boolean;
}

/** `data_files` as datasets takes it: a path or pattern, a list of them, or a mapping split → path(s). */
export type DataFilesArg = string | readonly string[] | Readonly<Record<string, string | readonly string[]>>;

/** datasets.load_dataset's arguments (TRL's DatasetConfig: path, name, data_dir, data_files, split, columns). */
export interface LoadDatasetArgs {
  /** A Hub dataset id ("org/name" or "name"), a builder ("json", "csv", "parquet", "text"), a local directory, or a local file / URL. */
  path: string;
  /** The config (dataset_config). */
  name?: string | null;
  /** A directory of the repository (or of the local files) to read the data files from. */
  data_dir?: string | null;
  data_files?: DataFilesArg | null;
  /** The split (default "train"); "a+b" concatenates, "train[:10%]" slices. */
  split?: string;
  /** Read rows as they are consumed, holding none (default false: read once into memory). */
  streaming?: boolean;
  /** The columns to keep (TRL's `columns`, datasets' select_columns). */
  columns?: readonly string[] | null;
}

/** A dataset's splits, as load_dataset(path) without `split` gives them: each a function that opens it. */
export interface DatasetDict {
  /** What the splits come from, for messages ("the Hub dataset org/name (config default)"). */
  name: string;
  /** The split names, in datasets' order (train, validation, test, then the others). */
  splits: string[];
  /** One split's rows (a split expression: "a+b", "train[:100]"); an error listing the splits for an unknown one. */
  split(split: string, streaming?: boolean): Promise<Dataset>;
  /** A single local file or URL (dataset_name as webtune always took it): read as the trainer consumes it, never held. */
  file?: boolean;
}

// ---------------------------------------------------------------------------------------------------------
// Hub requests and their errors.

/** A Hub dataset at one revision, with how to reach it. */
class HubDataset {
  readonly endpoint: string;
  readonly revision: string;
  readonly token: string | undefined;
  private readonly fetcher: FetchLike;

  constructor(
    readonly id: string,
    readonly options: HubDatasetOptions,
  ) {
    this.endpoint = hubEndpoint(options);
    this.revision = options.revision ?? "main";
    this.token = options.token ?? env("HF_TOKEN");
    const f = options.fetch;
    if (!f && typeof globalThis.fetch !== "function") throw new Error(`dataset ${id}: no fetch in this host; pass one as the \`fetch\` option`);
    this.fetcher = f ?? ((url, init) => globalThis.fetch(url, init));
  }

  /** The dataset's page, for messages. */
  get page(): string {
    return `${this.endpoint}/datasets/${this.id}`;
  }

  /** The URL of a file of the repository. */
  resolveUrl(path: string): string {
    return `${this.endpoint}/datasets/${this.id}/resolve/${encodeURIComponent(this.revision)}/${path.split("/").map(encodeURIComponent).join("/")}`;
  }

  async request(url: string, method: "GET" | "HEAD" = "GET"): Promise<Response> {
    const headers: Record<string, string> = {};
    if (this.token) headers.Authorization = `Bearer ${this.token}`;
    try {
      return await this.fetcher(url, { method, headers });
    } catch (e) {
      throw new Error(`dataset '${this.id}': fetching ${url} failed: ${(e as Error).message} (check the network and the endpoint ${this.endpoint})`, { cause: e });
    }
  }

  /** A JSON API response; a failed one becomes the error that says what to check. */
  async json<T>(url: string): Promise<T> {
    const res = await this.request(url);
    if (!res.ok) {
      await res.body?.cancel();
      throw this.error(res, url);
    }
    try {
      return (await res.json()) as T;
    } catch (e) {
      throw new Error(`dataset '${this.id}': ${url} did not answer with JSON: ${(e as Error).message}`);
    }
  }

  /** The error for a refused request, as datasets words them, with what to do. */
  error(res: Response, url: string): Error {
    const code = res.headers.get("x-error-code");
    const id = this.id;
    const status = `(HTTP ${res.status}${code ? ` ${code}` : ""} from ${url})`;
    const tokenHint = "pass a Hugging Face access token (the HF_TOKEN environment variable or the `token` option)";
    if (code === "GatedRepo") {
      return new Error(
        res.status === 401 || !this.token
          ? `Dataset '${id}' is a gated dataset on the Hub. You must be authenticated to access it: accept its terms at ${this.page} and ${tokenHint} ${status}`
          : `Dataset '${id}' is a gated dataset on the Hub. Visit the dataset page at ${this.page} to ask for access: the token given has not been granted it ${status}`,
      );
    }
    if (res.status === 404 && code === "RevisionNotFound") return new Error(`Revision '${this.revision}' doesn't exist for dataset '${id}' on the Hub ${status}`);
    if (res.status === 404 && code === "EntryNotFound") return new Error(`dataset '${id}' has no file ${url} ${status}`);
    if (res.status === 404 || res.status === 401 || res.status === 403) {
      const access = !this.token
        ? `if it is private, ${tokenHint}`
        : res.status === 401
          ? "the token given was refused: check that it is valid and not expired"
          : "check that the token given can read it";
      return new Error(`Dataset '${id}' doesn't exist on the Hub${this.endpoint === DEFAULT_HUB_ENDPOINT ? "" : ` at ${this.endpoint}`} or cannot be accessed: check the name (org/name), and ${access} ${status}`);
    }
    if (res.status === 429) return new Error(`dataset '${id}': too many requests: wait and try again, or ${tokenHint} ${status}`);
    return new Error(`dataset '${id}': the Hub failed; try again later ${status}`);
  }

  /** A repository file as a DataFile (read through HttpFile: ranges, the token, progress, the Cache API). */
  file(path: string): DataFile {
    return this.urlFile(this.resolveUrl(path), `hf://datasets/${this.id}@${this.revision}/${path}`);
  }

  urlFile(url: string, name: string): DataFile {
    const o = this.options;
    return { name, bytes: httpFile(url, { token: this.token, progress_callback: o.onProgress, cache: o.cache, fetch: o.fetch }, "dataset") };
  }

  /** Fails early, with the Hub's reason, when a file cannot be read (gated, private): one HEAD request. */
  async probe(url: string): Promise<void> {
    let res = await this.request(url, "HEAD");
    if (res.status === 405 || res.status === 501) res = await this.request(url, "GET");
    await res.body?.cancel();
    if (!res.ok) throw this.error(res, url);
  }
}

// ---------------------------------------------------------------------------------------------------------
// datasets' data-file patterns (datasets/data_files.py) and builder inference (load.py).

const SPLIT_KEYWORDS: [string, string[]][] = [
  ["train", ["train", "training"]],
  ["validation", ["validation", "valid", "dev", "val"]],
  ["test", ["test", "testing", "eval", "evaluation"]],
];
const SEP = "[-._ 0-9]";
const FILENAME_PATTERNS = ["**/{keyword}{sep}*", "**/*{sep}{keyword}{sep}*"];
const DIRNAME_PATTERNS = ["**/{keyword}/**", "**/{keyword}{sep}*/**", "**/*{sep}{keyword}/**", "**/*{sep}{keyword}{sep}*/**"];
const SHARDED = /^data\/([^/]+?)-[0-9]{5}-of-[0-9]{5}[^/]*\.[^/]*$/;
const SPLIT_NAME = /^\w+(\.\w+)*$/;
const FILES_TO_IGNORE = new Set(["README.md", "config.json", "dataset_info.json", "dataset_infos.json", "dummy_data.zip", "dataset_dict.json"]);

/** Extensions datasets maps to a builder; the four webtune reads, and the others (so that they win where they are the most common). */
const EXTENSION_TO_BUILDER: Record<string, string> = {
  ".csv": "csv", ".tsv": "csv", ".json": "json", ".jsonl": "json", ".ndjson": "json", ".parquet": "parquet", ".geoparquet": "parquet", ".gpq": "parquet",
  ".txt": "text", ".arrow": "arrow", ".lance": "lance", ".conll": "conll", ".xml": "xml", ".tar": "webdataset", ".hdf5": "hdf5", ".h5": "hdf5", ".eval": "eval",
  ".png": "imagefolder", ".jpg": "imagefolder", ".jpeg": "imagefolder", ".webp": "imagefolder", ".gif": "imagefolder", ".bmp": "imagefolder", ".tif": "imagefolder", ".tiff": "imagefolder",
  ".wav": "audiofolder", ".mp3": "audiofolder", ".flac": "audiofolder", ".ogg": "audiofolder", ".m4a": "audiofolder", ".opus": "audiofolder",
  ".mp4": "videofolder", ".mov": "videofolder", ".avi": "videofolder", ".mkv": "videofolder", ".webm": "videofolder", ".pdf": "pdffolder", ".nii": "niftifolder", ".zip": "zip",
};
const READABLE: Record<string, DataFormat> = { json: "json", csv: "csv", parquet: "parquet", text: "text" };
/** Builders webtune reads, as path names (datasets' packaged modules). */
export const BUILDERS = ["json", "csv", "parquet", "text"] as const;
const OTHER_BUILDERS = ["arrow", "pandas", "sql", "spark", "generator", "webdataset", "imagefolder", "audiofolder", "videofolder", "pdffolder", "niftifolder", "xml", "hdf5", "lance", "cache", "eval", "iterable", "meshfolder"];

function suffixes(path: string): string[] {
  const base = path.slice(path.lastIndexOf("/") + 1);
  return base.split(".").slice(1).map((s) => `.${s.toLowerCase()}`);
}

/** A glob (fsspec ≥ 2023.12 / Python glob: "*" within a name, "**" any depth, "?" one character, "[…]") as a regular expression over "/" paths. */
export function globToRegExp(pattern: string): RegExp {
  const segs = pattern.split("/");
  let re = "";
  segs.forEach((seg, i) => {
    const last = i === segs.length - 1;
    if (seg === "**") re += last ? ".*" : "(?:[^/]+/)*";
    else re += segment(seg) + (last ? "" : "/");
  });
  return new RegExp(`^${re}$`);
}

function segment(seg: string): string {
  let out = "";
  for (let i = 0; i < seg.length; i++) {
    const c = seg[i]!;
    if (c === "*") {
      while (seg[i + 1] === "*") i++;
      out += "[^/]*";
    } else if (c === "?") out += "[^/]";
    else if (c === "[") {
      const close = seg.indexOf("]", i + 2);
      if (close < 0) out += "\\[";
      else {
        let body = seg.slice(i + 1, close);
        if (body.startsWith("!")) body = `^${body.slice(1)}`;
        out += `[${body.replace(/\\/g, "\\\\")}]`;
        i = close;
      }
    } else out += c.replace(/[.+^${}()|\\]/g, "\\$&");
  }
  return out;
}

function hasWildcards(p: string): boolean {
  return /[*?[\]]/.test(p);
}

/** Hidden ("."-prefixed) and special ("__"-prefixed directory) parts are matched only where the pattern names as many. */
function unrequested(path: string, pattern: string): boolean {
  const hidden = (p: string) => p.split("/").filter((s) => s.startsWith(".") && !/^\.+$/.test(s)).length;
  const special = (p: string) => p.split("/").slice(0, -1).filter((s) => s.startsWith("__")).length;
  return hidden(path) !== hidden(pattern) || special(path) !== special(pattern);
}

/** The files (paths relative to the root) a pattern relative to `base` matches, data files only, sorted. */
function resolvePattern(files: readonly string[], base: string, pattern: string): string[] {
  const full = base ? `${base}/${pattern.replace(/^\.?\//, "")}` : pattern.replace(/^\.?\//, "");
  const patternBase = full.slice(full.lastIndexOf("/") + 1);
  if (!hasWildcards(full)) return files.includes(full) && suffixes(full).some((s) => s in EXTENSION_TO_BUILDER) ? [full] : [];
  const re = globToRegExp(full);
  return files
    .filter((f) => re.test(f) && !(FILES_TO_IGNORE.has(f.slice(f.lastIndexOf("/") + 1)) && f.slice(f.lastIndexOf("/") + 1) !== patternBase) && !unrequested(f, full))
    .filter((f) => suffixes(f).some((s) => s in EXTENSION_TO_BUILDER))
    .sort();
}

/** datasets' sanitize_patterns: data_files as {split: [patterns]} ("train" for a string or a list). */
function sanitizePatterns(dataFiles: unknown, where: string): Record<string, string[]> {
  const list = (v: unknown, key: string): string[] => {
    if (typeof v === "string") return [v];
    if (Array.isArray(v) && v.every((x) => typeof x === "string")) return v as string[];
    throw new Error(`${where}: data_files${key} must be a path or a list of paths, got ${describe(v)}`);
  };
  if (typeof dataFiles === "string") return { train: [dataFiles] };
  if (Array.isArray(dataFiles)) {
    if (dataFiles.some((p) => p && typeof p === "object")) {
      const out: Record<string, string[]> = {};
      for (const p of dataFiles as Record<string, unknown>[]) {
        if (!p || typeof p !== "object" || typeof p.split !== "string" || !("path" in p)) {
          throw new Error(`${where}: each data_files entry must be {split: <name>, path: <path or list of paths>}, got ${JSON.stringify(p)}`);
        }
        if (p.split in out) throw new Error(`${where}: the split "${p.split}" is given twice in data_files`);
        out[p.split] = list(p.path, `[${p.split}]`);
      }
      return out;
    }
    return { train: list(dataFiles, "") };
  }
  if (dataFiles && typeof dataFiles === "object") {
    return Object.fromEntries(Object.entries(dataFiles as Record<string, unknown>).map(([k, v]) => [k, list(v, `.${k}`)]));
  }
  throw new Error(`${where}: data_files must be a path, a list of paths, or a mapping split → paths, got ${describe(dataFiles)}`);
}

/** datasets' get_data_patterns: each split's files, by the sharded pattern, then directory names, then file names, else all → train. */
function inferSplits(files: readonly string[], base: string): Record<string, string[]> {
  const under = base ? files.filter((f) => f.startsWith(`${base}/`)).map((f) => f.slice(base.length + 1)) : [...files];
  const data = under.filter((f) => suffixes(f).some((s) => s in EXTENSION_TO_BUILDER));
  const withBase = (fs: string[]) => fs.map((f) => (base ? `${base}/${f}` : f)).sort();
  const sharded = new Map<string, string[]>();
  for (const f of data) {
    const m = SHARDED.exec(f);
    if (m && !unrequested(f, "data/*")) (sharded.get(m[1]!) ?? sharded.set(m[1]!, []).get(m[1]!)!).push(f);
  }
  if (sharded.size) {
    for (const s of sharded.keys()) if (!SPLIT_NAME.test(s)) throw new Error(`Split name should match '^\\w+(\\.\\w+)*$' but got '${s}' (from the data/{split}-00000-of-0000N file names)`);
    const known = SPLIT_KEYWORDS.map(([s]) => s).filter((s) => sharded.has(s));
    const others = [...sharded.keys()].filter((s) => !known.includes(s)).sort();
    return Object.fromEntries([...known, ...others].map((s) => [s, withBase(sharded.get(s)!)]));
  }
  for (const patterns of [DIRNAME_PATTERNS, FILENAME_PATTERNS]) {
    const out: Record<string, string[]> = {};
    for (const [split, keywords] of SPLIT_KEYWORDS) {
      // datasets takes the first of a split's patterns that matches any file.
      for (const keyword of keywords) {
        for (const p of patterns) {
          const matched = resolvePattern(data, "", p.replaceAll("{keyword}", keyword).replaceAll("{sep}", SEP));
          if (matched.length) {
            out[split] = withBase(matched);
            break;
          }
        }
        if (out[split]) break;
      }
    }
    if (Object.keys(out).length) return out;
  }
  const all = resolvePattern(data, "", "**");
  return all.length ? { train: withBase(all) } : {};
}

/** datasets' infer_module_for_data_files_list: the builder of the most common extension (Parquet, then Arrow, JSON Lines, JSON, CSV first on a tie). */
function inferBuilder(files: readonly string[]): { builder: string | null; sep?: string } {
  const counts = new Map<string, number>();
  for (const f of files) for (const s of suffixes(f)) counts.set(s, (counts.get(s) ?? 0) + 1);
  const rank = (ext: string) => [".parquet", ".lance", ".arrow", ".jsonl", ".json", ".csv"].indexOf(ext);
  const order = [...counts.entries()].sort((a, b) => {
    if (a[1] !== b[1]) return b[1] - a[1];
    const ra = rank(a[0]), rb = rank(b[0]);
    if (ra !== rb) return (ra < 0 ? 99 : ra) - (rb < 0 ? 99 : rb);
    return a[0] < b[0] ? 1 : a[0] > b[0] ? -1 : 0;
  });
  for (const [ext] of order) {
    const builder = EXTENSION_TO_BUILDER[ext];
    if (builder) return { builder, ...(ext === ".tsv" ? { sep: "\t" } : {}) };
  }
  return { builder: null };
}

/** Extensions of a builder (data files of other kinds are left out once it is chosen). */
function builderExtensions(builder: string): string[] {
  return Object.entries(EXTENSION_TO_BUILDER).filter(([, b]) => b === builder).map(([e]) => e);
}

// ---------------------------------------------------------------------------------------------------------
// Splits from files.

/** A metadata config of a dataset card (README YAML `configs:`). */
interface CardConfig {
  config_name?: string;
  data_files?: unknown;
  data_dir?: string;
  default?: boolean;
  sep?: string;
  delimiter?: string;
  [key: string]: unknown;
}

/** The splits of some files, each read as `format` (the builder), as a DatasetDict. */
function fileDict(name: string, splits: Record<string, DataFile[] | string[]>, format: DataFormat, read: LoadDatasetOptions, before?: (split: string) => Promise<void>): DatasetDict {
  const names = orderSplits(Object.keys(splits));
  return {
    name,
    splits: names,
    async split(expr: string, streaming = false) {
      return selectSplit(expr, names, name, streaming, async (s) => {
        await before?.(s);
        // The json builder reads JSON and JSON Lines: each file's own name (or bytes) says which.
        return loadDataset(splits[s]! as DataFile[], { ...read, format: format === "json" ? undefined : format, name: `split ${s} of ${name}` });
      });
    },
  };
}

function orderSplits(names: string[]): string[] {
  const known = SPLIT_KEYWORDS.map(([s]) => s).filter((s) => names.includes(s));
  return [...known, ...names.filter((s) => !known.includes(s))];
}

/** The config a dataset's card names: `name`, else the one marked default, else the only one; errors list them. */
function pickConfig<T>(configs: Map<string, T>, name: string | null | undefined, what: string): [string, T] {
  const names = [...configs.keys()];
  if (name !== null && name !== undefined) {
    const c = configs.get(name);
    if (c === undefined) throw new Error(`BuilderConfig '${name}' not found. Available: [${names.map((n) => `'${n}'`).join(", ")}] (the configs of ${what}; set dataset_config, or \`name\` in a datasets: entry, to one of them)`);
    return [name, c];
  }
  if (names.length === 1) return [names[0]!, configs.get(names[0]!)!];
  throw new Error(`Config name is missing. Please pick one among the available configs of ${what}: [${names.map((n) => `'${n}'`).join(", ")}] (dataset_config, or \`name\` in a datasets: entry)`);
}

/** Hub repository info (GET /api/datasets/{id}/revision/{revision}). */
interface RepoInfo {
  id?: string;
  sha?: string;
  gated?: string | boolean;
  private?: boolean;
  siblings?: { rfilename: string }[];
  cardData?: { configs?: CardConfig[] } & Record<string, unknown>;
}

async function repoFiles(hub: HubDataset, info: RepoInfo): Promise<string[]> {
  if (info.siblings) return info.siblings.map((s) => s.rfilename);
  // No siblings in the answer (a Hub mirror): the tree listing, page by page (Link: <…>; rel="next").
  const out: string[] = [];
  let url: string | null = `${hub.endpoint}/api/datasets/${hub.id}/tree/${encodeURIComponent(hub.revision)}?recursive=true&expand=false`;
  while (url) {
    const res = await hub.request(url);
    if (!res.ok) {
      await res.body?.cancel();
      throw hub.error(res, url);
    }
    for (const e of (await res.json()) as { type: string; path: string }[]) if (e.type === "file") out.push(e.path);
    url = /<([^>]+)>;\s*rel="next"/.exec(res.headers.get("link") ?? "")?.[1] ?? null;
  }
  return out;
}

/** A Hub dataset's splits: its data files (card configs, datasets' split inference), else its Parquet conversion. */
async function hubDict(id: string, args: LoadDatasetArgs, options: HubDatasetOptions, read: LoadDatasetOptions): Promise<DatasetDict> {
  const hub = new HubDataset(id, options);
  const info = await hub.json<RepoInfo>(`${hub.endpoint}/api/datasets/${id}/revision/${encodeURIComponent(hub.revision)}`);
  const files = await repoFiles(hub, info);
  const cardConfigs = Array.isArray(info.cardData?.configs) ? info.cardData!.configs!.filter((c) => c && typeof c === "object") : [];
  const what = `the Hub dataset ${id}`;
  const dataDir = args.data_dir?.replace(/^\/+|\/+$/g, "") ?? "";
  let config: CardConfig = {};
  let configName = "default";
  if (cardConfigs.length) {
    const byName = new Map(cardConfigs.map((c) => [String(c.config_name ?? "default"), c]));
    const marked = cardConfigs.find((c) => c.default === true);
    [configName, config] = args.name == null && marked ? [String(marked.config_name ?? "default"), marked] : pickConfig(byName, args.name, what);
  } else if (args.name != null && args.name !== "default") {
    // No card configs: one config, "default"; a name may still be a config of the Parquet conversion.
    const converted = await parquetDict(hub, args, read).catch(() => null);
    if (converted) return converted;
    pickConfig(new Map([["default", null]]), args.name, what);
  }
  // The user's data_files are relative to the user's data_dir; a card config's to its own data_dir.
  const base = args.data_files != null || dataDir ? dataDir : (config.data_dir?.replace(/^\/+|\/+$/g, "") ?? "");
  let patterns: Record<string, string[]> | null = null;
  if (args.data_files != null) patterns = sanitizePatterns(args.data_files, what);
  else if (!dataDir && config.data_files !== undefined) patterns = sanitizePatterns(config.data_files, `${what}, config ${configName}`);
  let splits: Record<string, string[]>;
  if (patterns) {
    splits = {};
    for (const [split, ps] of Object.entries(patterns)) {
      const matched = [...new Set(ps.flatMap((p) => resolvePattern(files, base, p)))];
      if (!matched.length) throw new Error(`${what}: data_files ${JSON.stringify(ps)} of split "${split}" match no data file${base ? ` under ${base}/` : ""} of the repository (it has ${files.length} files${files.length ? `: ${files.slice(0, 8).join(", ")}${files.length > 8 ? ", …" : ""}` : ""})`);
      splits[split] = matched;
    }
  } else splits = inferSplits(files, base);
  const all = Object.values(splits).flat();
  const { builder, sep } = inferBuilder(all);
  const format = builder ? READABLE[builder] : undefined;
  if (!format) {
    // Nothing webtune reads here (Arrow shards, images, a loading script): the Hub's Parquet conversion.
    const converted = await parquetDict(hub, { ...args, name: args.name ?? (cardConfigs.length ? configName : null) }, read).catch((e) => e as Error);
    if (!(converted instanceof Error)) return converted;
    throw new Error(
      `${what} has ${all.length ? `data files of the ${builder} builder (${all.slice(0, 3).join(", ")}${all.length > 3 ? ", …" : ""}), which webtune does not read` : "no data files"}` +
        `, and its Parquet conversion could not be read either (${converted.message}). webtune reads JSON, JSON Lines, CSV, TSV, Parquet and text files`,
    );
  }
  const exts = builderExtensions(builder!);
  const paths = Object.fromEntries(Object.entries(splits).map(([s, fs]) => [s, fs.filter((f) => suffixes(f).some((x) => exts.includes(x)))]));
  const dataFiles = Object.fromEntries(Object.entries(paths).map(([s, fs]) => [s, fs.map((f) => hub.file(f))]));
  const cardSep = typeof config.sep === "string" ? config.sep : typeof config.delimiter === "string" ? config.delimiter : undefined;
  const shown = `${what}${cardConfigs.length ? ` (config ${configName})` : ""}`;
  const probed = new Set<string>();
  return fileDict(shown, dataFiles, format, { ...read, sep: read.sep ?? cardSep ?? sep }, async (s) => {
    // A gated or private dataset's files are refused while its listing is not: say so before any row is read.
    const first = paths[s]?.[0];
    if (first && !probed.has(s)) {
      await hub.probe(hub.resolveUrl(first));
      probed.add(s);
    }
  });
}

/** A Hub dataset's Parquet conversion (GET /api/datasets/{id}/parquet → {config: {split: [urls]}}). */
async function parquetDict(hub: HubDataset, args: LoadDatasetArgs, read: LoadDatasetOptions): Promise<DatasetDict> {
  const listing = await hub.json<Record<string, Record<string, string[]>>>(`${hub.endpoint}/api/datasets/${hub.id}/parquet`);
  if (!listing || typeof listing !== "object" || !Object.keys(listing).length) throw new Error(`the Hub has no Parquet conversion of dataset '${hub.id}'`);
  const what = `the Parquet conversion of the Hub dataset ${hub.id}`;
  const [config, splits] = pickConfig(new Map(Object.entries(listing)), args.name, what);
  const files = Object.fromEntries(Object.entries(splits).map(([s, urls]) => [s, urls.map((u) => hub.urlFile(u, u))]));
  const probed = new Set<string>();
  return fileDict(`${what} (config ${config})`, files, "parquet", read, async (s) => {
    const first = files[s]?.[0];
    if (first && !probed.has(s)) {
      await hub.probe(first.name);
      probed.add(s);
    }
  });
}

/** The files under a local directory (paths relative to it), `depth` levels down (default all). */
async function localFiles(dir: string, depth = Infinity): Promise<string[]> {
  const f = await fs();
  const out: string[] = [];
  const walk = async (rel: string, level: number) => {
    for (const e of await f.readdir(rel ? `${dir}/${rel}` : dir, { withFileTypes: true })) {
      const p = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory() && level < depth) await walk(p, level + 1);
      else if (e.isFile()) out.push(p);
    }
  };
  await walk("", 1);
  return out.sort();
}

/** Local paths or URLs of data_files patterns (globs resolved on the filesystem), relative to `dir`. */
async function resolveLocal(patterns: string[], dir: string, where: string): Promise<string[]> {
  const out: string[] = [];
  for (const p of patterns) {
    if (/^[a-z][a-z0-9+.-]*:\/\//i.test(p) || !hasWildcards(p)) {
      out.push(/^[a-z][a-z0-9+.-]*:\/\//i.test(p) || p.startsWith("/") || !dir ? p : `${dir}/${p}`);
      continue;
    }
    const full = p.startsWith("/") || !dir ? p : `${dir}/${p}`;
    const parts = full.split("/");
    const fixed = parts.findIndex((s) => hasWildcards(s));
    const root = parts.slice(0, fixed).join("/") || (full.startsWith("/") ? "/" : ".");
    const rest = parts.slice(fixed).join("/");
    let files: string[] = [];
    try {
      files = await localFiles(root, rest.includes("**") ? Infinity : rest.split("/").length);
    } catch (e) {
      if (!isNotFound(e)) throw e;
    }
    const matched = resolvePattern(files, "", rest).map((f) => (root === "." ? f : `${root.replace(/\/$/, "")}/${f}`));
    if (!matched.length) throw new Error(`${where}: Unable to find '${full}' (no data file matches it)`);
    out.push(...matched);
  }
  return out;
}

/** Whether a local path exists, and whether it is a directory; null where there is no filesystem or no such path. */
async function statLocal(path: string): Promise<"file" | "dir" | null> {
  if (!hasFilesystem() || /^[a-z][a-z0-9+.-]*:\/\//i.test(path)) return null;
  try {
    return (await (await fs()).stat(path)).isDirectory() ? "dir" : "file";
  } catch (e) {
    if (isNotFound(e)) return null;
    throw new Error(`cannot open ${path}: ${(e as Error).message}`, { cause: e });
  }
}

const DATA_EXTENSION = /\.(jsonl|ndjson|json|parquet|csv|tsv|txt)(\.gz)?$/i;

/**
 * datasets.load_dataset(path, name, data_dir, data_files) without `split`: the splits there are. `path` is a
 * builder (json, csv, parquet, text: data_files, or data_dir's files, are required), a local directory (split
 * inference over its files), a local file or URL (one split, train), or a Hub dataset id.
 */
export async function loadDatasetDict(args: LoadDatasetArgs, options: HubDatasetOptions & { read?: LoadDatasetOptions } = {}): Promise<DatasetDict> {
  const { path } = args;
  if (typeof path !== "string" || !path) throw new Error(`load_dataset: path must be a dataset id, a builder name or a path, got ${describe(path)}`);
  const read = options.read ?? {};
  if ((BUILDERS as readonly string[]).includes(path)) {
    const where = `the ${path} builder`;
    if (args.name != null) throw new Error(`${where} has no configs; name "${args.name}" was given (leave it out)`);
    const dataFiles = args.data_files ?? (args.data_dir ? `${args.data_dir.replace(/\/+$/, "")}/**` : null);
    if (dataFiles == null) throw new Error(`At least one data file must be specified, but got data_files=None: the ${path} builder needs data_files (a path, a list, or split → paths) or data_dir`);
    const patterns = sanitizePatterns(dataFiles, where);
    const splits: Record<string, string[]> = {};
    for (const [s, ps] of Object.entries(patterns)) splits[s] = await resolveLocal(ps, args.data_files != null ? (args.data_dir ?? "") : "", where);
    return fileDict(`${where} (${Object.values(splits).flat().slice(0, 2).join(", ")}${Object.values(splits).flat().length > 2 ? ", …" : ""})`, splits, READABLE[path]!, { ...read, token: read.token ?? options.token, fetch: read.fetch ?? options.fetch });
  }
  if (OTHER_BUILDERS.includes(path)) {
    throw new Error(`the ${path} builder is not supported by webtune: use one of ${BUILDERS.join(", ")} (or a Hub dataset id, whose Parquet conversion webtune reads)`);
  }
  const local = await statLocal(path);
  if (local === "dir") {
    const base = args.data_dir ? `${path.replace(/\/+$/, "")}/${args.data_dir}` : path.replace(/\/+$/, "");
    const files = await localFiles(base);
    const where = `the directory ${base}`;
    const splits = args.data_files != null
      ? Object.fromEntries(await Promise.all(Object.entries(sanitizePatterns(args.data_files, where)).map(async ([s, ps]) => [s, (await resolveLocal(ps, base, where))] as const)))
      : Object.fromEntries(Object.entries(inferSplits(files, "")).map(([s, fs]) => [s, fs.map((f) => `${base}/${f}`)]));
    const { builder, sep } = inferBuilder(Object.values(splits).flat());
    const format = builder ? READABLE[builder] : undefined;
    if (!format) throw new Error(`${where} has no data files webtune reads (JSON, JSON Lines, CSV, TSV, Parquet or text)${builder ? `: its files are for the ${builder} builder` : ""}`);
    const exts = builderExtensions(builder!);
    const kept = Object.fromEntries(Object.entries(splits).map(([s, fs]) => [s, fs.filter((f) => suffixes(f).some((x) => exts.includes(x)))]));
    return fileDict(where, kept, format, { ...read, sep: read.sep ?? sep });
  }
  if (local === "file" || /^(https?|blob|data):/i.test(path) || DATA_EXTENSION.test(path.replace(/[?#].*$/, ""))) {
    // A file (webtune's dataset_name as it always took it): one split, train; the format from its name or bytes.
    const name = path;
    return {
      name,
      splits: ["train"],
      file: true,
      split: (expr, streaming = false) => selectSplit(expr, ["train"], name, streaming, async () => loadDataset(path, { ...read, token: read.token ?? (/^https?:/i.test(path) ? options.token : undefined), fetch: read.fetch ?? options.fetch })),
    };
  }
  if (/^[\w.-]+(\/[\w.-]+)?$/.test(path) && !path.includes("..")) return hubDict(path, args, options, read);
  throw new Error(
    `Couldn't find '${path}': it is not a local file or directory, not a Hub dataset id ("org/name"), and not one of the builders ${BUILDERS.join(", ")}` +
      (path.includes("/") && !hasFilesystem() ? " (local paths cannot be read here: there is no filesystem)" : ""),
  );
}

// ---------------------------------------------------------------------------------------------------------
// Splits: names, "+", slices; columns; concatenation; the train/test split.

/** One split expression's rows: "a", "a+b", "a[:100]", "a[10%:20%]". */
async function selectSplit(expr: string, names: string[], what: string, streaming: boolean, open: (split: string) => Promise<Dataset>): Promise<Dataset> {
  const parts = expr.split("+").map((s) => s.trim());
  const datasets: Dataset[] = [];
  for (const part of parts) {
    const m = /^([^[\]]+?)(?:\[\s*([-+]?\d*\.?\d*%?)\s*:\s*([-+]?\d*\.?\d*%?)\s*\])?$/.exec(part);
    const split = m?.[1] ?? part;
    if (!m || !names.includes(split)) {
      throw new Error(`Unknown split "${split}". Should be one of [${names.map((n) => `'${n}'`).join(", ")}] (the splits of ${what})`);
    }
    let ds = await open(split);
    if (m[2] !== undefined || m[3] !== undefined) {
      if (streaming) throw new Error(`split "${part}": slicing a split needs its rows in memory; it cannot be used with streaming (use "${split}" and max_steps)`);
      const rows = await ds.toArray();
      const at = (b: string, dflt: number) => {
        if (!b) return dflt;
        const v = b.endsWith("%") ? roundHalfEven((Number(b.slice(0, -1)) * rows.length) / 100) : Number(b);
        if (!Number.isFinite(v)) throw new Error(`split "${part}": ${b} is not a row number or a percentage`);
        return v < 0 ? Math.max(0, rows.length + v) : Math.min(rows.length, v);
      };
      ds = inMemory(rows.slice(at(m[2]!, 0), at(m[3]!, rows.length)), `${part} of ${what}`);
    }
    datasets.push(ds);
  }
  return datasets.length === 1 ? datasets[0]! : concatenate(datasets, `${expr} of ${what}`);
}

/** Python's round(): half to even. */
function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** Rows held in memory, as a Dataset (each epoch reads them again from there). */
function inMemory(rows: Row[], name: string): Dataset {
  return loadDataset(rows, { name });
}

/** datasets' select_columns: only `columns`, each checked against the first row (a missing one is an error listing those there are). */
export function selectColumns(ds: Dataset, columns: readonly string[], name = ds.name): Dataset {
  if (!Array.isArray(columns) || !columns.every((c) => typeof c === "string")) throw new Error(`${name}: columns must be a list of column names, got ${describe(columns)}`);
  return new Dataset(
    (skip) =>
      (async function* () {
        let checked = false;
        for await (const row of ds.skip(skip)) {
          if (!checked) {
            const missing = columns.filter((c) => !(c in row));
            if (missing.length) throw new Error(`Column name [${missing.map((c) => `'${c}'`).join(", ")}] not in the dataset ${name}. Current columns in the dataset: [${Object.keys(row).map((c) => `'${c}'`).join(", ")}]`);
            checked = true;
          }
          const out: Row = {};
          for (const c of columns) if (c in row) out[c] = row[c];
          const where = (row as { [ROW_SOURCE]?: string })[ROW_SOURCE];
          if (where) Object.defineProperty(out, ROW_SOURCE, { value: where, enumerable: false, configurable: true });
          yield out;
        }
      })(),
    name,
    0,
    ds.num_rows,
  );
}

/**
 * datasets' Dataset.train_test_split(test_size, seed): a fraction in (0, 1) puts ceil(test_size · n) shuffled
 * rows in test, an integer that many; the rest, shuffled, in train.
 */
export async function trainTestSplit(ds: Dataset, testSize: number, seed: number): Promise<{ train: Dataset; test: Dataset }> {
  const rows = await ds.toArray();
  const n = rows.length;
  const nTest = Number.isInteger(testSize) && testSize >= 1 ? testSize : testSize > 0 && testSize < 1 ? Math.ceil(testSize * n) : NaN;
  if (!Number.isFinite(nTest) || nTest >= n) {
    throw new Error(`test_size=${testSize} should be either positive and smaller than the number of samples ${n} or a float in the (0, 1) range (test_split_size)`);
  }
  const p = permutation(n, seed);
  // datasets: test = permutation[:n_test], train = permutation[n_test:].
  return {
    train: inMemory(p.slice(nTest).map((i) => rows[i]!), `the train split of ${ds.name}`),
    test: inMemory(p.slice(0, nTest).map((i) => rows[i]!), `the test split of ${ds.name}`),
  };
}

/** datasets.load_dataset(path, name, data_dir, data_files, split, streaming), and TRL's select_columns. */
export async function loadDatasetByName(args: LoadDatasetArgs, options: HubDatasetOptions & { read?: LoadDatasetOptions } = {}): Promise<Dataset> {
  const dict = await loadDatasetDict(args, options);
  const streaming = args.streaming ?? false;
  let ds = await dict.split(args.split ?? "train", streaming);
  if (args.columns != null) ds = selectColumns(ds, args.columns);
  return streaming ? ds : inMemory(await ds.toArray(), ds.name);
}

// ---------------------------------------------------------------------------------------------------------
// TRL: get_dataset (mixtures) and the sft script's choice of train and eval datasets.

/** TRL's DatasetConfig keys, in its order. */
export const DATASET_CONFIG_KEYS: readonly string[] = ["path", "name", "data_dir", "data_files", "split", "columns", "fraction"];

/** src/trainer/cli_args.ts's DatasetArgs, structurally (data does not import the trainer). */
export interface SFTDatasetArgs {
  dataset_name?: string | null;
  dataset_config?: string | null;
  dataset_train_split?: string;
  dataset_test_split?: string;
  dataset_streaming?: boolean;
  /** TRL's DatasetMixtureConfig.datasets: [{path, name, data_dir, data_files, split, columns, fraction}]. */
  datasets?: readonly Record<string, unknown>[] | null;
  test_split_size?: number | null;
}

export interface SFTDatasetsOptions extends HubDatasetOptions {
  /** Stream (default: args.dataset_streaming). */
  streaming?: boolean;
  /** The seed of test_split_size's shuffle (default 42, SFTConfig's seed). */
  seed?: number;
  /**
   * Whether the eval split is wanted (TRL: eval_strategy != "no"): true makes a missing test split an error that
   * lists the splits; false gives eval null; undefined gives the test split where there is one, else null.
   */
  eval?: boolean;
  /** Where notes go (both datasets and dataset_name given). */
  warn?: (message: string) => void;
}

/** One mixture entry checked as TRL's DatasetConfig(**entry) checks it: known keys, a path. */
function datasetConfig(entry: unknown, i: number): LoadDatasetArgs & { fraction?: number | null } {
  const where = `datasets[${i}]`;
  if (!entry || typeof entry !== "object" || Array.isArray(entry)) throw new Error(`${where} must be a mapping {path, name, data_dir, data_files, split, columns, fraction}, got ${describe(entry)}`);
  const e = entry as Record<string, unknown>;
  for (const k of Object.keys(e)) {
    if (!DATASET_CONFIG_KEYS.includes(k)) {
      const hint = k === "columns_to_keep" ? ' (TRL spells it "columns")' : "";
      throw new Error(`${where}: DatasetConfig got an unexpected keyword argument '${k}'${hint}; its keys are ${DATASET_CONFIG_KEYS.join(", ")}`);
    }
  }
  if (typeof e.path !== "string" || !e.path) throw new Error(`${where}: path is required: a Hub dataset id, a builder (${BUILDERS.join(", ")}) or a local path`);
  for (const k of ["name", "data_dir", "split"] as const) {
    if (e[k] != null && typeof e[k] !== "string") throw new Error(`${where}: ${k} must be a string, got ${describe(e[k])}`);
  }
  if (e.columns != null && !(Array.isArray(e.columns) && e.columns.every((c) => typeof c === "string"))) throw new Error(`${where}: columns must be a list of column names, got ${describe(e.columns)}`);
  if (e.fraction != null && !(typeof e.fraction === "number" && e.fraction >= 0)) throw new Error(`${where}: fraction must be a non-negative number, got ${describe(e.fraction)}`);
  return {
    path: e.path,
    name: (e.name as string | undefined) ?? null,
    data_dir: (e.data_dir as string | undefined) ?? null,
    data_files: (e.data_files as DataFilesArg | undefined) ?? null,
    split: (e.split as string | undefined) ?? "train",
    columns: (e.columns as string[] | undefined) ?? null,
    fraction: (e.fraction as number | undefined) ?? null,
  };
}

/**
 * TRL's get_dataset(DatasetMixtureConfig): each entry loaded (load_dataset(path, name, data_dir, data_files,
 * split, streaming), then its `columns`), `fraction`s applied (the first round(weight · total) rows of each, the
 * mixture as large as no entry is oversampled), concatenated; with test_split_size, train_test_split. Returns
 * the splits: {train} or {train, test}.
 */
export async function getDataset(
  mixture: { datasets: readonly Record<string, unknown>[]; streaming?: boolean; test_split_size?: number | null },
  options: HubDatasetOptions & { seed?: number } = {},
): Promise<Record<string, Dataset>> {
  const streaming = mixture.streaming ?? false;
  const entries = mixture.datasets.map(datasetConfig);
  if (!entries.length) throw new Error("No datasets were loaded from the mixture configuration");
  let parts: Dataset[] = [];
  for (const e of entries) parts.push(await loadDatasetByName({ ...e, streaming }, options));
  const fractions = entries.map((e) => e.fraction ?? null);
  if (fractions.some((f) => f !== null)) {
    if (fractions.some((f) => f === null)) throw new Error("`fraction` must be set for either all datasets in the mixture or none of them.");
    if (streaming) throw new Error("Using a dataset `fraction` is not supported with streaming datasets.");
    const sum = (fractions as number[]).reduce((a, b) => a + b, 0);
    const weights = (fractions as number[]).map((f) => f / sum);
    const total = Math.min(...parts.map((p, i) => (weights[i]! > 0 ? p.num_rows! / weights[i]! : Infinity)));
    parts = await Promise.all(parts.map(async (p, i) => inMemory((await p.toArray()).slice(0, roundHalfEven(weights[i]! * total)), p.name)));
  }
  const combined = parts.length === 1 ? parts[0]! : concatenate(parts, `a mixture of ${parts.length} datasets`);
  if (mixture.test_split_size != null) {
    if (streaming) throw new Error("test_split_size splits the rows in memory: it cannot be used with streaming (streaming datasets have no train_test_split)");
    return trainTestSplit(combined, mixture.test_split_size, options.seed ?? 42);
  }
  return { train: combined };
}

/**
 * The train and eval datasets `trl sft` trains on (trl/scripts/sft.py): a `datasets:` mixture (get_dataset; a
 * dataset_name given too is ignored, with a note), else load_dataset(dataset_name, dataset_config, streaming);
 * train is the dataset_train_split, eval the dataset_test_split (see options.eval). A dataset_name that is a local
 * file or URL reads as it always has: one split, train.
 */
export async function loadSFTDatasets(args: SFTDatasetArgs, options: SFTDatasetsOptions = {}): Promise<{ train: Dataset; eval: Dataset | null }> {
  const streaming = options.streaming ?? args.dataset_streaming ?? false;
  const trainSplit = args.dataset_train_split ?? "train";
  const testSplit = args.dataset_test_split ?? "test";
  const pick = async (splits: string[], get: (s: string) => Promise<Dataset>, what: string, file = false) => {
    const missing = (s: string) => new Error(`Unknown split "${s}". Should be one of [${splits.map((n) => `'${n}'`).join(", ")}] (the splits of ${what})`);
    const base = (s: string) => s.split("+")[0]!.replace(/\[.*$/, "").trim();
    if (!splits.includes(base(trainSplit))) throw missing(trainSplit);
    const train = await get(trainSplit);
    let evalDs: Dataset | null = null;
    if (options.eval === true && !splits.includes(base(testSplit)) && file) {
      // A single local file (webtune's dataset_name as it always was) has no test split: train without evaluating, as before.
      options.warn?.(`eval_strategy asks for evaluation, but ${what} is one file, the train split only: no evaluation (give a datasets: mixture with test_split_size, or a Hub dataset with a ${testSplit} split)`);
    } else if (options.eval === true && !splits.includes(base(testSplit))) {
      const err = missing(testSplit);
      err.message += `: evaluation (eval_strategy != "no") reads dataset_test_split; set it to one of these, or set test_split_size in a datasets: mixture, or eval_strategy "no"`;
      throw err;
    }
    if (options.eval !== false && splits.includes(base(testSplit))) evalDs = await get(testSplit);
    return { train, eval: evalDs };
  };
  if (args.datasets && args.datasets.length) {
    if (args.dataset_name) options.warn?.("Both `datasets` and `dataset_name` are provided. The `datasets` argument will be used to load the dataset and `dataset_name` will be ignored.");
    const dict = await getDataset({ datasets: args.datasets, streaming, test_split_size: args.test_split_size ?? null }, options);
    return pick(Object.keys(dict), async (s) => dict[s]!, "the datasets: mixture");
  }
  if (!args.dataset_name) throw new Error("Either `datasets` or `dataset_name` must be provided.");
  const dict = await loadDatasetDict({ path: args.dataset_name, name: args.dataset_config ?? null }, options);
  return pick(dict.splits, async (s) => {
    const ds = await dict.split(s, streaming);
    // Not streaming: held in memory, as datasets holds a Dataset (the trainer shuffles it each epoch and knows
    // its length, as TRL's does); a local file too. dataset_streaming reads it as the trainer consumes it.
    return streaming ? ds : inMemory(await ds.toArray(), ds.name);
  }, dict.name, dict.file);
}
