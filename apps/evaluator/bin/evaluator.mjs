#!/usr/bin/env node
// The evaluator as one process: tsx's loader is registered in this process, then the app runs in
// it, so a signal sent to this process reaches the evaluator itself (no relaying parent).
import "tsx";
await import("../src/main.ts");
