/**
 * The one retry loop: the executor's lock retries, the backfill's and the reconnect after a lost
 * session all run through `retry`, each with its own policy. Waits grow exponentially with jitter,
 * so processes that failed together do not all come back at the same moment.
 */

export interface RetryPolicy {
  /** Tries in all, the first included (Infinity: until `retryOn` says no or the deadline passes). */
  attempts: number;
  /** First backoff; doubles each time, with ±50% jitter. */
  baseDelayMs: number;
  maxDelayMs: number;
}

export interface RetryOptions extends RetryPolicy {
  /** Whether a failure is worth another try; any other error is thrown as it is. */
  retryOn: (error: unknown) => boolean;
  /** No try begins after this time (ms since the epoch), and no wait reaches past it. */
  deadline?: number;
  /**
   * The retry after the first failure comes at once. For a try that behaves differently the second
   * time (the backfill skips locked rows instead of waiting for them), waiting first gains nothing.
   */
  firstRetryAtOnce?: boolean;
  /** Waits before the first try too: a server that just went away is seldom back at once. */
  waitBeforeFirstTry?: boolean;
  /** Called after each retryable failure, before the wait; it may take its time (it is awaited). */
  onRetry?: (failure: { error: unknown; attempt: number; delayMs: number }) => void | Promise<void>;
  /** What to throw when the tries or the time run out; the last failure by default. */
  giveUp?: (error: unknown, attempts: number) => unknown;
}

/** Runs `body` (given the try's number, from 1) until it succeeds or the policy gives up. */
export async function retry<T>(body: (attempt: number) => Promise<T>, options: RetryOptions): Promise<T> {
  const wait = (attempt: number) => {
    const delay = backoff(attempt, options);
    return options.deadline === undefined ? delay : Math.max(0, Math.min(delay, options.deadline - Date.now()));
  };
  if (options.waitBeforeFirstTry) await sleep(wait(1));
  for (let attempt = 1; ; attempt++) {
    try {
      return await body(attempt);
    } catch (error) {
      if (!options.retryOn(error)) throw error;
      const outOfTime = options.deadline !== undefined && Date.now() >= options.deadline;
      if (attempt >= options.attempts || outOfTime) throw options.giveUp ? await options.giveUp(error, attempt) : error;
      // The wait before try n+1 is the n-th backoff, or the (n+1)-th when the first try waited too.
      const delayMs = options.firstRetryAtOnce && attempt === 1 ? 0 : wait(options.waitBeforeFirstTry ? attempt + 1 : attempt);
      await options.onRetry?.({ error, attempt, delayMs });
      await sleep(delayMs);
    }
  }
}

export function backoff(attempt: number, policy: RetryPolicy): number {
  const exponential = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** (attempt - 1));
  return Math.round(exponential * (0.5 + Math.random()));
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
