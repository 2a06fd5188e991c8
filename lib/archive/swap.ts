/**
 * Byte order for archives. Our codec writes big-endian only (what lwmsg
 * connections use); lwmsg archives may be little-endian
 * (`lwmsg_archive_set_byte_order`). Rather than a second codec, a
 * little-endian payload is converted in place by walking its type: every
 * multi-byte integer (ints, enums, pointer object ids, zero-terminated
 * counts, handle ids) has its bytes reversed. The walk reads the counts,
 * discriminators and ids it needs in the source byte order, exactly as the
 * decoder would, and is bounded like it: running past the end is EOF, bad
 * structure MALFORMED, recursion deeper than 4096 levels OVERFLOW.
 * @module
 */
import { LwMsgError, Status } from "../status.ts";
import type { WireArray, WireType } from "../types.ts";

const MAX_DEPTH = 4096;
/** Elements that take no bytes (void arrays) one walk may visit; beyond it MEMORY, as the decoder's budget. */
const ZERO_SIZE_BUDGET = 1 << 20;

class Swapper {
  private p = 0;
  private depth = 0;
  private budget = ZERO_SIZE_BUDGET;
  private readonly view: DataView;
  private readonly recs = new Map<string, WireType>();
  private readonly ids = new Set<number>();

  constructor(
    private readonly b: Uint8Array,
    /** True when the bytes are little-endian now (reading LE, turning them BE). */
    private readonly srcLittle: boolean,
  ) {
    this.view = new DataView(b.buffer, b.byteOffset, b.byteLength);
  }

  private need(n: number): void {
    if (this.p + n > this.b.length) throw new LwMsgError(Status.EOF, `payload ends after ${this.b.length} bytes`);
  }

  /** Read an unsigned integer of `width` bytes in the source order, then reverse it in place. */
  private int(width: number): bigint {
    this.need(width);
    const at = this.p;
    let v = 0n;
    if (width === 1) v = BigInt(this.b[at]!);
    else if (width === 2) v = BigInt(this.view.getUint16(at, this.srcLittle));
    else if (width === 4) v = BigInt(this.view.getUint32(at, this.srcLittle));
    else v = this.view.getBigUint64(at, this.srcLittle);
    if (width > 1) this.b.subarray(at, at + width).reverse();
    this.p += width;
    return v;
  }

  walk(w: WireType, dom: Map<string, bigint> | null): void {
    if (++this.depth > MAX_DEPTH) throw new LwMsgError(Status.OVERFLOW, `payload nests deeper than ${MAX_DEPTH} levels`);
    try {
      this.node(w, dom);
    } finally {
      this.depth--;
    }
  }

  private node(w: WireType, dom: Map<string, bigint> | null): void {
    switch (w.kind) {
      case "int":
      case "enum":
        this.int(w.width);
        return;
      case "bool":
      case "fd":
        this.need(1);
        this.p++;
        return;
      case "void":
        return;
      case "struct": {
        const env = new Map<string, bigint>();
        for (const m of w.members) {
          if (m.type.kind === "int" || m.type.kind === "enum") {
            const signed = m.type.signed;
            const raw = this.int(m.type.width);
            env.set(m.name, signed ? BigInt.asIntN(m.type.width * 8, raw) : raw);
          } else if (m.type.kind === "bool") {
            this.need(1);
            env.set(m.name, BigInt(this.b[this.p++]!));
          } else this.walk(m.type, env);
        }
        return;
      }
      case "union": {
        const tag = dom?.get(w.discrim);
        if (tag === undefined) throw new LwMsgError(Status.MALFORMED, `union discriminator ${w.discrim} not found`);
        const arm = w.arms.find((a) => BigInt(a.tag) === tag);
        if (!arm) throw new LwMsgError(Status.MALFORMED, `union tag ${tag} has no arm`);
        this.walk(arm.type, dom);
        return;
      }
      case "pointer": {
        if (w.aliasable) {
          const id = Number(this.int(4));
          if (id === 0 || this.ids.has(id)) return;
          this.ids.add(id);
        } else if (!w.notNull) {
          this.need(1);
          if (this.b[this.p++] === 0) return;
        }
        if (w.to.kind === "array") this.elements(w.to, dom);
        else this.walk(w.to, dom);
        return;
      }
      case "array":
        this.elements(w, dom);
        return;
      case "handle": {
        this.need(1);
        if (this.b[this.p++] !== 0) this.int(4);
        return;
      }
      case "custom":
        this.walk(w.transmit, null);
        return;
      case "rec":
        this.recs.set(w.id, w.type);
        this.walk(w.type, dom);
        return;
      case "ref": {
        const body = this.recs.get(w.id);
        if (!body) throw new LwMsgError(Status.MALFORMED, `recursive reference ${w.id} outside its type`);
        this.walk(body, dom);
        return;
      }
    }
  }

  private elements(w: WireArray, dom: Map<string, bigint> | null): void {
    let n: number;
    const len = w.length;
    if (len.term === "static") n = len.count;
    else if (len.term === "zero") n = Number(this.int(4));
    else {
      const v = dom?.get(len.member);
      if (v === undefined) throw new LwMsgError(Status.MALFORMED, `length member ${len.member} not found`);
      if (v < 0n || v > BigInt(this.b.length)) {
        // more elements than bytes can only be zero-size elements; the loop below bounds those
        if (v < 0n || v > BigInt(ZERO_SIZE_BUDGET)) throw new LwMsgError(Status.MALFORMED, `length ${v} of ${len.member} is impossible here`);
      }
      n = Number(v);
    }
    const of = w.of;
    if ((of.kind === "int" && of.width === 1) || of.kind === "bool" || of.kind === "fd") {
      this.need(n);
      this.p += n;
      return;
    }
    for (let i = 0; i < n; i++) {
      const before = this.p;
      this.walk(of, dom);
      if (this.p === before && --this.budget < 0) throw new LwMsgError(Status.MEMORY, "too many zero-size elements");
    }
  }

  end(): number {
    return this.p;
  }
}

/**
 * Reverse the byte order of every multi-byte field of a payload of type
 * `w`, in place. `srcLittle`: the bytes are little-endian now. Returns how
 * many bytes the value took.
 */
export function swapPayload(w: WireType, bytes: Uint8Array, srcLittle: boolean): number {
  const s = new Swapper(bytes, srcLittle);
  s.walk(w, null);
  return s.end();
}
