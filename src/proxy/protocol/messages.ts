/**
 * Codecs for the few messages the proxy has to read or write itself. Everything else passes through
 * as opaque frames. Pure functions over Buffers: no sockets, no state.
 */
import { ProtocolError } from './frames.js';

/** Startup-phase request codes (the int32 after the length). */
export const SSL_REQUEST_CODE = 80877103;
export const GSSENC_REQUEST_CODE = 80877104;
export const CANCEL_REQUEST_CODE = 80877102;
/** Protocol 3.0; 3.2 (PostgreSQL 18) is 196610. The major is the high 16 bits. */
export const PROTOCOL_3_0 = 196608;

/** Message type bytes the proxy looks at. */
export const MessageType = {
  // backend → frontend
  Authentication: 0x52, // 'R'
  BackendKeyData: 0x4b, // 'K'
  ReadyForQuery: 0x5a, // 'Z'
  ErrorResponse: 0x45, // 'E'
  NoticeResponse: 0x4e, // 'N'
  ParameterStatus: 0x53, // 'S'
  NegotiateProtocolVersion: 0x76, // 'v'
  ParseComplete: 0x31, // '1'
  BindComplete: 0x32, // '2'
  CloseComplete: 0x33, // '3'
  ParameterDescription: 0x74, // 't'
  RowDescription: 0x54, // 'T'
  DataRow: 0x44, // 'D' (same byte as Describe, other direction)
  NoData: 0x6e, // 'n'
  CommandComplete: 0x43, // 'C' (same byte as Close, other direction)
  EmptyQueryResponse: 0x49, // 'I'
  PortalSuspended: 0x73, // 's'
  // frontend → backend
  Query: 0x51, // 'Q'
  Parse: 0x50, // 'P'
  Bind: 0x42, // 'B'
  Describe: 0x44, // 'D'
  Close: 0x43, // 'C'
  Execute: 0x45, // 'E' (same byte as ErrorResponse, other direction)
  Sync: 0x53, // 'S' (same byte as ParameterStatus, other direction)
  FunctionCall: 0x46, // 'F'
  PasswordFamily: 0x70, // 'p': password, SASLInitialResponse, SASLResponse, GSS response
  Terminate: 0x58, // 'X'
} as const;

/** Authentication request codes inside an 'R' message. */
export const AuthCode = {
  Ok: 0,
  CleartextPassword: 3,
  MD5Password: 5,
  SASL: 10,
  SASLContinue: 11,
  SASLFinal: 12,
} as const;

export type StartupPacket =
  | { kind: 'ssl' }
  | { kind: 'gssenc' }
  /** `key` is everything after the request code: process id and secret (longer secrets in 3.2). */
  | { kind: 'cancel'; key: Buffer }
  | { kind: 'startup'; protocol: number; params: StartupParams };

/** Startup parameters in the order the client sent them (order is kept when they are passed on). */
export type StartupParams = Array<[name: string, value: string]>;

/** Reads the body (after the length) of a startup-phase packet. */
export function parseStartupPacket(body: Buffer): StartupPacket {
  if (body.length < 4) throw new ProtocolError('startup packet too short');
  const code = body.readInt32BE(0);
  if (code === SSL_REQUEST_CODE) return { kind: 'ssl' };
  if (code === GSSENC_REQUEST_CODE) return { kind: 'gssenc' };
  if (code === CANCEL_REQUEST_CODE) {
    // 4 bytes of pid and at least 4 of secret; protocol 3.2 allows secrets up to 256 bytes.
    if (body.length < 12 || body.length > 4 + 4 + 256) throw new ProtocolError('malformed cancel request');
    return { kind: 'cancel', key: Buffer.from(body.subarray(4)) };
  }
  const major = code >>> 16;
  if (major !== 3) {
    throw new ProtocolError(`unsupported frontend protocol ${major}.${code & 0xffff}: the proxy speaks protocol 3`, '0A000');
  }
  return { kind: 'startup', protocol: code, params: parseParams(body.subarray(4)) };
}

function parseParams(data: Buffer): StartupParams {
  const params: StartupParams = [];
  const seen = new Set<string>();
  let offset = 0;
  for (;;) {
    if (offset >= data.length) throw new ProtocolError('startup packet is not terminated by a zero byte');
    if (data[offset] === 0) {
      if (offset !== data.length - 1) throw new ProtocolError('startup packet has bytes after its terminator');
      break;
    }
    const name = readCString(data, offset);
    offset = name.next;
    if (offset >= data.length) throw new ProtocolError(`startup parameter "${name.value}" has no value`);
    const value = readCString(data, offset);
    offset = value.next;
    if (seen.has(name.value)) throw new ProtocolError(`startup parameter "${name.value}" given twice`);
    seen.add(name.value);
    params.push([name.value, value.value]);
  }
  if (!seen.has('user')) throw new ProtocolError('no PostgreSQL user name specified in startup packet', '28000');
  return params;
}

function readCString(data: Buffer, offset: number): { value: string; next: number } {
  const end = data.indexOf(0, offset);
  if (end < 0) throw new ProtocolError('unterminated string in message');
  return { value: data.toString('utf8', offset, end), next: end + 1 };
}

export function encodeStartupMessage(protocol: number, params: StartupParams): Buffer {
  const parts: Buffer[] = [];
  for (const [name, value] of params) parts.push(Buffer.from(`${name}\0${value}\0`, 'utf8'));
  parts.push(Buffer.from([0]));
  const payload = Buffer.concat(parts);
  const header = Buffer.alloc(8);
  header.writeInt32BE(8 + payload.length, 0);
  header.writeInt32BE(protocol, 4);
  return Buffer.concat([header, payload]);
}

export function encodeSSLRequest(): Buffer {
  const packet = Buffer.alloc(8);
  packet.writeInt32BE(8, 0);
  packet.writeInt32BE(SSL_REQUEST_CODE, 4);
  return packet;
}

export function encodeCancelRequest(key: Buffer): Buffer {
  const packet = Buffer.alloc(8 + key.length);
  packet.writeInt32BE(packet.length, 0);
  packet.writeInt32BE(CANCEL_REQUEST_CODE, 4);
  key.copy(packet, 8);
  return packet;
}

/** A typed message: type byte, length, payload. */
export function encodeMessage(type: number, payload: Buffer): Buffer {
  const frame = Buffer.alloc(5 + payload.length);
  frame[0] = type;
  frame.writeInt32BE(4 + payload.length, 1);
  payload.copy(frame, 5);
  return frame;
}

export const TERMINATE = encodeMessage(MessageType.Terminate, Buffer.alloc(0));

export interface ErrorFields {
  severity: 'FATAL' | 'ERROR';
  /** SQLSTATE, e.g. 3D000. */
  code: string;
  message: string;
  detail?: string;
  hint?: string;
}

/** What a client is told when the server hangs up without saying why (both forwarding paths send it). */
export const SERVER_CLOSED_UNEXPECTEDLY: ErrorFields = {
  severity: 'FATAL',
  code: '08006',
  message: 'the PostgreSQL server closed the connection unexpectedly',
  hint: 'The server may have been restarted; reconnect.',
};

/** An ErrorResponse as PostgreSQL sends it, so drivers show it like any server error. */
export function encodeErrorResponse(fields: ErrorFields): Buffer {
  return encodeFieldsMessage(MessageType.ErrorResponse, fields);
}

export interface NoticeFields extends Omit<ErrorFields, 'severity'> {
  severity: 'NOTICE' | 'WARNING';
}

export function encodeNoticeResponse(fields: NoticeFields): Buffer {
  return encodeFieldsMessage(MessageType.NoticeResponse, fields);
}

function encodeFieldsMessage(type: number, fields: ErrorFields | NoticeFields): Buffer {
  const entries: Array<[string, string | undefined]> = [
    ['S', fields.severity],
    ['V', fields.severity],
    ['C', fields.code],
    ['M', fields.message],
    ['D', fields.detail],
    ['H', fields.hint],
  ];
  const text = entries
    .filter((entry): entry is [string, string] => entry[1] !== undefined)
    .map(([tag, value]) => `${tag}${value}\0`)
    .join('');
  return encodeMessage(type, Buffer.from(`${text}\0`, 'utf8'));
}

/** Type oids of the columns the proxy describes itself (pg_type's, as PostgreSQL sends them). */
export const TypeOid = {
  bool: 16,
  int8: 20,
  int4: 23,
  text: 25,
  numeric: 1700,
} as const;

export interface ColumnDescription {
  name: string;
  typeOid: number;
}

/** The pg_type.typlen a RowDescription carries: -1 for the variable-length types. */
const TYPE_SIZE: Record<number, number> = { [TypeOid.bool]: 1, [TypeOid.int8]: 8, [TypeOid.int4]: 4 };

/** A RowDescription of text-format columns that belong to no table (as for a computed result). */
export function encodeRowDescription(columns: readonly ColumnDescription[]): Buffer {
  const parts: Buffer[] = [uint16(columns.length)];
  for (const column of columns) {
    const field = Buffer.alloc(18);
    // table oid 0 and column number 0: not a table column; typmod -1; format 0 (text).
    field.writeInt32BE(column.typeOid, 6);
    field.writeInt16BE(TYPE_SIZE[column.typeOid] ?? -1, 10);
    field.writeInt32BE(-1, 12);
    parts.push(Buffer.from(`${column.name}\0`, 'utf8'), field);
  }
  return encodeMessage(MessageType.RowDescription, Buffer.concat(parts));
}

/** A DataRow of text values; null is SQL NULL. */
export function encodeDataRow(values: ReadonlyArray<string | null>): Buffer {
  const parts: Buffer[] = [uint16(values.length)];
  for (const value of values) {
    const length = Buffer.alloc(4);
    if (value === null) {
      length.writeInt32BE(-1, 0);
      parts.push(length);
    } else {
      const text = Buffer.from(value, 'utf8');
      length.writeInt32BE(text.length, 0);
      parts.push(length, text);
    }
  }
  return encodeMessage(MessageType.DataRow, Buffer.concat(parts));
}

/** CommandComplete with its tag (`SHOW`, `SELECT 3`, `PAUSE`). */
export function encodeCommandComplete(tag: string): Buffer {
  return encodeMessage(MessageType.CommandComplete, Buffer.from(`${tag}\0`, 'utf8'));
}

export const EMPTY_QUERY_RESPONSE = encodeMessage(MessageType.EmptyQueryResponse, Buffer.alloc(0));

/** ReadyForQuery with the transaction status: idle, in a transaction, or in a failed one. */
export function encodeReadyForQuery(status: 'I' | 'T' | 'E'): Buffer {
  return encodeMessage(MessageType.ReadyForQuery, Buffer.from(status, 'latin1'));
}

function uint16(value: number): Buffer {
  const buffer = Buffer.alloc(2);
  buffer.writeUInt16BE(value, 0);
  return buffer;
}

/** The fields of an ErrorResponse or NoticeResponse body, keyed by their one-letter tag. */
export function parseErrorFields(body: Buffer): Map<string, string> {
  const fields = new Map<string, string>();
  let offset = 0;
  while (offset < body.length && body[offset] !== 0) {
    const tag = String.fromCharCode(body[offset]!);
    const value = readCString(body, offset + 1);
    fields.set(tag, value.value);
    offset = value.next;
  }
  return fields;
}

/** A ParameterStatus ('S') body: the setting's name and its new value. */
export function parseParameterStatus(body: Buffer): { name: string; value: string } {
  const name = readCString(body, 0);
  const value = readCString(body, name.next);
  return { name: name.value, value: value.value };
}

export type AuthRequest =
  | { code: typeof AuthCode.SASL; mechanisms: string[] }
  | { code: number; mechanisms?: undefined };

/** Reads an Authentication ('R') body: its code and, for SASL, the mechanisms on offer. */
export function parseAuthRequest(body: Buffer): AuthRequest {
  if (body.length < 4) throw new ProtocolError('authentication message too short');
  const code = body.readInt32BE(0);
  if (code !== AuthCode.SASL) return { code };
  const mechanisms: string[] = [];
  let offset = 4;
  while (offset < body.length && body[offset] !== 0) {
    const name = readCString(body, offset);
    mechanisms.push(name.value);
    offset = name.next;
  }
  return { code, mechanisms };
}

export function encodeAuthenticationSASL(mechanisms: readonly string[]): Buffer {
  const payload = Buffer.concat([Buffer.from([0, 0, 0, AuthCode.SASL]), Buffer.from(mechanisms.map((m) => `${m}\0`).join('') + '\0', 'utf8')]);
  return encodeMessage(MessageType.Authentication, payload);
}

/**
 * The mechanism a SASLInitialResponse picks and its GS2 channel-binding flag:
 * 'n' (client cannot bind), 'y' (client could, but thinks the server cannot), 'p' (binding in use).
 */
export function parseSASLInitialResponse(body: Buffer): { mechanism: string; channelBindingFlag: string } {
  const mechanism = readCString(body, 0);
  const dataStart = mechanism.next + 4;
  if (dataStart > body.length) throw new ProtocolError('malformed SASLInitialResponse');
  const flag = dataStart < body.length ? String.fromCharCode(body[dataStart]!) : '';
  return { mechanism: mechanism.value, channelBindingFlag: flag };
}
