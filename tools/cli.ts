// The entry point of a tools/ script: runs main(argv) when the module is the one started (node/tsx or Deno),
// not when it is imported, printing an error's message and exiting 1 on failure.
import { resolve } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";

export function runIfMain(meta: ImportMeta, main: (argv: string[]) => Promise<void>): void {
  const deno = (meta as ImportMeta & { main?: boolean }).main;
  const script = process.argv[1];
  const isMain = typeof deno === "boolean" ? deno : script !== undefined && resolve(script) === fileURLToPath(meta.url);
  if (!isMain) return;
  main(process.argv.slice(2)).catch((e: unknown) => {
    console.error(e instanceof Error ? e.message : e);
    process.exit(1);
  });
}
