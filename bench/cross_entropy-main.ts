// Prints the cross-entropy benchmark: `node --import tsx bench/cross_entropy-main.ts`.
import { benchCrossEntropy } from "./cross_entropy.ts";

const rows = await benchCrossEntropy();
const r0 = rows[0]!;
console.log(`LM-head loss forward + backward, T=${r0.T} C=${r0.C} V=${r0.V}, adapter ${r0.adapter}`);
const header = `${"".padEnd(40)} ${"chunk".padStart(6)} ${"median ms".padStart(10)} ${"peak MiB".padStart(9)} ${"loss".padStart(9)}  dh diff  runs ms`;
console.log(header);
console.log("-".repeat(header.length + 12));
for (const r of rows) {
  console.log(
    `${r.name.padEnd(40)} ${String(r.chunk_size ?? "all").padStart(6)} ${r.median_ms.toFixed(0).padStart(10)} ` +
      `${(r.peak_bytes / 2 ** 20).toFixed(1).padStart(9)} ${r.loss.toFixed(5).padStart(9)}  ${r.dhidden_max_rel_diff.toExponential(1).padStart(7)}  ${r.runs_ms.join(", ")}`,
  );
}
// The device keeps the event loop alive.
process.exit(0);
