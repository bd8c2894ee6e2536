import { expect } from 'vitest';
import { type ErrorKind, type ErrorLocation, type FactOf, TandemError } from '../../src/errors/index.js';

/** The facts a test states about an error: its kind, any of that kind's fields, and where it was found. */
export type ExpectedFact<K extends ErrorKind> = { kind: K } & { [F in keyof FactOf<K>]?: unknown };
export type ExpectedPlace = ErrorLocation & { exitCode?: 1 | 2 };

/**
 * Runs `run` (or awaits it), expects a TandemError of that kind with those facts (fields not named
 * are not compared; asymmetric matchers work) and that location, and returns it.
 */
export async function expectError<K extends ErrorKind>(run: Promise<unknown> | (() => unknown), fact: ExpectedFact<K>, place: ExpectedPlace = {}): Promise<TandemError> {
  const outcome = await (typeof run === 'function' ? Promise.resolve().then(run) : run).then(
    (value: unknown) => ({ value }),
    (error: unknown) => ({ error }),
  );
  if (!('error' in outcome)) throw new Error(`expected a ${fact.kind} error, got a result: ${JSON.stringify(outcome.value)}`);
  const { error } = outcome;
  if (!(error instanceof TandemError)) throw error;
  expect(error.fact).toMatchObject(fact);
  expect(error).toMatchObject(place);
  return error;
}
