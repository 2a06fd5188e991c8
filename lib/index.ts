/**
 * bun-lwmsg: lwmsg (the Likewise messaging library) for Bun — typed
 * messages, fd passing and peer credentials over UNIX sockets, wire
 * compatible with the C library.
 *
 * Layers, bottom up: native → status → types/codec → protocol → connection
 * → session/security → peer. Each is importable on its own from `lib/`.
 * @module
 */
export { Status, LwMsgError, statusName, statusShortName, mapErrno, isLwMsgError } from "./status.ts";
export type { StatusName } from "./status.ts";
export { Lw } from "./lw.ts";
export { Protocol } from "./protocol.ts";
export type { ProtocolEntry, MessageOut, MessageIn } from "./protocol.ts";
export { ByteWriter, ByteReader, CodecContext } from "./codec/io.ts";
export type { Encoder, Decoder, HandleCodec } from "./codec/io.ts";
export { Handle, HandleLocation } from "./handle.ts";
export { MessageFlags, PacketType, DEFAULT_PACKET_SIZE, TAG_INVALID } from "./wire.ts";
export { Connection, ConnectionMode, AssocState, ReceivedMessage, tokensEqual } from "./connection.ts";
export type { ConnectionOptions, ListenOptions, RemoteListenOptions, LocalToken, OutgoingMessage } from "./connection.ts";
export type { SecurityToken, X509Token, AddressToken } from "./token.ts";
export { Listener } from "./listener.ts";
export { Poller } from "./native/poller.ts";
export type { PollerMechanism } from "./native/poller.ts";
export { peerCredentials, selfCredentials, socketPair } from "./native/socket.ts";
export type { Credentials } from "./native/socket.ts";
export { Peer } from "./peer.ts";
export type { DispatchTable, Handler, HandlerReply, SessionHooks, TraceHooks, PeerOptions, PeerTimeouts, Reply } from "./peer.ts";
export { allowUids, allowGids, sameUser, allOf, anyOf, authorize, pinFingerprints, allowSubjects, allowIssuers, verifiedCertificate } from "./security.ts";
export type { TokenCheck } from "./security.ts";
export { pidfdAlive } from "./pidfd.ts";
export { Session, tokenToString, tokenHash, tokenCanAccess, localTokenGetEid, localTokenGetPid, localToken } from "./session.ts";
export type { ReplyMessage } from "./session.ts";
export { Call, CallDirection, CallError } from "./call.ts";
export type { CallOptions } from "./call.ts";
export { listenFds, SD_LISTEN_FDS_START } from "./transport/systemd.ts";
export type { ListenFd, ListenFdsOptions, SocketFamily } from "./transport/systemd.ts";
export { createSealedMemfd, sealedMemfdFrom, checkSealedMemfd, mapSealedMemfd, memfdSeals, unmapNow, Seal, REQUIRED_SEALS } from "./transport/shm.ts";
export type { MemfdOptions } from "./transport/shm.ts";
export { dupFd } from "./native/socket.ts";
export { trimBigBuffers, bigBytesMapped } from "./native/big.ts";
export { Archive, ArchivedMessage, ArchiveDisposition, ByteOrder } from "./archive/index.ts";
export type { ArchiveOptions, ArchiveMessageOut, ArchiveHeader, ArchiveRecord } from "./archive/index.ts";
export {
  typeToRep,
  typeFromRep,
  encodeTypeRep,
  decodeTypeRep,
  checkAssignable,
  protocolToRep,
  protocolFromRep,
  encodeProtocolRep,
  decodeProtocolRep,
  updateProtocol,
  checkProtocolRep,
} from "./typerep/index.ts";
export type { TypeRep, ProtocolRep, ProtocolMessageRep } from "./typerep/index.ts";
