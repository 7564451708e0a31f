/**
 * The one way patchlm's command-line apps run: parse with @effect/cli, provide the Node
 * platform, print an expected failure as one `error: ...` line (its message names the file, flag
 * or key) and exit 1; logs go to stderr; an interruption (Ctrl-C, SIGTERM) exits 0 after the program's finalizers
 * ran (once, however often the signal comes, and also when the npm script that started it dies:
 * `stopTogether`). `PATCHLM_LOG=debug` shows debug logs; `--log-level debug` (or that variable) also shows the
 * stack trace of an unexpected failure, which is otherwise one line too.
 */
import { constants as osConstants } from "node:os";
import { Command, HelpDoc, Options, ValidationError } from "@effect/cli";
import { NodeContext, NodeRuntime } from "@effect/platform-node";
import { Cause, Console, Effect, HashMap, Inspectable, Logger, LogLevel, Option } from "effect";

const ansi = new RegExp(`${String.fromCharCode(27)}\\[[0-9;]*m`, "g");

/** A parser error as one line of text. */
const helpText = (doc: HelpDoc.HelpDoc): string =>
  HelpDoc.toAnsiText(doc).replace(ansi, "").split("\n").map((l) => l.trim()).filter((l) => l !== "").join(" ");

/**
 * The flag whose value @effect/cli refused: its message quotes the value ("'abc' is not a
 * integer") but not the flag, which is the one given that value on the command line.
 */
const flagGiven = (value: string, argv: ReadonlyArray<string>): string | undefined => {
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const eq = a.indexOf("=");
    if (a.startsWith("--") && eq > 0 && a.slice(eq + 1) === value) return a.slice(0, eq);
    if (a.startsWith("-") && argv[i + 1] === value) return a;
  }
  return undefined;
};

/**
 * Every choice flag of a command tree and its cases, found by walking the command's options (the
 * parser's refusal lists the cases, not the flag).
 */
const choiceFlags = (command: unknown): Array<{ readonly flag: string; readonly cases: ReadonlyArray<string> }> => {
  const out: Array<{ flag: string; cases: ReadonlyArray<string> }> = [];
  const seen = new Set<unknown>();
  const walk = (u: unknown, depth: number): void => {
    if (typeof u !== "object" || u === null || seen.has(u) || depth > 64) return;
    seen.add(u);
    const o = u as { readonly fullName?: unknown; readonly primitiveType?: { readonly _tag?: unknown; readonly alternatives?: unknown } };
    const alternatives = o.primitiveType?._tag === "Choice" ? o.primitiveType.alternatives : undefined;
    if (typeof o.fullName === "string" && Array.isArray(alternatives)) out.push({ flag: o.fullName, cases: alternatives.map((c: ReadonlyArray<unknown>) => String(c[0])) });
    for (const v of Object.values(u)) walk(v, depth + 1);
  };
  walk(command, 0);
  return out;
};

/** The choice flag given a value outside `cases` on the command line, and that value. */
const choiceGiven = (cases: ReadonlyArray<string>, command: unknown, argv: ReadonlyArray<string>): { flag: string; value: string } | undefined => {
  const flags = new Set(choiceFlags(command).filter((c) => c.cases.join(", ") === cases.join(", ")).map((c) => c.flag));
  for (let i = 0; i < argv.length; i++) {
    const eq = argv[i].indexOf("=");
    const [flag, value] = eq > 0 ? [argv[i].slice(0, eq), argv[i].slice(eq + 1)] : [argv[i], argv[i + 1]];
    if (flags.has(flag) && value !== undefined && !cases.includes(value)) return { flag, value };
  }
  return undefined;
};

/** Every flag name of a command tree (`--name`, and short ones like `-n`). */
const flagNames = (command: unknown): Array<string> => {
  const out = new Set<string>();
  const seen = new Set<unknown>();
  const walk = (u: unknown, depth: number): void => {
    if (typeof u !== "object" || u === null || seen.has(u) || depth > 64) return;
    seen.add(u);
    const o = u as { readonly fullName?: unknown; readonly _tag?: unknown };
    if (o._tag === "Single" && typeof o.fullName === "string") out.add(o.fullName);
    for (const v of Object.values(u)) walk(v, depth + 1);
  };
  walk(command, 0);
  return [...out];
};

/** Levenshtein distance, for "did you mean". */
const distance = (a: string, b: string): number => {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) row.push(Math.min(prev[j] + 1, row[j - 1] + 1, prev[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1)));
    prev = row;
  }
  return prev[b.length];
};

/** The known flag nearest to a mistyped one, if it is near enough to be a typo. */
export const nearestFlag = (typed: string, known: ReadonlyArray<string>): string | undefined => {
  const name = typed.split("=")[0];
  const best = [...known].sort((a, b) => distance(name, a) - distance(name, b))[0];
  return best !== undefined && distance(name, best) <= Math.max(2, Math.floor(name.length / 3)) ? best : undefined;
};

const validationLine = (e: ValidationError.ValidationError, command: unknown, argv: ReadonlyArray<string>): string => {
  const text = helpText(e.error);
  const unknown = /^Received unknown argument: '([^']*)'/.exec(text);
  if (unknown !== null) {
    const near = unknown[1].startsWith("-") ? nearestFlag(unknown[1], flagNames(command)) : undefined;
    return `unknown ${unknown[1].startsWith("-") ? "flag" : "argument"} '${unknown[1]}'${near === undefined ? "" : `; did you mean ${near}?`} (--help lists them)`;
  }
  if (ValidationError.isInvalidValue(e)) {
    const quoted = /^'([^']*)' is not an? /.exec(text);
    const flag = quoted === null ? undefined : flagGiven(quoted[1], argv);
    if (flag !== undefined) return `${flag}: ${text}`;
    const cases = /^Expected one of the following cases: (.*)$/.exec(text);
    const given = cases === null ? undefined : choiceGiven(cases[1].split(", "), command, argv);
    if (given !== undefined) return `${given.flag}: '${given.value}' is not one of ${cases![1]}`;
  }
  return text;
};

/** A Node system error (ENAMETOOLONG, EACCES, ...), bare or inside @effect/platform's SystemError. */
const systemError = (u: unknown): { code: string; path?: string; text: string } | undefined => {
  const inner = typeof u === "object" && u !== null && (u as { _tag?: unknown })._tag === "SystemError" ? (u as { cause?: unknown }).cause : u;
  if (!(inner instanceof Error)) return undefined;
  const { code, path } = inner as NodeJS.ErrnoException;
  if (typeof code !== "string" || !/^E[A-Z]+$/.test(code)) return undefined;
  // "ENAMETOOLONG: name too long, mkdir '/tmp/…'": the reason, without the path repeated.
  const reason = inner.message.replace(/^[A-Z]+: /, "").replace(/, \w+ '.*'$/s, "");
  return { code, path, text: reason };
};

/** One line for a failure; `debug` adds the trace of an unexpected one. */
const describe = (cause: Cause.Cause<unknown>, command: unknown, argv: ReadonlyArray<string>, debug: boolean): string => {
  const failure = Cause.failureOption(cause);
  if (Option.isSome(failure)) {
    const e = failure.value;
    if (ValidationError.isValidationError(e)) return `error: ${validationLine(e, command, argv)}`;
    const system = systemError(e);
    if (system !== undefined) return `error: ${system.path === undefined ? "" : `${system.path}: `}${system.code}: ${system.text}`;
    if (e !== null && typeof e === "object" && "message" in e) return `error: ${(e as { message: string }).message}`;
    return `error: ${Inspectable.format(e)}`;
  }
  const defect = Option.getOrUndefined(Cause.dieOption(cause));
  const system = systemError(defect);
  const line =
    system !== undefined
      ? `error: ${system.path === undefined ? "" : `${system.path}: `}${system.code}: ${system.text}`
      : `error: ${defect instanceof Error ? `${defect.name}: ${defect.message.split("\n")[0]}` : Inspectable.format(defect)}`;
  if (debug) return `${line}\n${Cause.pretty(cause)}`;
  return system !== undefined ? line : `${line}\n(an unexpected failure: run again with --log-level debug for its stack trace)`;
};

/**
 * `--log-level LEVEL` taken out of the arguments wherever it stands: @effect/cli knows it only
 * before the subcommand, but a user adds it at the end of the command that failed.
 */
const takeLogLevel = (argv: ReadonlyArray<string>): { args: Array<string>; level: LogLevel.LogLevel | undefined } => {
  const byName = (name: string | undefined) => LogLevel.allLevels.find((l) => l._tag.toLowerCase() === name?.toLowerCase());
  const args: Array<string> = [];
  let level: LogLevel.LogLevel | undefined;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const inline = a.startsWith("--log-level=") ? byName(a.slice("--log-level=".length)) : undefined;
    const next = a === "--log-level" ? byName(argv[i + 1]) : undefined;
    if (inline !== undefined) level = inline;
    else if (next !== undefined) {
      level = next;
      i++;
    } else args.push(a);
  }
  return { args, level };
};

/**
 * @effect/cli echoes a parser error on Console.error before failing with it; runCli prints every
 * failure itself, once, naming the flag. The apps write nothing else with Console.error.
 */
const withoutParserEcho = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Console.consoleWith((console) => Effect.withConsole(effect, { ...console, error: () => Effect.void }));

/** Help and other console output without colour codes when stdout is not a terminal (or NO_COLOR is set). */
const plainWhenPiped = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  process.stdout.isTTY === true && process.env.NO_COLOR === undefined
    ? effect
    : Console.consoleWith((console) =>
        Effect.withConsole(effect, { ...console, log: (...args: ReadonlyArray<unknown>) => console.log(...args.map((a) => (typeof a === "string" ? a.replace(ansi, "") : a))) }),
      );

/**
 * An option's default, also shown in `--help` (which @effect/cli leaves out): use in place of
 * `Options.withDefault(value)`.
 */
export const defaultTo =
  <const B>(value: B, shown: string = Array.isArray(value) ? (value.length === 0 ? "none" : value.join(", ")) : String(value)) =>
  <A>(option: Options.Options<A>): Options.Options<A | B> =>
    option.pipe(Options.withDefault(value), Options.withDescription(`Default: ${shown}.`));

/**
 * One line per log record on stderr — `[12:00:01.234] INFO message key=value` — so a command's
 * stdout (bench and inspect JSON) stays machine-readable.
 */
export const stderrLogger = Logger.make(({ logLevel, message, date, annotations, cause }) => {
  const parts = (Array.isArray(message) ? message : [message]).map((m) => (typeof m === "string" ? m : Inspectable.format(m)));
  const extra = [...HashMap.toEntries(annotations)].map(([k, v]) => `${k}=${typeof v === "string" ? v : Inspectable.format(v)}`);
  const time = date.toISOString().slice(11, 23);
  process.stderr.write(`[${time}] ${logLevel.label} ${[...parts, ...extra].join(" ")}\n`);
  if (!Cause.isEmpty(cause)) process.stderr.write(`${Cause.pretty(cause)}\n`);
});

/**
 * Signals reach the app however it is started, and it stops once for them:
 * - A repeat of the stop signal within 2 s is the same stop (a terminal's Ctrl-C reaches both
 *   `npm run` and the app, and npm relays it again): it is ignored rather than left to Node's
 *   default, which would kill the app mid-checkpoint. A repeat after that exits at once.
 * - Started by an npm script, the app is stopped as by SIGTERM when that parent dies (kill -9 of
 *   npm, or a shell between them that a signal ended): nothing would relay a signal any more,
 *   and the app must not run on as an orphan.
 */
const stopTogether = (): void => {
  let first: number | undefined;
  const repeated = (signal: NodeJS.Signals) => {
    if (first === undefined) first = Date.now();
    else if (Date.now() - first > 2000) {
      process.stderr.write(`${signal} again: exiting now, without waiting for the step in flight or its checkpoint\n`);
      process.exit(128 + (osConstants.signals[signal] ?? 0));
    }
  };
  process.on("SIGINT", repeated);
  process.on("SIGTERM", repeated);
  if (process.env.npm_lifecycle_event === undefined) return;
  const parent = process.ppid;
  const watch = setInterval(() => {
    if (process.ppid === parent) return;
    clearInterval(watch);
    process.stderr.write(`[${new Date().toISOString().slice(11, 23)}] WARN the npm script that started this process (pid ${parent}) ended: stopping as on SIGTERM\n`);
    process.kill(process.pid, "SIGTERM");
  }, 250);
  watch.unref();
};

export const runCli = <Name extends string, E, A>(
  command: Command.Command<Name, NodeContext.NodeContext, E, A>,
  app: { readonly name: string; readonly version: string },
): void => {
  const run = Command.run(command, app);
  const [runtime, script, ...rest] = process.argv;
  const { args, level } = takeLogLevel(rest);
  const logLevel = level ?? (process.env.PATCHLM_LOG === "debug" ? LogLevel.Debug : LogLevel.Info);
  const debug = LogLevel.lessThanEqual(logLevel, LogLevel.Debug);
  run([runtime, script, ...args]).pipe(
    withoutParserEcho,
    plainWhenPiped,
    Effect.tapErrorCause((cause) =>
      Cause.isInterruptedOnly(cause) ? Effect.void : Effect.sync(() => void process.stderr.write(`${describe(cause, command, args, debug)}\n`)),
    ),
    Effect.provide(NodeContext.layer),
    Logger.withMinimumLogLevel(logLevel),
    Effect.provide(Logger.replace(Logger.defaultLogger, stderrLogger)),
    (e) => NodeRuntime.runMain(e, { disableErrorReporting: true, disablePrettyLogger: true }),
  );
  stopTogether();
};
