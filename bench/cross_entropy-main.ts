// Prints the cross-entropy benchmark: `node --import tsx bench/cross_entropy-main.ts`.
import { benchCrossEntropy, printCrossEntropy } from "./cross_entropy.ts";

printCrossEntropy(await benchCrossEntropy());
// The device keeps the event loop alive.
process.exit(0);
