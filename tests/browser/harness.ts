// What the browser tests share on the Node side: the system Chromium and its flags, a page bundle checked
// for Node-only code, a localhost server (with HTTP ranges for model files), and reading a page's results.
import assert from "node:assert/strict";
import { readFileSync, statSync } from "node:fs";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { build } from "esbuild";
import type { Page } from "playwright-core";

export const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
export const QUIET = ["--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"];
export const WEBGPU = ["--enable-unsafe-webgpu", "--use-webgpu-adapter=swiftshader", "--enable-features=Vulkan"];

/** A page script bundled for the browser, asserted free of Dawn and of static node: imports. */
export async function bundlePage(entry: URL): Promise<string> {
  const bundle = await build({ entryPoints: [entry.pathname], bundle: true, format: "esm", platform: "browser", write: false, logLevel: "error" });
  const js = bundle.outputFiles[0]!.text;
  // Dawn (the `webgpu` package) is for Node only; node: modules are only ever named through a variable.
  assert.doesNotMatch(js, /dawn\.node|node_modules\/webgpu/, "the browser bundle pulls in Dawn");
  assert.doesNotMatch(js, /\bfrom\s*["']node:|\bimport\s*\(\s*["']node:|\brequire\s*\(\s*["']node:|\bimport\s*["']node:/, "the browser bundle imports a node: module");
  return js;
}

/** A file on disk, honouring Range requests as the Hub does. */
export function serveFile(path: string, req: IncomingMessage, res: ServerResponse): void {
  let size: number;
  try {
    size = statSync(path).size;
  } catch {
    res.writeHead(404).end();
    return;
  }
  const head = req.method === "HEAD";
  const m = req.headers.range && /^bytes=(\d+)-(\d*)$/.exec(req.headers.range);
  if (m) {
    const start = Number(m[1]);
    const end = m[2] ? Math.min(Number(m[2]), size - 1) : size - 1;
    const body = readFileSync(path).subarray(start, end + 1);
    res.writeHead(206, { "content-range": `bytes ${start}-${end}/${size}`, "content-length": body.length, "accept-ranges": "bytes" });
    res.end(head ? undefined : body);
    return;
  }
  res.writeHead(200, { "content-length": size, "accept-ranges": "bytes" });
  res.end(head ? undefined : readFileSync(path));
}

/**
 * A server on 127.0.0.1 (an ephemeral port) whose "/" loads `script` as a module from "/page.js"; `route`
 * answers other paths (return false for a 404). The page is at `origin` (http://localhost:PORT: WebGPU
 * needs a secure context, and about:blank has no navigator.gpu).
 */
export async function servePage(
  title: string,
  script: string,
  route: (path: string, req: IncomingMessage, res: ServerResponse) => boolean = () => false,
): Promise<{ server: Server; origin: string; close(): Promise<void> }> {
  const html = `<!doctype html><meta charset="utf-8"><title>${title}</title><link rel="icon" href="data:,"><script type="module" src="/page.js"></script>`;
  const server = createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0]!;
    if (path === "/page.js") res.writeHead(200, { "content-type": "text/javascript" }).end(script);
    else if (path === "/") res.writeHead(200, { "content-type": "text/html" }).end(html);
    else if (!route(path, req, res)) res.writeHead(404).end();
  });
  await new Promise<void>((ok) => server.listen(0, "127.0.0.1", ok));
  const addr = server.address();
  const origin = `http://localhost:${typeof addr === "object" && addr ? addr.port : 0}`;
  return { server, origin, close: () => new Promise<void>((ok) => server.close(() => ok())) };
}

/** Opens `url` and waits for the promise the page put on globalThis[key] (its results). */
export async function pageResults<T>(page: Page, url: string, key = "__webtune"): Promise<T> {
  await page.goto(url);
  await page.waitForFunction((k) => (globalThis as Record<string, unknown>)[k] !== undefined, key, { timeout: 60_000 });
  return (await page.evaluate((k) => (globalThis as unknown as Record<string, Promise<unknown>>)[k], key)) as T;
}
