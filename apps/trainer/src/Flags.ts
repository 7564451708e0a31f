/**
 * The flags shared by more than one command, and the train command's (its handler turns them
 * into a config overlay). Declared apart from Cli.ts so that the handlers can name their type
 * without importing the command tree.
 */
import { Command, Options } from "@effect/cli";
import { defaultTo } from "@patchlm/cli";
import { Backend } from "@patchlm/core";
import { Presets } from "@patchlm/model";
import { Registry } from "@patchlm/patching";

export const backend = Options.choice("backend", Backend.Choice.literals).pipe(
  Options.withDescription("compute backend (default: PATCHLM_BACKEND, then the best available)"),
  Options.optional,
);

export const precision = Options.choice("precision", Backend.Precision.literals).pipe(
  Options.withDescription("matmul precision: fp32, or bf16 (bf16 operands, fp32 sums; native backend, CPUs with AVX512_BF16)"),
  Options.optional,
);

export const trainOptions = {
  config: Options.file("config").pipe(Options.withDescription("JSON or YAML run config; flags override it"), Options.optional),
  name: Options.text("name").pipe(Options.withDescription("run name (directory under --runs-dir)"), Options.optional),
  runsDir: Options.text("runs-dir").pipe(Options.optional),
  data: Options.text("data").pipe(Options.withDescription("prepared data directory"), Options.optional),
  preset: Options.text("preset").pipe(Options.withDescription(`model preset: ${Presets.names.join(", ")}`), Options.optional),
  patchSize: Options.integer("patch-size").pipe(Options.withDescription("K; 1 trains a token-only baseline"), Options.optional),
  patchFraction: Options.float("patch-fraction").pipe(Options.withDescription("λ, the share of data read at patch level"), Options.optional),
  strategy: Options.text("strategy").pipe(
    Options.withDescription(`patch strategy: ${Registry.names(Registry.builtins).join(", ")}, or one of --strategy-module's`),
    Options.optional,
  ),
  strategyModule: Options.text("strategy-module").pipe(
    Options.withDescription("a .js/.ts module exporting patch strategies of your own (recorded with the run by path and sha256)"),
    Options.optional,
  ),
  switchPolicy: Options.choice("switch-policy", ["reset", "continue"]).pipe(Options.optional),
  tokens: Options.integer("tokens").pipe(Options.withDescription("total token budget D"), Options.optional),
  batchTokens: Options.integer("batch-tokens").pipe(Options.withDescription("tokens per optimizer step"), Options.optional),
  seqLen: Options.integer("seq-len").pipe(Options.withDescription("positions T per sequence"), Options.optional),
  microBatch: Options.integer("micro-batch").pipe(Options.withDescription("sequences per micro-batch"), Options.optional),
  lr: Options.float("lr").pipe(Options.optional),
  warmup: Options.integer("warmup").pipe(Options.withDescription("warmup steps (per phase under the reset policy)"), Options.optional),
  seed: Options.integer("seed").pipe(Options.optional),
  backend,
  precision,
  maxSteps: Options.integer("max-steps").pipe(Options.withDescription("stop (resumably) after this many steps"), Options.optional),
  // Plain text, parsed by ConfigFile.parseOverrides: its error names the pair ("--set k: expected
  // key.path=value"), where @effect/cli's key/value parser says only that text has no default.
  set: Options.text("set").pipe(Options.withDescription("override any config key: --set optim.minLr=3e-5; repeatable"), Options.repeated, defaultTo([] as ReadonlyArray<string>)),
};

export type TrainFlags = Command.Command.ParseConfig<typeof trainOptions>;
