#!/usr/bin/env node
// The trainer as one process: tsx's loader is registered in this process, then the app runs in
// it. No relaying parent (as the tsx CLI would add), so a signal sent to this process — `kill`, a
// process manager, `docker stop` — reaches the trainer itself.
import "tsx";
await import("../src/main.ts");
