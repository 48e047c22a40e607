// `npm run bench`: every benchmark under Node (Dawn; SwiftShader without a GPU) — matmul beside
// tfjs-webgpu, flash attention beside attention composed from plain ops, and the fused LM-head
// cross-entropy beside the composed one. The script then runs bench/matmul.ts under Deno as well
// (wgpu; llvmpipe without a GPU).
import { benchAttention } from "./attention.ts";
import { benchCrossEntropy, printCrossEntropy } from "./cross_entropy.ts";
import { benchMatmul } from "./matmul.ts";

await benchMatmul();
await benchAttention();
printCrossEntropy(await benchCrossEntropy());
// The device keeps the event loop alive.
process.exit(0);
