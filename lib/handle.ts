/**
 * `LWMsgHandle`: a reference to an object that lives in one peer of a
 * session (§6). Local handles carry the object (`data`); remote handles are
 * proxies for an id the other side registered. The session's handle table
 * owns the bookkeeping; this type is what travels as an `Lw.Handle` value.
 * @module
 */

/** `LWMsgHandleType`. */
export const HandleLocation = { NULL: 0, LOCAL: 1, REMOTE: 2 } as const;
export type HandleLocation = (typeof HandleLocation)[keyof typeof HandleLocation];

export class Handle<T = unknown> {
  /** Reference count (§6.2); at 0 the handle leaves its table and its cleanup runs. */
  refs = 1;
  /** False after unregister, reset or session loss: any use gives INVALID_HANDLE. */
  valid = true;
  constructor(
    /** The handle type name given to `Lw.Handle(typeName)`. */
    readonly typeName: string,
    /** LOCAL (created here) or REMOTE (a proxy for the peer's object). */
    readonly location: 1 | 2,
    /** Wire id, unique per (location) within a session. */
    readonly id: number,
    /** The object, for local handles (let go once the handle is freed and its cleanup has run). */
    public data: T | undefined = undefined,
    /** Runs once when the last reference goes. (Method-style type, so a `Handle<T>` is usable where a `Handle` is expected.) */
    public cleanup: { bivarianceHack(data: T | undefined): void }["bivarianceHack"] | undefined = undefined,
  ) {}
  toString(): string {
    return `<${this.typeName}:${this.location === 1 ? "local" : "remote"}[${this.id}]>`;
  }
}
