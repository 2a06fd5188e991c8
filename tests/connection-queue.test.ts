// The outgoing queue: send() takes every message at once; awaiting it is the
// backpressure. A caller that does not await is never refused for the queue's
// size (only a message over maxMessageSize is OVERFLOW, however much is queued).
import { expect, test } from "bun:test";
import { Connection } from "../lib/connection.ts";
import { LwMsgError, Status } from "../lib/status.ts";
import { Poller } from "../lib/native/poller.ts";
import { fdLeakCheck } from "./helpers/fds.ts";
import { testProtocol } from "./fixtures/protocol.ts";
import { hex } from "./helpers/raw.ts";
import { native } from "../lib/native/ffi.ts";
import { closeFd, socketPair } from "../lib/native/socket.ts";

fdLeakCheck({ warmup: () => Poller.shared() });

test("sends that are not awaited queue far past sendQueueLimit + one message and all arrive in order; an oversized one is still OVERFLOW naming maxMessageSize", async () => {
  const size = 60 * 1024;
  const [a, b] = await Connection.pair(testProtocol, { sendQueueLimit: 64 * 1024, maxMessageSize: 64 * 1024 });
  const data = new Uint8Array(size);
  const pending: Promise<void>[] = [];
  for (let i = 0; i < 100; i++) {
    data[0] = i;
    pending.push(a.send({ tag: "BLOB", data: { size, data } })); // ~6 MB queued, nobody reading yet
  }
  const e = await a.send({ tag: "BLOB", data: { size: 70 * 1024, data: new Uint8Array(70 * 1024) } }).catch((x) => x);
  expect(e).toBeInstanceOf(LwMsgError);
  expect(e.status).toBe(Status.OVERFLOW);
  expect(e.message).toContain("maxMessageSize 65536");
  for (let i = 0; i < 100; i++) {
    const m = await b.recv();
    expect((m.data as { data: Uint8Array }).data[0]).toBe(i);
  }
  await Promise.all(pending);
  await a.close();
  await b.close();
});

test("an fd FIFO whose head never catches up (every read ends inside a message whose fd came ahead) does not grow without bound", async () => {
  const [a, b] = await Connection.pair(testProtocol);
  const msg = hex("00000010 01 03 00 00000000 0000 0002 ff"); // FD, one fd
  const [x, y] = socketPair();
  const send = (bytes: Uint8Array) => expect(native.lw_send(a.socketFd, bytes, bytes.length, new Int32Array([x]), 1)).toBe(bytes.length);
  const N = 3000;
  send(msg.subarray(0, 8));
  let received = 0;
  for (let i = 0; i < N; i++) {
    // the rest of message i, then the start of message i+1 with its fd
    const seg = new Uint8Array(16);
    seg.set(msg.subarray(8), 0);
    seg.set(msg.subarray(0, 8), 8);
    send(seg);
    const m = await b.recv();
    expect(m.name).toBe("FD");
    m.dispose();
    received++;
  }
  expect(received).toBe(N);
  expect(b._diag.heldFds).toBe(1); // message N's fd, ahead of its bytes
  expect(b._diag.fdFifo).toBeLessThan(2200); // without compaction: N + 1
  closeFd(x);
  closeFd(y);
  a.destroy();
  b.destroy();
});
