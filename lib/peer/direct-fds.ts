/**
 * DIRECT calls hand values over without a codec, but fds still follow
 * lwmsg's rule (§3.6): the receiver gets its own descriptor and may close
 * it. This walks a value by its schema and returns a copy in which every fd
 * field holds a duplicate (everything else is shared, copied only on the
 * path to an fd), plus the duplicates made.
 * @module
 */
import { LwMsgError, Status } from "../status.ts";
import { closeFd, dupFd } from "../transport/fdqueue.ts";
import { wireOf, type WireType } from "../types.ts";

const hasFd = new WeakMap<object, boolean>();

/** True if a value of this type can hold an fd. */
function containsFd(w: WireType, recs: Map<string, WireType>, seen: Set<WireType>): boolean {
  const known = hasFd.get(w);
  if (known !== undefined) return known;
  if (seen.has(w)) return false;
  seen.add(w);
  let r = false;
  switch (w.kind) {
    case "fd":
      r = true;
      break;
    case "struct":
      r = w.members.some((m) => containsFd(m.type, recs, seen));
      break;
    case "union":
      r = w.arms.some((a) => containsFd(a.type, recs, seen));
      break;
    case "pointer":
      r = containsFd(w.to, recs, seen);
      break;
    case "array":
      r = containsFd(w.of, recs, seen);
      break;
    case "custom":
      r = containsFd(w.transmit, recs, seen);
      break;
    case "rec":
      recs.set(w.id, w.type);
      r = containsFd(w.type, recs, seen);
      break;
    case "ref": {
      const t = recs.get(w.id);
      r = t !== undefined && containsFd(t, recs, seen);
      break;
    }
  }
  hasFd.set(w, r);
  return r;
}

/**
 * A copy of `value` (of schema `type`) whose fds are duplicates; the
 * duplicates are appended to `fds`. Fds ≤ 0 mean "none" and arrive as -1,
 * as over a socket. On failure (an fd that is not open) the duplicates made
 * so far are closed and INVALID_PARAMETER is thrown.
 */
export function withDupFds(type: unknown, value: unknown, fds: number[]): unknown {
  const first = fds.length;
  try {
    return walk(wireOf(type), value, fds, new Map());
  } catch (e) {
    for (let i = first; i < fds.length; i++) closeFd(fds[i]!);
    fds.length = first;
    throw e;
  }
}

function walk(w: WireType, v: any, fds: number[], recs: Map<string, WireType>): unknown {
  if (!containsFd(w, recs, new Set())) return v;
  switch (w.kind) {
    case "fd": {
      if (typeof v !== "number" || !Number.isInteger(v)) throw new LwMsgError(Status.INVALID_PARAMETER, `fd field: expected an integer fd, got ${String(v)}`);
      if (v <= 0) return -1;
      const d = dupFd(v);
      fds.push(d);
      return d;
    }
    case "struct": {
      if (v === null || typeof v !== "object") return v;
      const out: Record<string, unknown> = { ...v };
      for (const m of w.members) {
        const t = m.type;
        if (t.kind !== "union") out[m.name] = walk(t, v[m.name], fds, recs);
        else {
          // The active arm is chosen by the discriminator, an earlier member of this struct.
          const arm = t.arms.find((a) => a.tag === v[t.discrim]);
          if (arm) out[m.name] = walk(arm.type, v[m.name], fds, recs);
        }
      }
      return out;
    }
    case "pointer":
      return v === null || v === undefined ? v : walk(w.to, v, fds, recs);
    case "array":
      return Array.isArray(v) ? v.map((e) => walk(w.of, e, fds, recs)) : v;
    case "custom":
      // A presented value is converted before it is transmitted: only a custom type without a conversion is walked.
      return w.marshal ? v : walk(w.transmit, v, fds, recs);
    case "rec":
      recs.set(w.id, w.type);
      return walk(w.type, v, fds, recs);
    case "ref": {
      const t = recs.get(w.id);
      return t === undefined ? v : walk(t, v, fds, recs);
    }
    default:
      return v;
  }
}
