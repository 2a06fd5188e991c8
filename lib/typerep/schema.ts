/**
 * The serialisable form of a type (`LWMsgTypeRep`) and of a protocol
 * (`LWMsgProtocolRep`), described with `Lw` builders exactly as lwmsg's
 * `type-rep.c` and `protocol.c` describe them, so our codec writes and reads
 * them byte for byte like the C library (aliasable pointers give the shared
 * definitions and recursive types their object ids).
 *
 * Wire layout (big-endian in connections; archives use their own byte order):
 * - type rep: u32 object id (aliasable pointer, 0 = NULL), then on first
 *   sight `kind` u8, `flags` u32, and the kind's info:
 *   - INTEGER: definition (id; first time: width u8 1..8, sign u8), lower u64, upper u64
 *   - ENUM: definition (id; width, sign, variant count u16, variants {is_mask u8, value u64, name pstr}, name pstr)
 *   - STRUCT: definition (id; field count u16, fields {type rep, name pstr}, name pstr)
 *   - UNION: definition (id; arm count u16, arms {type rep, tag u32, name pstr}, name pstr), discriminator member index i16
 *   - POINTER: pointee type rep, zero_terminated u8, static length u32, length member index i16, encoding pstr
 *   - ARRAY: element type rep, zero_terminated u8 **twice** (lwmsg's `array_rep_spec` lists the
 *     member once as a bool enum and once as a uint8), static length u32, length member index i16, encoding pstr
 *   - VOID: nothing
 * - protocol rep: message count u16, then per message tag i16 (0..32767), type rep (id 0 = no payload), name pstr.
 * @module
 */
import { Lw } from "../lw.ts";

/** `LWMsgKind` values used in reps. */
export const Kind = { VOID: 1, INTEGER: 2, ENUM: 3, STRUCT: 4, UNION: 5, ARRAY: 6, POINTER: 7 } as const;
/** `LWMsgTypeFlags` bits a rep may carry (RANGE on integers and ALIASABLE on pointers share 0x08, as in lwmsg). */
export const RepFlags = { NOT_NULL: 0x01, SENSITIVE: 0x02, PROMOTED: 0x04, RANGE: 0x08, ALIASABLE: 0x08 } as const;
/** `LWMsgSignage`. */
export const Sign = { SIGNED: 0, UNSIGNED: 1 } as const;

/** `LWMsgIntegerDefRep`. */
export interface IntegerDefRep {
  width: number;
  sign: number;
}
/** `LWMsgVariantRep`: one enum value or mask. */
export interface VariantRep {
  is_mask: number;
  value: bigint;
  name: string | null;
}
/** `LWMsgEnumDefRep`. */
export interface EnumDefRep {
  width: number;
  sign: number;
  variant_count: number;
  variants: VariantRep[];
  name: string | null;
}
/** `LWMsgFieldRep`. */
export interface FieldRep {
  type: TypeRep;
  name: string | null;
}
/** `LWMsgStructDefRep`. */
export interface StructDefRep {
  field_count: number;
  fields: FieldRep[];
  name: string | null;
}
/** `LWMsgArmRep`. */
export interface ArmRep {
  type: TypeRep;
  tag: number;
  name: string | null;
}
/** `LWMsgUnionDefRep`. */
export interface UnionDefRep {
  arm_count: number;
  arms: ArmRep[];
  name: string | null;
}
export interface IntegerInfo {
  definition: IntegerDefRep;
  lower_bound: bigint;
  upper_bound: bigint;
}
export interface EnumInfo {
  definition: EnumDefRep;
}
export interface StructInfo {
  definition: StructDefRep;
}
export interface UnionInfo {
  definition: UnionDefRep;
  discrim_member_index: number;
}
export interface PointerInfo {
  pointee_type: TypeRep;
  zero_terminated: number;
  static_length: number;
  length_member_index: number;
  encoding: string | null;
}
export interface ArrayInfo {
  element_type: TypeRep;
  zero_terminated: number;
  /** The second copy of `zero_terminated` lwmsg writes (a plain uint8); lwmsg keeps this one. */
  zero_terminated_again: number;
  static_length: number;
  length_member_index: number;
  encoding: string | null;
}

/** `LWMsgTypeRep`: what a type looks like on the wire, without any program to go with it. */
export interface TypeRep {
  kind: number;
  flags: number;
  info?: IntegerInfo | EnumInfo | StructInfo | UnionInfo | PointerInfo | ArrayInfo;
}
/** `LWMsgProtocolMessageRep`. */
export interface ProtocolMessageRep {
  tag: number;
  type: TypeRep | null;
  name: string | null;
}
/** `LWMsgProtocolRep`. */
export interface ProtocolRep {
  message_count: number;
  messages: ProtocolMessageRep[];
}

const BoolEnum = Lw.Enum({ LWMSG_FALSE: 0, LWMSG_TRUE: 1 }, { width: 1, name: "LWMsgBool" });
const SignEnum = Lw.Enum({ LWMSG_SIGNED: 0, LWMSG_UNSIGNED: 1 }, { width: 1, name: "LWMsgSignage" });
const KindEnum = Lw.Enum(
  {
    LWMSG_KIND_INTEGER: Kind.INTEGER,
    LWMSG_KIND_STRUCT: Kind.STRUCT,
    LWMSG_KIND_UNION: Kind.UNION,
    LWMSG_KIND_ARRAY: Kind.ARRAY,
    LWMSG_KIND_POINTER: Kind.POINTER,
    LWMSG_KIND_VOID: Kind.VOID,
    LWMSG_KIND_ENUM: Kind.ENUM,
  },
  { width: 1, name: "LWMsgKind" },
);
// A pure mask enum: any other bit (PROMOTED included) is MALFORMED, as in lwmsg.
const FlagsEnum = Lw.Enum({}, { width: 4, masks: { LWMSG_TYPE_FLAG_NOT_NULL: 1, LWMSG_TYPE_FLAG_SENSITIVE: 2, LWMSG_TYPE_FLAG_RANGE: 8 }, name: "LWMsgTypeFlags" });

const IntegerDef = Lw.Struct({ width: Lw.UInt8({ range: [1, 8] }), sign: SignEnum }, { name: "LWMsgIntegerDefRep" });
const VariantRepT = Lw.Struct({ is_mask: BoolEnum, value: Lw.UInt64(), name: Lw.String() }, { name: "LWMsgVariantRep" });
const EnumDef = Lw.Struct(
  {
    width: Lw.UInt8({ range: [1, 8] }),
    sign: SignEnum,
    variant_count: Lw.UInt16(),
    variants: Lw.Pointer(VariantRepT, { notNull: true, length: "variant_count" }),
    name: Lw.String(),
  },
  { name: "LWMsgEnumDefRep" },
);

/** The type rep struct (`type_rep_spec`), recursive through its aliasable pointers. */
export const TypeRepStruct = Lw.Recursive((Self) => {
  const RepPtr = Lw.Pointer(Self, { notNull: true, aliasable: true });
  const FieldRepT = Lw.Struct({ type: RepPtr, name: Lw.String() }, { name: "LWMsgFieldRep" });
  const StructDef = Lw.Struct(
    { field_count: Lw.UInt16(), fields: Lw.Pointer(FieldRepT, { notNull: true, length: "field_count" }), name: Lw.String() },
    { name: "LWMsgStructDefRep" },
  );
  const ArmRepT = Lw.Struct({ type: RepPtr, tag: Lw.UInt32(), name: Lw.String() }, { name: "LWMsgArmRep" });
  const UnionDef = Lw.Struct(
    { arm_count: Lw.UInt16(), arms: Lw.Pointer(ArmRepT, { notNull: true, length: "arm_count" }), name: Lw.String() },
    { name: "LWMsgUnionDefRep" },
  );
  const def = <T extends Parameters<typeof Lw.Pointer>[0]>(t: T) => Lw.Pointer(t, { notNull: true, aliasable: true });
  const info = Lw.Union(
    "kind",
    {
      [Kind.INTEGER]: Lw.Struct({ definition: def(IntegerDef), lower_bound: Lw.UInt64(), upper_bound: Lw.UInt64() }, { name: "LWMsgIntegerRep" }),
      [Kind.ENUM]: Lw.Struct({ definition: def(EnumDef) }, { name: "LWMsgEnumRep" }),
      [Kind.STRUCT]: Lw.Struct({ definition: def(StructDef) }, { name: "LWMsgStructRep" }),
      [Kind.UNION]: Lw.Struct({ definition: def(UnionDef), discrim_member_index: Lw.Int16() }, { name: "LWMsgUnionRep" }),
      [Kind.POINTER]: Lw.Struct(
        { pointee_type: RepPtr, zero_terminated: BoolEnum, static_length: Lw.UInt32(), length_member_index: Lw.Int16(), encoding: Lw.String() },
        { name: "LWMsgPointerRep" },
      ),
      [Kind.ARRAY]: Lw.Struct(
        {
          element_type: RepPtr,
          zero_terminated: BoolEnum,
          zero_terminated_again: Lw.UInt8(),
          static_length: Lw.UInt32(),
          length_member_index: Lw.Int16(),
          encoding: Lw.String(),
        },
        { name: "LWMsgArrayRep" },
      ),
      [Kind.VOID]: Lw.Void(),
    },
    {
      name: "LWMsgTypeRepInfo",
      names: { [Kind.INTEGER]: "integer_rep", [Kind.ENUM]: "enum_rep", [Kind.STRUCT]: "struct_rep", [Kind.UNION]: "union_rep", [Kind.POINTER]: "pointer_rep", [Kind.ARRAY]: "array_rep", [Kind.VOID]: "void_rep" },
    },
  );
  return Lw.Struct({ kind: KindEnum, flags: FlagsEnum, info }, { name: "LWMsgTypeRep" });
});

/** `lwmsg_type_rep_spec`: a nullable aliasable pointer to a type rep (a u32 object id first). */
export const TypeRepSpec = Lw.Pointer(TypeRepStruct, { aliasable: true });

/** `lwmsg_protocol_rep_spec`. A message's type is a nullable type rep: id 0 means no payload. */
export const ProtocolRepSpec = Lw.Struct(
  {
    message_count: Lw.UInt16(),
    messages: Lw.Pointer(
      Lw.Struct({ tag: Lw.Int16({ range: [0, 0x7fff] }), type: TypeRepSpec, name: Lw.String() }, { name: "LWMsgProtocolMessageRep" }),
      { notNull: true, length: "message_count" },
    ),
  },
  { name: "LWMsgProtocolRep" },
);
