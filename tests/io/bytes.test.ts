// The one-file readers of src/io (LocalFile, BlobFile, HttpFile) read the same bytes the same way: size,
// ranged reads, a stream from the start, and range errors that name the file. HttpFile is served by a local
// HTTP server with and without Range support; its errors say what to check. No GPU.
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { BlobFile } from "../../src/io/blob.ts";
import { checkRange, isNotFound } from "../../src/io/fs.ts";
import { httpFile } from "../../src/io/http.ts";
import { LocalFile } from "../../src/io/local.ts";
import type { ByteFile } from "../../src/io/source.ts";

const data = Uint8Array.from({ length: 200_000 }, (_, i) => (i * 31 + (i >> 8)) & 0xff);
let dir = "";
let server: Server;
let base = "";
const log: { url: string; range?: string; auth?: string; extra?: string }[] = [];

before(async () => {
  dir = await mkdtemp(join(tmpdir(), "webtune-io-"));
  await writeFile(join(dir, "data.bin"), data);
  server = createServer((req, res) => {
    const url = req.url ?? "";
    log.push({ url, range: req.headers.range, auth: req.headers.authorization, extra: req.headers["x-extra"] as string | undefined });
    if (url.startsWith("/private")) return void res.writeHead(401).end();
    if (url.startsWith("/gated")) return void res.writeHead(403, { "X-Error-Code": "GatedRepo" }).end();
    if (!url.endsWith("/data.bin")) return void res.writeHead(404).end();
    const m = url.startsWith("/ranges/") ? /^bytes=(\d+)-(\d+)$/.exec(req.headers.range ?? "") : null;
    if (m) {
      const [s, e] = [Number(m[1]), Math.min(Number(m[2]), data.length - 1)];
      res.writeHead(206, { "Content-Range": `bytes ${s}-${e}/${data.length}`, "Content-Length": e - s + 1 });
      return void res.end(data.subarray(s, e + 1));
    }
    res.writeHead(200, { "Content-Length": data.length });
    res.end(data);
  });
  await new Promise<void>((ok) => server.listen(0, "127.0.0.1", ok));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

after(async () => {
  await new Promise((ok) => server.close(ok));
  await rm(dir, { recursive: true, force: true });
});

async function all(chunks: AsyncIterable<Uint8Array>): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  for await (const c of chunks) parts.push(c);
  const out = new Uint8Array(parts.reduce((n, c) => n + c.length, 0));
  let at = 0;
  for (const c of parts) out.set(c, (at += c.length) - c.length);
  return out;
}

/** The same reads through any reader of `data`, whose range errors start with `label`. */
async function checkFile(f: ByteFile, label: string): Promise<void> {
  assert.equal(await f.size(), data.length);
  assert.deepEqual(await f.read(1000, 1017), data.subarray(1000, 1017));
  assert.deepEqual(await f.read(5, 5), new Uint8Array(0));
  assert.deepEqual(await f.read(), data);
  assert.deepEqual(await all(f.stream(7777)), data);
  const escaped = label.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&");
  await assert.rejects(f.read(10, data.length + 1), new RegExp(`^Error: ${escaped}: bytes \\[10, ${data.length + 1}\\) asked for, but the file has ${data.length} bytes$`));
}

test("LocalFile: reads, a stream in chunks of the size asked for, and the error for a file it cannot open", async () => {
  const path = join(dir, "data.bin");
  await checkFile(new LocalFile(path), path);
  const sizes: number[] = [];
  for await (const c of new LocalFile(path).stream(65536)) sizes.push(c.length);
  assert.deepEqual(sizes, [65536, 65536, 65536, data.length - 3 * 65536]);
  await assert.rejects(new LocalFile(join(dir, "nope.bin"), "nope.bin in the folder").size(), /^Error: cannot open nope\.bin in the folder: /);
  const missing = new LocalFile(join(dir, "nope.bin"), "nope.bin", (e) => new Error(`gone (${isNotFound(e)})`));
  await assert.rejects(missing.read(), /^Error: gone \(true\)$/);
  await assert.rejects(all(missing.stream(10)), /^Error: gone \(true\)$/);
});

test("BlobFile: a File's slices", async () => {
  await checkFile(new BlobFile(new File([data], "data.bin"), "the file data.bin"), "the file data.bin");
});

test("HttpFile: ranged reads where the server honours Range, one kept download where it does not", async () => {
  log.length = 0;
  await checkFile(httpFile(`${base}/ranges/data.bin`), `${base}/ranges/data.bin`);
  assert.ok(log.filter((r) => r.range === undefined).length === 2, "only read() and stream() of the whole file are plain GETs");
  log.length = 0;
  const f = httpFile(`${base}/plain/data.bin`, { token: "hf_x", headers: { "X-Extra": "1" } });
  await checkFile(f, `${base}/plain/data.bin`);
  assert.equal(log.length, 1, "the whole file once (asked for by size()), then every read and the stream from memory");
  assert.deepEqual(log[0], { url: "/plain/data.bin", range: "bytes=0-0", auth: "Bearer hf_x", extra: "1" });
});

test("HttpFile: errors say what to check, naming what the file is", async () => {
  await assert.rejects(httpFile(`${base}/ranges/missing.bin`, {}, "dataset").read(), new RegExp(`${base}/ranges/missing\\.bin: HTTP 404 Not Found: no such file: check the URL$`));
  await assert.rejects(all(httpFile(`${base}/private/data.bin`, {}, "dataset").stream(10)), /HTTP 401 Unauthorized: the dataset may be private or gated \(pass a Hugging Face access token as the `token` option/);
  await assert.rejects(httpFile(`${base}/private/data.bin`, { token: "hf_x" }, "dataset").size(), /the token given was refused or has no access: .*\(gated datasets\)/);
  await assert.rejects(httpFile(`${base}/gated/data.bin`, {}, "dataset").read(0, 4), /HTTP 403 Forbidden \(GatedRepo\): the dataset is gated: accept its terms on its page/);
  await assert.rejects(httpFile("http://127.0.0.1:1/x.bin").read(), /^Error: fetching http:\/\/127\.0\.0\.1:1\/x\.bin failed: .*\(check the address and the network\)$/);
});

test("checkRange: [start, end) within the size, integers", () => {
  assert.deepEqual(checkRange("f", 0, 3, 3), [0, 3]);
  for (const [s, e] of [[-1, 2], [2, 1], [0, 4], [0.5, 2]]) assert.throws(() => checkRange("f in d", s!, e!, 3), new RegExp(`^Error: f in d: bytes \\[${s}, ${e}\\) asked for, but the file has 3 bytes$`));
});
