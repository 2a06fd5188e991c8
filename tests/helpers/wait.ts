/**
 * Bounded waits for tests: poll a condition until it holds (or fail naming
 * what was awaited), and a promise with its resolve/reject handed out.
 *
 *   await until(() => server.clientCount === 0, 5000, "the slot to be released");
 *   const release = deferred();  ...  release.resolve();
 * @module
 */

/**
 * Resolves once `cond()` holds, polling every `stepMs`; rejects after `ms`
 * naming `what` (a string, or a function called at the time of failure so the
 * message can carry the state seen last).
 */
export async function until(cond: () => boolean, ms = 3000, what: string | (() => string) = "condition", stepMs = 2): Promise<void> {
  const end = performance.now() + ms;
  while (!cond()) {
    if (performance.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${typeof what === "function" ? what() : what}`);
    await Bun.sleep(stepMs);
  }
}

/** A promise and the functions that settle it (e.g. to hold a handler until the test releases it). */
export function deferred<T = void>(): { promise: Promise<T>; resolve: (v: T) => void; reject: (e: unknown) => void } {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<T>((a, b) => {
    resolve = a;
    reject = b;
  });
  return { promise, resolve, reject };
}
