/**
 * The trainer's own command names in what it prints. The library reports that a run stopped
 * early or already exists (`Trainer.Summary.ended`, `TrainError` RunExists, each naming the
 * run); the app says which of its commands continues it.
 */
import * as path from "node:path";
import { Effect } from "effect";
import { Trainer } from "@patchlm/train";

const resumeCommand = (name: string): string => `\`trainer resume ${name}\``;

/**
 * What names a run to `resume`: its name when it lives at `runs/<name>` (resume's default), else
 * its directory, relative to here when it lies below (a copy or another --runs-dir must not be
 * resumed as the run of that name under runs/).
 */
const runArgument = (s: Pick<Trainer.Summary, "name" | "runDir">): string => {
  if (path.resolve(s.runDir) === path.resolve("runs", s.name)) return s.name;
  const relative = path.relative(process.cwd(), s.runDir);
  return relative !== "" && !relative.startsWith("..") && !path.isAbsolute(relative) ? relative : path.resolve(s.runDir);
};

/** Around `train` and `resume`: how to continue a run that stopped early, and how to resume one that exists. */
export const withResumeHint = <E, R>(self: Effect.Effect<Trainer.Summary, E, R>): Effect.Effect<Trainer.Summary, E, R> =>
  self.pipe(
    Effect.tap((s) => (s.ended === "finished" ? Effect.void : Effect.logInfo(`continue with ${resumeCommand(runArgument(s))}`))),
    Effect.mapError((e): E => {
      const error: unknown = e;
      return error instanceof Trainer.TrainError && error.reason === "RunExists"
        ? (new Trainer.TrainError({ ...error, detail: `${error.detail}; resume it with ${resumeCommand(error.run)} or pick another --name` }) as E)
        : e;
    }),
  );
