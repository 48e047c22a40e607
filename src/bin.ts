#!/usr/bin/env node
// The package's `webtune` command (package.json "bin"; built to lib/bin.js): `webtune sft [flags]` runs
// train.ts's program (src/trainer/cli.ts), `webtune --help` lists the commands. Under Node
// (`npx webtune`) and Deno (`deno run -A npm:webtune`, or `deno run -A node_modules/.bin/webtune`).
import { processArgs, webtuneMain } from "./trainer/cli.ts";

const proc = processArgs();
// Exit explicitly: a live GPU device would otherwise keep the process running.
proc.exit(await webtuneMain(proc.args));
