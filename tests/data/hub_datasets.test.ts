// Hub datasets by name, TRL mixtures, CSV/text builders, streaming and the errors, against a local server (node:http)
// that answers as the Hub does: the repository info (/api/datasets/{id}/revision/{rev}: siblings, cardData), the
// dataset viewer's Parquet listing (/api/datasets/{id}/parquet → urls that redirect into refs%2Fconvert%2Fparquet),
// files under /datasets/{id}/resolve/{rev}/… with Range (206), and the Hub's 401/403/404 with x-error-code. Parquet
// files are real (tools/fixtures/hub_datasets.py, pyarrow); CSV/text rows are compared with what datasets itself
// read from the same files. The last test runs the command line (sftMain) on a Hub dataset for one step.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync } from "node:fs";
import { createServer, type IncomingMessage, type Server } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { getDataset, globToRegExp, loadDatasetDict, loadSFTDatasets, loadDatasetByName } from "../../src/data/hub_datasets.ts";
import { loadDataset, type Row } from "../../src/data/sources.ts";
import { rejects } from "../helpers.ts";

const FIXTURES = new URL("../fixtures/data/", import.meta.url);
const fixture = (name: string) => readFileSync(decodeURIComponent(new URL(name, FIXTURES).pathname));
const fixturePath = (name: string) => decodeURIComponent(new URL(name, FIXTURES).pathname);
const EXPECTED = JSON.parse(fixture("csv_text_expected.json").toString()) as Record<string, Row[]>;

const TRAIN = Array.from({ length: 6 }, (_, i) => ({ prompt: `The capital of land ${i} is`, completion: ` city ${i}.`, id: i }));
const TEST = Array.from({ length: 2 }, (_, i) => ({ prompt: `The river of land ${i} is`, completion: ` river ${i}.`, id: 100 + i }));
const GOOD = "hf_good_token_1234";
const WRONG = "hf_wrong_token_5678";

const enc = (s: string) => new TextEncoder().encode(s);
const jsonl = (rows: Row[]) => enc(rows.map((r) => JSON.stringify(r)).join("\n") + "\n");

interface Repo {
  files: Record<string, Uint8Array>;
  cardData?: Record<string, unknown>;
  gated?: boolean;
  private?: boolean;
  /** The dataset viewer's conversion: config → split → files. */
  parquet?: Record<string, Record<string, Uint8Array[]>>;
}

const REPOS: Record<string, Repo> = {
  // Arrow shards only (nothing webtune reads): the Parquet conversion is used.
  "org/converted": {
    files: { "README.md": enc("# converted\n"), "data/train/data-00000-of-00001.arrow": enc("not read"), "data/test/data-00000-of-00001.arrow": enc("not read") },
    parquet: { default: { train: [fixture("hub_train.parquet")], test: [fixture("hub_test.parquet")] } },
  },
  // push_to_hub's layout: data/{split}-00000-of-00001.parquet.
  "org/sharded": {
    files: { "README.md": enc("# sharded\n"), "data/train-00000-of-00001.parquet": fixture("hub_train.parquet"), "data/test-00000-of-00001.parquet": fixture("hub_test.parquet") },
  },
  // Split names from file names.
  "org/by-name": {
    files: { "train.jsonl": jsonl(TRAIN), "test.jsonl": jsonl(TEST), "notes.md": enc("not data") },
  },
  // The card's configs: a JSON Lines config (default) and a CSV one.
  "org/configs": {
    files: {
      "chat/train.jsonl": jsonl(TRAIN.slice(0, 3)),
      "chat/dev.jsonl": jsonl(TEST),
      "tables/a.csv": fixture("cases.csv"),
    },
    cardData: {
      configs: [
        { config_name: "chat", default: true, data_files: [{ split: "train", path: "chat/train.jsonl" }, { split: "validation", path: "chat/dev.jsonl" }] },
        { config_name: "tables", data_files: "tables/*.csv" },
      ],
    },
  },
  "org/gated": { gated: true, files: { "data/train-00000-of-00001.parquet": fixture("hub_train.parquet") } },
  "org/private": { private: true, files: { "train.jsonl": jsonl(TRAIN) } },
};

interface Seen {
  method: string;
  url: string;
  range?: string;
  auth?: string;
}

let server: Server;
let base = "";
const seen: Seen[] = [];
const dir = mkdtempSync(join(tmpdir(), "webtune-hub-data-"));

function send(res: import("node:http").ServerResponse, req: IncomingMessage, body: Uint8Array, type = "application/octet-stream") {
  const m = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? "");
  if (m) {
    const start = Number(m[1]);
    if (start >= body.length) return void res.writeHead(416, { "Content-Range": `bytes */${body.length}` }).end();
    const end = m[2] ? Math.min(Number(m[2]), body.length - 1) : body.length - 1;
    res.writeHead(206, { "Content-Range": `bytes ${start}-${end}/${body.length}`, "Content-Length": end - start + 1, "Content-Type": type });
    return void res.end(req.method === "HEAD" ? undefined : body.subarray(start, end + 1));
  }
  res.writeHead(200, { "Content-Length": body.length, "Content-Type": type });
  res.end(req.method === "HEAD" ? undefined : body);
}

function refuse(res: import("node:http").ServerResponse, status: number, code: string, message: string) {
  res.writeHead(status, { "x-error-code": code, "x-error-message": message, "Content-Type": "application/json" }).end(JSON.stringify({ error: message }));
}

/** The Hub's answers: an unknown repository is 401 without a token and 404 with one (as the Hub answers). */
function hub(req: IncomingMessage, res: import("node:http").ServerResponse) {
  const url = (req.url ?? "/").split("?")[0]!;
  const auth = req.headers.authorization;
  seen.push({ method: req.method ?? "GET", url, range: req.headers.range, auth });
  const token = auth?.startsWith("Bearer ") ? auth.slice(7) : undefined;
  let m: RegExpExecArray | null;
  const repoOf = (id: string) => {
    const repo = REPOS[id];
    if (!repo || (repo.private && token !== GOOD)) {
      refuse(res, token ? 404 : 401, "RepoNotFound", "Repository not found");
      return null;
    }
    return repo;
  };
  if ((m = /^\/api\/datasets\/([^/]+\/[^/]+)\/revision\/([^/]+)$/.exec(url))) {
    const repo = repoOf(m[1]!);
    if (!repo) return;
    if (decodeURIComponent(m[2]!) !== "main") return refuse(res, 404, "RevisionNotFound", "Invalid rev id");
    const info = { id: m[1], sha: "0123abcd", private: !!repo.private, gated: repo.gated ? "auto" : false, siblings: Object.keys(repo.files).map((rfilename) => ({ rfilename })), ...(repo.cardData ? { cardData: repo.cardData } : {}) };
    return send(res, req, enc(JSON.stringify(info)), "application/json");
  }
  if ((m = /^\/api\/datasets\/([^/]+\/[^/]+)\/parquet$/.exec(url))) {
    const repo = repoOf(m[1]!);
    if (!repo) return;
    if (!repo.parquet) return refuse(res, 404, "ParquetNotFound", "no parquet export");
    const listing = Object.fromEntries(Object.entries(repo.parquet).map(([c, splits]) => [c, Object.fromEntries(Object.entries(splits).map(([s, files]) => [s, files.map((_, n) => `${base}/api/datasets/${m![1]}/parquet/${c}/${s}/${n}.parquet`)]))]));
    return send(res, req, enc(JSON.stringify(listing)), "application/json");
  }
  if ((m = /^\/api\/datasets\/([^/]+\/[^/]+)\/parquet\/([^/]+)\/([^/]+)\/(\d+)\.parquet$/.exec(url))) {
    res.writeHead(302, { Location: `${base}/datasets/${m[1]}/resolve/refs%2Fconvert%2Fparquet/${m[2]}/${m[3]}/${m[4]!.padStart(4, "0")}.parquet` }).end();
    return;
  }
  if ((m = /^\/datasets\/([^/]+\/[^/]+)\/resolve\/([^/]+)\/(.+)$/.exec(url))) {
    const repo = repoOf(m[1]!);
    if (!repo) return;
    if (repo.gated && token !== GOOD) return refuse(res, token ? 403 : 401, "GatedRepo", "Access to this dataset is restricted");
    const rev = decodeURIComponent(m[2]!);
    const path = decodeURIComponent(m[3]!);
    let body: Uint8Array | undefined;
    if (rev === "refs/convert/parquet") {
      const [c, s, f] = path.split("/");
      body = repo.parquet?.[c!]?.[s!]?.[Number(f!.replace(".parquet", ""))];
    } else body = repo.files[path];
    if (!body) return refuse(res, 404, "EntryNotFound", "Entry not found");
    return send(res, req, body);
  }
  refuse(res, 404, "NotFound", "no such route");
}

before(async () => {
  server = createServer(hub);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const addr = server.address();
  base = `http://127.0.0.1:${typeof addr === "object" && addr ? addr.port : 0}`;
});
after(async () => {
  rmSync(dir, { recursive: true, force: true });
  await new Promise<void>((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections?.();
  });
});

const opts = () => ({ endpoint: base, token: undefined as string | undefined });
const strip = (rows: Row[]) => rows.map((r) => ({ ...r }));

describe("Hub datasets by id", () => {
  test("via the Parquet conversion: train and test splits, ranged reads through the redirect, the token as a bearer, progress", async () => {
    seen.length = 0;
    const progress: { file: string; loaded: number; total: number }[] = [];
    const { train, eval: ev } = await loadSFTDatasets({ dataset_name: "org/converted" }, { endpoint: base, token: GOOD, eval: true, onProgress: (p) => progress.push(p) });
    assert.deepEqual(strip(await train.toArray()), TRAIN);
    assert.deepEqual(strip(await ev!.toArray()), TEST);
    assert.equal(train.num_rows, 6, "not streaming: the rows are held, their count known");
    const reads = seen.filter((s) => s.url.includes("refs%2Fconvert%2Fparquet") && s.method === "GET");
    assert.ok(reads.length >= 2 && reads.every((s) => s.range), "every Parquet read is a ranged read");
    assert.ok(seen.some((s) => /\/api\/datasets\/org\/converted\/parquet\/default\/train\/0\.parquet$/.test(s.url)), "the listing's urls are followed");
    assert.ok(seen.every((s) => s.auth === `Bearer ${GOOD}`), "every request carries the token as a bearer");
    assert.ok(progress.some((p) => p.file.endsWith("/default/train/0.parquet") && p.total > 0 && p.loaded > 0));
  });

  test("via the repository's files: data/{split}-00000-of-00001.parquet names the splits", async () => {
    const dict = await loadDatasetDict({ path: "org/sharded" }, opts());
    assert.deepEqual(dict.splits, ["train", "test"]);
    assert.deepEqual(strip(await (await dict.split("test")).toArray()), TEST);
    assert.deepEqual(strip(await (await dict.split("train+test")).toArray()), [...TRAIN, ...TEST]);
    assert.deepEqual(strip(await (await dict.split("train[2:4]")).toArray()), TRAIN.slice(2, 4));
    assert.deepEqual(strip(await (await dict.split("train[:50%]")).toArray()), TRAIN.slice(0, 3));
    assert.ok(!seen.some((s) => s.url.includes("/org/sharded/parquet")), "no Parquet conversion asked for when the files are readable");
  });

  test("file-name split inference (train.jsonl, test.jsonl); the test split as eval; a missing split lists the splits", async () => {
    const { train, eval: ev } = await loadSFTDatasets({ dataset_name: "org/by-name", dataset_test_split: "test" }, { ...opts(), eval: true });
    assert.deepEqual(strip(await train.toArray()), TRAIN);
    assert.deepEqual(strip(await ev!.toArray()), TEST);
    const none = await loadSFTDatasets({ dataset_name: "org/by-name" }, { ...opts(), eval: false });
    assert.equal(none.eval, null, "eval_strategy no: no eval dataset");
    await rejects(loadSFTDatasets({ dataset_name: "org/by-name", dataset_train_split: "training" }, opts()), /Unknown split "training"\. Should be one of \['train', 'test'\]/, /org\/by-name/);
    await rejects(loadSFTDatasets({ dataset_name: "org/by-name", dataset_test_split: "validation" }, { ...opts(), eval: true }), /Unknown split "validation"\. Should be one of \['train', 'test'\]/, /eval_strategy/);
  });

  test("the card's configs: the default one (JSON Lines), dataset_config picks the CSV one, an unknown one lists them", async () => {
    const chat = await loadDatasetDict({ path: "org/configs" }, opts());
    assert.deepEqual(chat.splits, ["train", "validation"]);
    assert.deepEqual(strip(await (await chat.split("validation")).toArray()), TEST);
    const { train } = await loadSFTDatasets({ dataset_name: "org/configs", dataset_config: "tables" }, opts());
    assert.deepEqual(strip(await train.toArray()), EXPECTED["cases.csv"]);
    await rejects(loadSFTDatasets({ dataset_name: "org/configs", dataset_config: "nope" }, opts()), /BuilderConfig 'nope' not found\. Available: \['chat', 'tables'\]/);
    await rejects(loadSFTDatasets({ dataset_name: "org/by-name", dataset_config: "nope" }, opts()), /BuilderConfig 'nope' not found\. Available: \['default'\]/);
  });

  test("streaming reads the source on each pass and holds nothing; not streaming reads it once", async () => {
    const reads = () => seen.filter((s) => s.url.endsWith("/resolve/main/train.jsonl") && s.method === "GET").length;
    const n0 = reads();
    const streamed = await loadDatasetByName({ path: "org/by-name", split: "train", streaming: true }, opts());
    assert.equal(streamed.num_rows, null);
    assert.equal(reads(), n0, "nothing is read before the rows are asked for");
    assert.deepEqual(strip(await streamed.toArray()), TRAIN);
    assert.deepEqual(strip(await streamed.skip(4).toArray()), TRAIN.slice(4));
    assert.equal(reads(), n0 + 2, "each pass streams the file again");
    const held = await loadDatasetByName({ path: "org/by-name", split: "train" }, opts());
    const n1 = reads();
    assert.deepEqual(strip(await held.toArray()), TRAIN);
    assert.deepEqual(strip(await held.toArray()), TRAIN);
    assert.equal(reads(), n1, "held rows are re-read from memory");
    await rejects(loadDatasetByName({ path: "org/by-name", split: "train[:2]", streaming: true }, opts()), /cannot be used with streaming/);
  });
});

describe("errors", () => {
  test("a dataset that does not exist: 404 with a token, 401 without; the id and what to check", async () => {
    await rejects(loadSFTDatasets({ dataset_name: "org/missing" }, { endpoint: base, token: GOOD }), /Dataset 'org\/missing' doesn't exist on the Hub/, /check the name/, /HTTP 404 RepoNotFound/);
    await rejects(loadSFTDatasets({ dataset_name: "org/private" }, opts()), /Dataset 'org\/private' doesn't exist on the Hub/, /if it is private, pass a Hugging Face access token \(the HF_TOKEN/, /HTTP 401/);
    const { train } = await loadSFTDatasets({ dataset_name: "org/private" }, { endpoint: base, token: GOOD });
    assert.equal((await train.toArray()).length, 6);
  });

  test("a gated dataset: 401 without a token (accept the terms, give HF_TOKEN), 403 with one not granted; the token never in a message", async () => {
    await rejects(loadSFTDatasets({ dataset_name: "org/gated" }, opts()), /Dataset 'org\/gated' is a gated dataset on the Hub/, /You must be authenticated/, new RegExp(`accept its terms at ${base}/datasets/org/gated`), /HF_TOKEN/, /HTTP 401 GatedRepo/);
    const err = await rejects(loadSFTDatasets({ dataset_name: "org/gated" }, { endpoint: base, token: WRONG }), /gated dataset/, /ask for access/, /HTTP 403 GatedRepo/);
    assert.ok(!err.message.includes(WRONG), "the token is not shown");
    seen.length = 0;
    const { train } = await loadSFTDatasets({ dataset_name: "org/gated" }, { endpoint: base, token: GOOD });
    assert.deepEqual(strip(await train.toArray()), TRAIN);
    assert.ok(seen.length > 0 && seen.every((s) => s.auth === `Bearer ${GOOD}`));
    const errors: string[] = [];
    for (const p of [loadSFTDatasets({ dataset_name: "org/missing" }, { endpoint: base, token: WRONG }), loadSFTDatasets({ dataset_name: "org/private" }, { endpoint: base, token: WRONG })]) {
      errors.push(await p.then(() => "", (e: Error) => e.message));
    }
    assert.ok(errors.every((m) => m && !m.includes(WRONG)), "no message carries the token");
  });

  test("HF_TOKEN and HF_ENDPOINT from the environment, as huggingface_hub reads them", async () => {
    const saved = { t: process.env.HF_TOKEN, e: process.env.HF_ENDPOINT };
    process.env.HF_TOKEN = GOOD;
    process.env.HF_ENDPOINT = base;
    try {
      const { train } = await loadSFTDatasets({ dataset_name: "org/gated" });
      assert.equal((await train.toArray()).length, 6);
    } finally {
      for (const [k, v] of [["HF_TOKEN", saved.t], ["HF_ENDPOINT", saved.e]] as const) {
        if (v === undefined) delete process.env[k];
        else process.env[k] = v;
      }
    }
  });

  test("unknown builders, paths and mixture keys", async () => {
    await rejects(loadDatasetByName({ path: "arrow", data_files: "x.arrow" }), /the arrow builder is not supported by webtune: use one of json, csv, parquet, text/);
    await rejects(loadDatasetByName({ path: "json" }), /At least one data file must be specified/);
    await rejects(loadDatasetByName({ path: "no such thing!" }), /Couldn't find 'no such thing!'/);
    await rejects(loadSFTDatasets({ datasets: [{ path: "json", data_files: "x.jsonl", columns_to_keep: ["a"] }] }), /unexpected keyword argument 'columns_to_keep' \(TRL spells it "columns"\)/);
    await rejects(loadSFTDatasets({}), /Either `datasets` or `dataset_name` must be provided/);
    await rejects(loadSFTDatasets({ dataset_name: "org/by-name", dataset_config: null }, { endpoint: base, revision: "v9" }), /Revision 'v9' doesn't exist for dataset 'org\/by-name'/);
  });
});

describe("TRL mixtures and the builders", () => {
  test("a Hub dataset and a local json builder, each with its columns, concatenated; test_split_size splits them with the seed", async () => {
    const local = join(dir, "extra.jsonl");
    writeFileSync(local, jsonl([{ prompt: "p1", completion: "c1", extra: 1 }, { prompt: "p2", completion: "c2", extra: 2 }]));
    const datasets = [
      { path: "org/sharded", split: "train", columns: ["prompt", "completion"] },
      { path: "json", data_files: local, columns: ["prompt", "completion"] },
    ];
    const all = [...TRAIN.map(({ prompt, completion }) => ({ prompt, completion })), { prompt: "p1", completion: "c1" }, { prompt: "p2", completion: "c2" }];
    const { train, eval: ev } = await loadSFTDatasets({ datasets }, { ...opts(), eval: false });
    assert.deepEqual(strip(await train.toArray()), all);
    assert.equal(ev, null);
    const split = await loadSFTDatasets({ datasets, test_split_size: 0.25 }, { ...opts(), seed: 7, eval: true });
    const [tr, te] = [strip(await split.train.toArray()), strip(await split.eval!.toArray())];
    assert.equal(te.length, 2, "ceil(0.25 · 8) rows in test");
    assert.equal(tr.length, 6);
    const key = (r: Row) => JSON.stringify(r);
    assert.deepEqual([...tr, ...te].map(key).sort(), all.map(key).sort(), "train and test partition the mixture");
    const again = await loadSFTDatasets({ datasets, test_split_size: 0.25 }, { ...opts(), seed: 7, eval: true });
    assert.deepEqual(strip(await again.eval!.toArray()), te, "the same seed, the same split");
    await rejects(loadSFTDatasets({ datasets: [{ path: "org/sharded", columns: ["prompt", "nope"] }] }, opts()), /Column name \['nope'\] not in the dataset/, /'prompt', 'completion', 'id'/);
    await rejects(loadSFTDatasets({ datasets, test_split_size: 8 }, opts()), /test_size=8 should be either positive and smaller than the number of samples 8/);
    await rejects(loadSFTDatasets({ datasets, dataset_streaming: true, test_split_size: 0.25 }, opts()), /cannot be used with streaming/);
  });

  test("fraction: shares of the mixture, no dataset oversampled (TRL's get_dataset)", async () => {
    const local = join(dir, "four.jsonl");
    writeFileSync(local, jsonl([1, 2, 3, 4].map((i) => ({ text: `t${i}` }))));
    const dict = await getDataset({ datasets: [{ path: "org/by-name", columns: ["prompt"], fraction: 0.5 }, { path: "json", data_files: local, fraction: 0.5 }] }, opts());
    const rows = strip(await dict.train!.toArray());
    assert.deepEqual(rows, [...TRAIN.slice(0, 4).map(({ prompt }) => ({ prompt })), ...[1, 2, 3, 4].map((i) => ({ text: `t${i}` }))]);
    await rejects(getDataset({ datasets: [{ path: "json", data_files: local, fraction: 0.5 }, { path: "json", data_files: local }] }), /`fraction` must be set for either all datasets in the mixture or none of them/);
  });

  test("csv, tsv and text builders read as datasets reads them; data_files as a split mapping, a list and a glob", async () => {
    const csv = fixturePath("cases.csv");
    const dict = await loadDatasetDict({ path: "csv", data_files: { train: csv, test: [fixturePath("cases.tsv")] } });
    assert.deepEqual(dict.splits, ["train", "test"]);
    assert.deepEqual(await (await dict.split("train")).toArray(), EXPECTED["cases.csv"]);
    assert.deepEqual(await (await dict.split("test")).toArray(), EXPECTED["cases.tsv"]);
    assert.deepEqual(await (await loadDatasetByName({ path: "text", data_files: fixturePath("cases.txt") })).toArray(), EXPECTED["cases.txt"]);
    mkdirSync(join(dir, "shards"), { recursive: true });
    writeFileSync(join(dir, "shards", "a.jsonl"), jsonl([{ n: 1 }]));
    writeFileSync(join(dir, "shards", "b.jsonl"), jsonl([{ n: 2 }]));
    writeFileSync(join(dir, "shards", "c.txt"), "not matched");
    assert.deepEqual(await (await loadDatasetByName({ path: "json", data_files: join(dir, "shards", "*.jsonl") })).toArray(), [{ n: 1 }, { n: 2 }]);
    assert.deepEqual(await (await loadDatasetByName({ path: "json", data_dir: join(dir, "shards"), data_files: "b.jsonl" })).toArray(), [{ n: 2 }]);
    await rejects(loadDatasetByName({ path: "json", data_files: join(dir, "shards", "*.parquet") }), /Unable to find/);
  });

  test("loadDataset reads .csv, .tsv and .txt by extension, and csv / text by format name", async () => {
    assert.deepEqual(await loadDataset(fixturePath("cases.csv"), { chunk_size: 7 }).toArray(), EXPECTED["cases.csv"]);
    assert.deepEqual(await loadDataset(fixturePath("cases.tsv")).toArray(), EXPECTED["cases.tsv"]);
    assert.deepEqual(await loadDataset(fixturePath("cases.txt"), { chunk_size: 5, keep_linebreaks: true }).toArray(), EXPECTED["cases.txt keep_linebreaks"]);
    assert.deepEqual(await loadDataset(fixturePath("cases.txt"), { sample_by: "paragraph" }).toArray(), EXPECTED["cases.txt paragraph"]);
    const noExt = join(dir, "table");
    writeFileSync(noExt, "a,b\n1,x\n");
    assert.deepEqual(await loadDataset(noExt, { format: "csv" }).toArray(), [{ a: 1, b: "x" }]);
    assert.deepEqual(await loadDataset(noExt, { format: "text" }).toArray(), [{ text: "a,b" }, { text: "1,x" }]);
    const bad = join(dir, "bad.csv");
    writeFileSync(bad, 'a,b\n1,2\n3,4,5\n"open\n');
    await rejects(loadDataset(bad).toArray(), /bad\.csv:3: 3 fields, but the header has 2 \(a, b\)/);
  });

  test("split-name inference as datasets' patterns: directories, file names, else all is train", async () => {
    const re = (p: string) => globToRegExp(p);
    assert.ok(re("**/train[-._ 0-9]*").test("train.csv") && re("**/train[-._ 0-9]*").test("data/train-0.csv"));
    assert.ok(!re("**/train[-._ 0-9]*").test("data/training.csv"));
    assert.ok(re("**/test/**").test("test/a.jsonl") && re("**/test/**").test("x/test/y/b.jsonl"));
    assert.ok(re("*.jsonl").test("a.jsonl") && !re("*.jsonl").test("x/a.jsonl"));
    const root = join(dir, "local-repo");
    mkdirSync(join(root, "data", "train"), { recursive: true });
    mkdirSync(join(root, "data", "validation"), { recursive: true });
    writeFileSync(join(root, "data", "train", "0.jsonl"), jsonl([{ n: 0 }]));
    writeFileSync(join(root, "data", "train", "1.jsonl"), jsonl([{ n: 1 }]));
    writeFileSync(join(root, "data", "validation", "0.jsonl"), jsonl([{ n: 9 }]));
    writeFileSync(join(root, "README.md"), "# not data");
    const dict = await loadDatasetDict({ path: root });
    assert.deepEqual(dict.splits, ["train", "validation"]);
    assert.deepEqual(await (await dict.split("train")).toArray(), [{ n: 0 }, { n: 1 }]);
    await rejects(dict.split("test"), /Unknown split "test"\. Should be one of \['train', 'validation'\]/);
  });
});

test("the command line trains on a Hub dataset by id (HF_ENDPOINT), evaluating on its test split", async () => {
  const { sftMain } = await import("../../src/trainer/cli.ts");
  const { makeModel } = await import("../../tools/make-model.ts");
  const model = join(dir, "model");
  await makeModel(model, { arch: "llama", seed: 3 });
  const out: string[] = [];
  const host = { write: (s: string) => void out.push(s), log: (s: string) => void out.push(s), error: (s: string) => void out.push(s), isTTY: false };
  const saved = process.env.HF_ENDPOINT;
  process.env.HF_ENDPOINT = base;
  seen.length = 0;
  try {
    const code = await sftMain(
      ["--model", model, "--dataset_name", "org/sharded", "--max_steps", "1", "--eval_strategy", "steps", "--eval_steps", "1", "--logging_steps", "1", "--save_strategy", "no", "--output_dir", join(dir, "out"), "--max_length", "32"],
      host,
    );
    assert.equal(code, 0, out.join("\n"));
    assert.ok(seen.some((s) => s.url.endsWith("/resolve/main/data/train-00000-of-00001.parquet")), "the train split was read from the Hub");
    assert.ok(seen.some((s) => s.url.endsWith("/resolve/main/data/test-00000-of-00001.parquet")), "the test split was read for evaluation");
    assert.match(out.join("\n"), /done: 1 steps/);
    out.length = 0;
    const missing = await sftMain(["--model", model, "--dataset_name", "org/missing", "--max_steps", "1", "--output_dir", join(dir, "out2")], host);
    assert.equal(missing, 1);
    assert.match(out.join("\n"), /error: Dataset 'org\/missing' doesn't exist on the Hub/);
    out.length = 0;
    const unbounded = await sftMain(["--model", model, "--dataset_name", "org/sharded", "--dataset_streaming", "--output_dir", join(dir, "out3")], host);
    assert.equal(unbounded, 1);
    assert.match(out.join("\n"), /a streamed dataset .* set max_steps > 0/);
  } finally {
    if (saved === undefined) delete process.env.HF_ENDPOINT;
    else process.env.HF_ENDPOINT = saved;
  }
});
