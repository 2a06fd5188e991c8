/**
 * systemd socket activation: take the listening sockets a service manager
 * opened for us, by the rules of `sd_listen_fds(3)`, so a service started
 * by a `.socket` unit serves the socket systemd already bound.
 *
 * The rules, as libsystemd applies them:
 * - the fds are numbered from {@link SD_LISTEN_FDS_START} (3), `LISTEN_FDS`
 *   of them;
 * - they are ours only if `LISTEN_PID` is this process's pid (the variables
 *   are inherited by children, who must not take them);
 * - `LISTEN_FDNAMES` names them (colon-separated, `FileDescriptorName=` in
 *   the unit; "unknown" when absent);
 * - each gets `FD_CLOEXEC`, so a program we start does not inherit them;
 * - the three variables are removed from the environment afterwards (unless
 *   `unsetEnvironment: false`), whatever the outcome.
 *
 * On top of that every fd is checked to be a listening stream socket of an
 * allowed family, and refused with INVALID_PARAMETER naming the fd, its
 * name and what it is instead (a connected socket from `Accept=yes`, a
 * datagram socket, a file).
 *
 * ```ts
 * const server = new Peer(protocol);
 * for (const s of listenFds()) server.addListenFd(ConnectionMode.LOCAL, s.fd);
 * await server.startListen();
 * ```
 * @module
 */
import { native } from "../native/ffi.ts";
import { LwMsgError, Status } from "../status.ts";

/** The first inherited fd (`SD_LISTEN_FDS_START`). */
export const SD_LISTEN_FDS_START = 3;

/** The socket families an inherited fd may have. */
export type SocketFamily = "unix" | "inet" | "inet6";

/** One inherited listening socket. */
export interface ListenFd {
  /** The fd number (3, 4, …); open, close-on-exec, listening. */
  readonly fd: number;
  /** Its name from `LISTEN_FDNAMES` (`FileDescriptorName=`; systemd's default is the socket unit's name), or "unknown". */
  readonly name: string;
  readonly family: SocketFamily;
}

export interface ListenFdsOptions {
  /** Remove LISTEN_PID, LISTEN_FDS and LISTEN_FDNAMES from the environment after reading them (default true, like `sd_listen_fds(1)`). */
  unsetEnvironment?: boolean;
  /**
   * Families accepted (default `["unix"]`: lwmsg speaks over UNIX sockets,
   * and only they carry fds and peer credentials). Add "inet"/"inet6" to take
   * TCP sockets as well, e.g. to hand them to another server.
   */
  families?: readonly SocketFamily[];
  /** The environment to read and clean (default `process.env`). */
  env?: Record<string, string | undefined>;
  /** The pid LISTEN_PID must name (default `process.pid`). */
  pid?: number;
}

const AF: Record<number, SocketFamily> = { 1: "unix", 2: "inet", 10: "inet6" };
const SOCK_STREAM = 1;
const SOCK_NAMES: Record<number, string> = { 1: "stream", 2: "datagram", 3: "raw", 5: "seqpacket" };
const ENOTSOCK = 88;
const EBADF = 9;

const VARS = ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] as const;

/** A decimal count or pid as systemd writes it: digits only, no sign, no spaces. */
function parseUnsigned(name: string, text: string): number {
  if (!/^[0-9]+$/.test(text)) throw new LwMsgError(Status.INVALID_PARAMETER, `socket activation: ${name}=${JSON.stringify(text)} is not a non-negative integer`);
  const n = Number(text);
  if (!Number.isSafeInteger(n)) throw new LwMsgError(Status.INVALID_PARAMETER, `socket activation: ${name}=${text} is out of range`);
  return n;
}

const infoOut = new Int32Array(3);

/** What `fd` is; throws INVALID_PARAMETER naming it when it is not a listening stream socket of an allowed family. */
function checkListening(fd: number, name: string, families: readonly SocketFamily[]): SocketFamily {
  const which = `fd ${fd} ("${name}") from LISTEN_FDS`;
  const r = native.lw_sock_info(fd, infoOut);
  if (r === -EBADF) throw new LwMsgError(Status.INVALID_PARAMETER, `socket activation: ${which} is not open (LISTEN_FDS counts more fds than were passed)`, { errno: -r });
  if (r === -ENOTSOCK) throw new LwMsgError(Status.INVALID_PARAMETER, `socket activation: ${which} is not a socket (a file or pipe; ListenStream= in the .socket unit makes a socket)`, { errno: -r });
  if (r < 0) throw LwMsgError.fromErrno(`socket activation: inspecting ${which}`, r);
  const [af, type, accepting] = [infoOut[0]!, infoOut[1]!, infoOut[2]!];
  const family = AF[af];
  if (family === undefined || !families.includes(family)) {
    throw new LwMsgError(Status.INVALID_PARAMETER, `socket activation: ${which} is a socket of family ${family ?? af}; accepted: ${families.join(", ")}`);
  }
  if (type !== SOCK_STREAM) {
    throw new LwMsgError(Status.INVALID_PARAMETER, `socket activation: ${which} is a ${SOCK_NAMES[type] ?? `type ${type}`} socket, not a stream socket (ListenStream= in the .socket unit)`);
  }
  if (accepting === 0) {
    throw new LwMsgError(Status.INVALID_PARAMETER, `socket activation: ${which} is a stream socket that is not listening: a connected socket, as Accept=yes passes one per connection (use Accept=no)`);
  }
  return family;
}

/**
 * `sd_listen_fds_with_names`: the listening sockets passed to this process
 * by socket activation, or `[]` when it was not socket-activated (no
 * LISTEN_PID, or one naming another process, or LISTEN_FDS=0).
 *
 * Malformed variables, a LISTEN_FDNAMES whose count differs from
 * LISTEN_FDS, and any fd that is not a listening stream socket of an allowed
 * family throw INVALID_PARAMETER naming the problem (the variables are
 * still removed). The fds are the caller's: hand them to
 * `peer.addListenFd(ConnectionMode.LOCAL, fd)`, which takes ownership, or
 * close them.
 */
export function listenFds(options: ListenFdsOptions = {}): ListenFd[] {
  const env = options.env ?? process.env;
  const pid = options.pid ?? process.pid;
  const families = options.families ?? ["unix"];
  for (const f of families) if (!Object.values(AF).includes(f)) throw new LwMsgError(Status.INVALID_PARAMETER, `listenFds: unknown family ${JSON.stringify(f)} (unix, inet, inet6)`);
  const pidText = env["LISTEN_PID"];
  const fdsText = env["LISTEN_FDS"];
  const namesText = env["LISTEN_FDNAMES"];
  try {
    if (pidText === undefined) return [];
    if (parseUnsigned("LISTEN_PID", pidText) !== pid) return []; // meant for another process (our parent, typically)
    if (fdsText === undefined) return [];
    const count = parseUnsigned("LISTEN_FDS", fdsText);
    if (count === 0) return [];
    if (count > 0x7fffffff - SD_LISTEN_FDS_START) throw new LwMsgError(Status.INVALID_PARAMETER, `socket activation: LISTEN_FDS=${count} is out of range`);
    let names: string[];
    if (namesText === undefined) names = new Array<string>(count).fill("unknown");
    else {
      names = namesText.split(":");
      if (names.length !== count) throw new LwMsgError(Status.INVALID_PARAMETER, `socket activation: LISTEN_FDNAMES has ${names.length} name(s) (${JSON.stringify(namesText)}) but LISTEN_FDS=${count}`);
    }
    // Close-on-exec first, for all of them, as sd_listen_fds does: even when
    // one is refused below, none leaks into a program we start later.
    for (let i = 0; i < count; i++) {
      const fd = SD_LISTEN_FDS_START + i;
      const r = native.lw_fd_set_cloexec(fd);
      if (r === -EBADF) throw new LwMsgError(Status.INVALID_PARAMETER, `socket activation: fd ${fd} ("${names[i]}") from LISTEN_FDS=${count} is not open`, { errno: -r });
      if (r < 0) throw LwMsgError.fromErrno(`socket activation: FD_CLOEXEC on fd ${fd}`, r);
    }
    const out: ListenFd[] = [];
    for (let i = 0; i < count; i++) {
      const fd = SD_LISTEN_FDS_START + i;
      out.push({ fd, name: names[i]!, family: checkListening(fd, names[i]!, families) });
    }
    return out;
  } finally {
    if (options.unsetEnvironment !== false) for (const v of VARS) delete env[v];
  }
}
