// A server whose Content-Length lies, or that cuts a transfer short (issue 14's fault battery): every read path
// fails with an error naming the URL and the file and saying what was announced and what came, never a bare
// RangeError / "terminated". A local HTTP server. No GPU.
// Runs under Node (node --import tsx --test) and Deno (deno test -A --no-check).
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { httpFile } from "../../src/io/http.ts";
import { loadDataset } from "../../src/data/sources.ts";
import { rejects } from "../helpers.ts";

const BODY = '{"a":1}\n{"a":2}\n';
let server: Server;
let base = "";

before(async () => {
  server = createServer((req, res) => {
    const path = (req.url ?? "").replace(/\?.*$/, "");
    if (path.endsWith("/cut.jsonl")) {
      // Announces 10,000 bytes, sends 16, then drops the connection.
      res.writeHead(200, { "Content-Length": "10000", "Content-Type": "application/octet-stream" });
      res.write(BODY);
      setTimeout(() => res.socket?.destroy(), 20);
    } else if (path.endsWith("/huge.json")) {
      // Announces a petabyte.
      res.writeHead(200, { "Content-Length": String(1e15) });
      res.write(BODY);
      setTimeout(() => res.socket?.destroy(), 20);
    } else {
      res.writeHead(404).end();
    }
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
after(() => new Promise<void>((r) => server.close(() => r())));

describe("lying Content-Length", () => {
  test("a whole read of a cut transfer names the URL, the file and the bytes", async () => {
    const f = httpFile(`${base}/data/cut.jsonl`, { cache: false }, "dataset file");
    const err = await rejects(f.read(), /\/data\/cut\.jsonl: the download.* broke off after \d+ bytes of the 10000 its Content-Length announced/);
    assert.ok(!(err instanceof RangeError) && !/^terminated$/.test(err.message));
  });

  test("a petabyte Content-Length is never allocated", async () => {
    const f = httpFile(`${base}/data/huge.json`, { cache: false }, "dataset file");
    const err = await rejects(f.read(), /\/data\/huge\.json: the download.* broke off after 16 bytes of the 1000000000000000 its Content-Length announced/);
    assert.ok(!(err instanceof RangeError));
  });

  test("streaming a dataset from the URL: the same, naming the file", async () => {
    await rejects(loadDataset(`${base}/data/cut.jsonl`, { cache: false } as never).toArray(), /cut\.jsonl: the download.* broke off after 16 bytes of the 10000/);
  });
});
