import { describe, expect, it } from 'vitest';
import { backoff, retry } from '../../src/engine/retry.js';

/** A body that fails with `error` on its first `failures` tries, then returns its try's number. */
function failing(failures: number, error: unknown = new Error('held')) {
  const tries: number[] = [];
  const body = async (attempt: number) => {
    tries.push(attempt);
    if (attempt <= failures) throw error;
    return attempt;
  };
  return { body, tries };
}

const quick = { baseDelayMs: 1, maxDelayMs: 4 };

describe('retry', () => {
  it('tries again while retryOn says so, telling onRetry each failure and the wait before the next try', async () => {
    const { body, tries } = failing(3);
    const retries: { attempt: number; delayMs: number }[] = [];
    const result = await retry(body, { ...quick, attempts: 10, retryOn: () => true, onRetry: ({ attempt, delayMs }) => void retries.push({ attempt, delayMs }) });
    expect(result).toBe(4);
    expect(tries).toEqual([1, 2, 3, 4]);
    expect(retries.map((r) => r.attempt)).toEqual([1, 2, 3]);
    for (const { attempt, delayMs } of retries) {
      const exponential = Math.min(quick.maxDelayMs, quick.baseDelayMs * 2 ** (attempt - 1));
      expect(delayMs).toBeGreaterThanOrEqual(Math.round(exponential * 0.5));
      expect(delayMs).toBeLessThanOrEqual(Math.round(exponential * 1.5));
    }
  });

  it('throws an error retryOn refuses as it is, without another try', async () => {
    const refused = new Error('syntax');
    const { body, tries } = failing(5, refused);
    await expect(retry(body, { ...quick, attempts: 10, retryOn: (error) => error !== refused, giveUp: () => new Error('gave up') })).rejects.toBe(refused);
    expect(tries).toEqual([1]);
  });

  it('gives up after `attempts` tries in all, throwing what giveUp makes of the last failure', async () => {
    const last = new Error('held');
    const { body, tries } = failing(5, last);
    const seen: unknown[] = [];
    const failure = await retry(body, {
      ...quick,
      attempts: 3,
      retryOn: () => true,
      giveUp: (error, attempts) => {
        seen.push(error, attempts);
        return new Error(`gave up after ${attempts}`);
      },
    }).catch((error: unknown) => error);
    expect((failure as Error).message).toBe('gave up after 3');
    expect(seen).toEqual([last, 3]);
    expect(tries).toEqual([1, 2, 3]);
  });

  it('with firstRetryAtOnce, the retry after the first failure does not wait', async () => {
    const { body } = failing(3);
    const delays: number[] = [];
    await retry(body, { baseDelayMs: 50, maxDelayMs: 50, attempts: Infinity, retryOn: () => true, firstRetryAtOnce: true, onRetry: ({ delayMs }) => void delays.push(delayMs) });
    expect(delays[0]).toBe(0);
    expect(delays.slice(1).every((delay) => delay >= 25)).toBe(true);
  });

  it('tries no more once the deadline has passed, and no wait reaches past it', async () => {
    const { body, tries } = failing(Infinity);
    const delays: number[] = [];
    const lost = new Error('lost');
    const deadline = Date.now() - 1;
    await expect(
      retry(body, { baseDelayMs: 10_000, maxDelayMs: 10_000, attempts: Infinity, deadline, waitBeforeFirstTry: true, retryOn: () => true, onRetry: ({ delayMs }) => void delays.push(delayMs), giveUp: () => lost }),
    ).rejects.toBe(lost);
    expect(tries).toEqual([1]);
    expect(delays).toEqual([]);
  });

  it('backoff doubles from the base up to the maximum, within ±50% jitter', () => {
    const policy = { attempts: Infinity, baseDelayMs: 100, maxDelayMs: 1000 };
    for (const [attempt, exponential] of [[1, 100], [2, 200], [4, 800], [5, 1000], [60, 1000], [2000, 1000]] as const) {
      const delay = backoff(attempt, policy);
      expect(delay).toBeGreaterThanOrEqual(exponential * 0.5);
      expect(delay).toBeLessThanOrEqual(exponential * 1.5);
    }
  });
});
