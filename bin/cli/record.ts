/**
 * `bun-lwmsg record --listen PATH --connect PATH --out FILE [--protocol MODULE]`:
 * a man in the middle for debugging. Each client that connects to the
 * listening socket gets its own connection to the real server; every
 * message is forwarded unchanged both ways (./passthrough.ts: tag, flags,
 * status, cookie, payload bytes and fds), printed as it passes, and
 * appended to an archive. Each side negotiates its own packet size.
 *
 * It runs until SIGINT or SIGTERM, then stops listening (the socket file
 * is removed), closes every connection, and closes the archive — which is
 * complete after every record, so the file is readable at any point.
 *
 * Forwarding is at the message level (receive on one side, send the same
 * message on the other), built on the public Connection/Listener API; it
 * adds one receive and one send per message, not a round trip.
 * @module
 */
import { Archive, ArchiveDisposition, Connection, ConnectionMode, LwMsgError, Lw, Status, type Protocol, type ReceivedMessage } from "../../lib/index.ts";
import { closeSync } from "node:fs";
import { PassthroughProtocol, type Passed } from "./passthrough.ts";
import { messageText, metaText, rawText } from "./format.ts";

/** How long a client (and the real server) may take over the lwmsg handshake. */
const ESTABLISH_MS = 10_000;

export interface RecordArgs {
  listen: string;
  connect: string;
  out: string;
  protocol: Protocol<any> | null;
  /** Socket file mode of the listening socket (default 0o600). */
  mode: number;
  quiet: boolean;
}

/** A running recorder; `stop()` ends it cleanly. */
export interface Recorder {
  /** Resolves when the recorder has stopped (after stop()). */
  done: Promise<void>;
  stop(): Promise<void>;
  readonly messages: number;
}

export async function startRecorder(args: RecordArgs, write: (s: string) => void, log: (s: string) => void): Promise<Recorder> {
  const pass = new PassthroughProtocol(args.protocol, !args.quiet);
  const archive = new Archive(args.protocol ?? Lw.Protocol({}));
  archive.setFile(args.out, 0o600);
  await archive.open(ArchiveDisposition.WRITE | (args.protocol ? ArchiveDisposition.SCHEMA : 0));
  const listener = await Connection.listen(pass, args.listen, { mode: args.mode });
  const live = new Set<Connection<any>>();
  let stopping = false;
  let clients = 0;
  let messages = 0;
  let resolveDone!: () => void;
  const done = new Promise<void>((r) => (resolveDone = r));

  const show = (id: number, dir: string, m: ReceivedMessage): void => {
    if (args.quiet) return;
    const p = m.data as Passed | null;
    let text: string;
    if (m.tag === -1) text = "(no payload)";
    else if (p && p.undecoded === undefined && args.protocol) text = messageText(args.protocol, m.tag, m.name, p.decoded);
    else text = `${m.name ?? `tag ${m.tag}`}: ${rawText(m.tag, p?.raw ?? new Uint8Array(0), p?.undecoded ?? null)}`;
    const fds = p && p.fds.length ? ` fds=${p.fds.length}` : "";
    write(`[${id} ${dir}${metaText(m)}${fds}] ${text}\n`);
  };

  /** Forward `from` → `to` until either ends. */
  const pump = async (id: number, dir: string, from: Connection<any>, to: Connection<any>): Promise<void> => {
    for (;;) {
      const m = await from.recv();
      try {
        const p = m.data as Passed | null;
        show(id, dir, m);
        messages++;
        // the archive gets the bytes as they passed; its write is queued, so forwarding does not wait for the disk
        archive.writeRecord({ status: m.status, flags: m.flags, cookie: m.cookie, tag: m.tag, payload: p?.raw ?? new Uint8Array(0) }).catch((e) => log(`bun-lwmsg record: archive: ${(e as Error).message}\n`));
        await to.send({ tag: m.tag, data: p ?? undefined, flags: m.flags, status: m.status, cookie: m.cookie });
      } finally {
        m.dispose(); // send() took duplicates of the fds
      }
    }
  };

  const serve = async (client: Connection<any>): Promise<void> => {
    const id = ++clients;
    const server = new Connection(pass);
    live.add(client);
    live.add(server);
    try {
      server.setEndpoint(ConnectionMode.LOCAL, args.connect);
      server.setTimeout("establish", ESTABLISH_MS);
      await server.connect();
      log(`bun-lwmsg record: client ${id} connected (pid ${client.peerToken?.pid ?? "?"}), forwarding to ${args.connect}\n`);
      // when one direction ends (a side closed), close both
      await Promise.race([pump(id, ">>", client, server), pump(id, "<<", server, client)]);
    } catch (e) {
      if (!stopping) {
        const s = e instanceof LwMsgError ? e.status : Status.ERROR;
        if (s !== Status.PEER_CLOSE && s !== Status.PEER_RESET && s !== Status.CANCELLED) log(`bun-lwmsg record: client ${id}: ${(e as Error).message}\n`);
        else log(`bun-lwmsg record: client ${id} closed\n`);
      }
    } finally {
      live.delete(client);
      live.delete(server);
      await Promise.all([client.close().catch(() => client.destroy()), server.close().catch(() => server.destroy())]);
    }
  };

  // Accept sockets here and run each handshake on its own (with a deadline), so a
  // client that never greets cannot hold up the others.
  const acceptLoop = async (): Promise<void> => {
    while (!stopping) {
      let fd: number;
      try {
        fd = await listener.acceptRaw();
      } catch (e) {
        if (stopping) break;
        log(`bun-lwmsg record: accept: ${(e as Error).message}\n`);
        await Bun.sleep(50); // e.g. out of fds: do not spin
        continue;
      }
      const c = new Connection(pass);
      try {
        c.setFd(ConnectionMode.LOCAL, fd);
      } catch (e) {
        closeSync(fd);
        log(`bun-lwmsg record: accept: ${(e as Error).message}\n`);
        continue;
      }
      c.setTimeout("establish", ESTABLISH_MS);
      live.add(c); // so stop() closes it even mid-handshake
      c.accept().then(
        () => serve(c),
        (e) => {
          live.delete(c);
          c.destroy();
          if (!stopping) log(`bun-lwmsg record: a client failed its handshake: ${(e as Error).message}\n`);
        },
      );
    }
  };
  void acceptLoop();

  return {
    done,
    get messages() {
      return messages;
    },
    async stop() {
      if (stopping) return done;
      stopping = true;
      await listener.close();
      await Promise.all([...live].map((c) => c.close().catch(() => c.destroy())));
      await archive.close(); // runs after every queued record write
      log(`bun-lwmsg record: stopped; ${messages} messages from ${clients} clients in ${args.out}\n`);
      resolveDone();
      return done;
    },
  };
}
