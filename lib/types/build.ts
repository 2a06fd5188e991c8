/**
 * What every `Lw` builder does with its result: attach the wire description
 * and take the attributes all kinds share.
 * @module
 */
import type { TSchema } from "@sinclair/typebox";
import { bad, WIRE, type LwSchema, type VerifyFn, type WireCommon, type WireType } from "./wire.ts";

/** Attach a wire description to a TypeBox schema (a shallow copy when `copy`). */
export function withWire<S extends TSchema, W extends WireType>(schema: S, wire: W, copy = false): LwSchema<S, W> {
  const out = (copy ? { ...schema } : schema) as LwSchema<S, W>;
  (out as Record<string, unknown>)[WIRE] = wire;
  return out;
}

/** `verify`, `sensitive` and `name`, checked. */
export function common(o: { verify?: VerifyFn; sensitive?: boolean; name?: string } | undefined): WireCommon {
  const c: WireCommon = {};
  if (!o) return c;
  if (o.verify !== undefined) {
    if (typeof o.verify !== "function") bad("verify must be a function");
    c.verify = o.verify;
  }
  if (o.sensitive) c.sensitive = true;
  if (o.name !== undefined) {
    if (typeof o.name !== "string") bad("name must be a string");
    c.name = o.name;
  }
  return c;
}
