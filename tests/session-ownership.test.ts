// Handle reference operations belong to the handle's own session: session A
// must not be able to drop session B's references and run B's cleanup while
// B still uses the handle (§6.2; a fserv client's open file, say).
import { expect, test } from "bun:test";
import { Session } from "../lib/session.ts";
import { Status } from "../lib/status.ts";
import { throwStatus } from "./helpers/status.ts";
import { multicallProtocol } from "./fixtures/peer-protocol.ts";

const noTransport = { call: () => Promise.reject(new Error("no transport")) };

test("retain/release/unregister on another session's live handle → INVALID_HANDLE; its cleanup does not run; the owner's own calls still work", () => {
  const a = new Session(multicallProtocol, "incoming", noTransport);
  const b = new Session(multicallProtocol, "incoming", noTransport);
  let cleaned = 0;
  const h = b.registerHandle("IntFunction", { n: 1 }, () => cleaned++);
  expect(throwStatus(() => a.retainHandle(h))).toBe(Status.INVALID_HANDLE);
  expect(throwStatus(() => a.releaseHandle(h))).toBe(Status.INVALID_HANDLE);
  expect(throwStatus(() => a.unregisterHandle(h))).toBe(Status.INVALID_HANDLE);
  expect(cleaned).toBe(0);
  expect(b.getHandleData(h)).toEqual({ n: 1 });
  expect(h.refs).toBe(1);
  b.retainHandle(h);
  b.releaseHandle(h);
  expect(cleaned).toBe(0);
  b.unregisterHandle(h);
  expect(cleaned).toBe(1);
  // retain/release on an invalid handle stay allowed for its owner (§6.2)
  b.retainHandle(h);
  b.releaseHandle(h);
  expect(cleaned).toBe(1);
});
