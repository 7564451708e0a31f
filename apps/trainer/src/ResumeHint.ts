/**
 * The trainer's own command names in what it prints. The library reports that a run stopped
 * early or already exists (`Trainer.Summary.ended`, `TrainError` RunExists, each naming the
 * run); the app says which of its commands continues it.
 */
import { Effect } from "effect";
import { Trainer } from "@patchlm/train";

const resumeCommand = (name: string): string => `\`trainer resume ${name}\``;

/** Around `train` and `resume`: how to continue a run that stopped early, and how to resume one that exists. */
export const withResumeHint = <E, R>(self: Effect.Effect<Trainer.Summary, E, R>): Effect.Effect<Trainer.Summary, E, R> =>
  self.pipe(
    Effect.tap((s) => (s.ended === "finished" ? Effect.void : Effect.logInfo(`continue with ${resumeCommand(s.name)}`))),
    Effect.mapError((e) =>
      e instanceof Trainer.TrainError && e.reason === "RunExists"
        ? (new Trainer.TrainError({ ...e, detail: `${e.detail}; resume it with ${resumeCommand(e.run)} or pick another --name` }) as E)
        : e,
    ),
  );
