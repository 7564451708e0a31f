// Worker entry of the encode pool. Plain CommonJS, so that it starts the same way under tsx, under
// jest (whose transform does not reach worker threads) and under plain node: it installs tsx's
// require hook, then loads the TypeScript worker body next to it.
require("tsx/cjs/api").register();
require("./encodeWorker.ts");
