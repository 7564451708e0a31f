/**
 * The number schemas every config shares, so that a count, a size or a fraction is checked, and
 * reported, the same way wherever a user writes one.
 */
import { Schema } from "effect";

/** A count or size: 1, 2, 3, ... */
export const PositiveInt = Schema.Int.pipe(Schema.positive());

/** An index, an offset or an optional count: 0, 1, 2, ... */
export const NonNegativeInt = Schema.Int.pipe(Schema.nonNegative());

/** A finite amount above 0 (a learning rate, a token budget, an epsilon). */
export const PositiveNumber = Schema.Number.pipe(Schema.finite(), Schema.positive());

/** A finite amount of 0 or more. */
export const NonNegativeNumber = Schema.Number.pipe(Schema.finite(), Schema.nonNegative());

/** A fraction or a probability in [0, 1] (λ, a validation share, an Adam β). */
export const UnitInterval = Schema.Number.pipe(Schema.between(0, 1));
