/** The lwmsg status a failing call ends with; anything but an LwMsgError (or success) fails the test. */
import { LwMsgError } from "../../lib/status.ts";

/** The LwMsgError `p` rejects with (its status and message). */
export async function rejection(p: Promise<unknown>): Promise<LwMsgError> {
  try {
    await p;
  } catch (e) {
    if (e instanceof LwMsgError) return e;
    throw e;
  }
  throw new Error("expected a rejection");
}

/** Status of the LwMsgError `p` rejects with. */
export async function rejectionStatus(p: Promise<unknown>): Promise<number> {
  return (await rejection(p)).status;
}

/** Status of the LwMsgError `fn` throws. */
export function throwStatus(fn: () => unknown): number {
  try {
    fn();
  } catch (e) {
    if (e instanceof LwMsgError) return e.status;
    throw e;
  }
  throw new Error("expected a throw");
}
