// The benchmarks under Node (Dawn; SwiftShader without a GPU). `npm run bench` then runs bench/matmul.ts
// under Deno as well (wgpu; llvmpipe without a GPU).
import { benchMatmul } from "./matmul.ts";

await benchMatmul();
// The device keeps the event loop alive.
process.exit(0);
