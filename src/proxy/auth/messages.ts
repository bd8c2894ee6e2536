/**
 * The authentication messages the proxy writes or reads itself once it authenticates clients (and
 * logs in to servers) instead of relaying the exchange. Pure codecs over Buffers, like
 * protocol/messages.ts, which has the ones the relay needs.
 */
import { ProtocolError } from '../protocol/frames.js';
import { AuthCode, MessageType, encodeMessage } from '../protocol/messages.js';

function encodeAuthentication(code: number, data: Buffer = Buffer.alloc(0)): Buffer {
  const payload = Buffer.alloc(4 + data.length);
  payload.writeInt32BE(code, 0);
  data.copy(payload, 4);
  return encodeMessage(MessageType.Authentication, payload);
}

export const encodeAuthenticationOk = (): Buffer => encodeAuthentication(AuthCode.Ok);
export const encodeAuthenticationCleartextPassword = (): Buffer => encodeAuthentication(AuthCode.CleartextPassword);
export const encodeAuthenticationMD5Password = (salt: Buffer): Buffer => encodeAuthentication(AuthCode.MD5Password, salt);
export const encodeAuthenticationSASLContinue = (data: Buffer): Buffer => encodeAuthentication(AuthCode.SASLContinue, data);
export const encodeAuthenticationSASLFinal = (data: Buffer): Buffer => encodeAuthentication(AuthCode.SASLFinal, data);

/** The data after the code in an AuthenticationMD5Password / SASLContinue / SASLFinal body. */
export function authenticationData(body: Buffer): Buffer {
  return body.subarray(4);
}

/** PasswordMessage: the password (or md5 response) as a C string. */
export function encodePasswordMessage(password: string): Buffer {
  return encodeMessage(MessageType.PasswordFamily, Buffer.from(`${password}\0`, 'utf8'));
}

export function parsePasswordMessage(body: Buffer): string {
  const end = body.indexOf(0);
  if (end !== body.length - 1) throw new ProtocolError('invalid password packet size');
  return body.toString('utf8', 0, end);
}

export function encodeSASLInitialResponse(mechanism: string, data: Buffer): Buffer {
  const name = Buffer.from(`${mechanism}\0`, 'utf8');
  const length = Buffer.alloc(4);
  length.writeInt32BE(data.length, 0);
  return encodeMessage(MessageType.PasswordFamily, Buffer.concat([name, length, data]));
}

/** The mechanism and the initial response; PostgreSQL's -1 length (no initial response) reads as empty. */
export function parseSASLInitialResponseData(body: Buffer): { mechanism: string; data: Buffer } {
  const end = body.indexOf(0);
  if (end < 0 || end + 5 > body.length) throw new ProtocolError('malformed SASLInitialResponse');
  const mechanism = body.toString('utf8', 0, end);
  const length = body.readInt32BE(end + 1);
  const data = body.subarray(end + 5);
  if (length === -1 && data.length === 0) return { mechanism, data };
  if (length !== data.length) throw new ProtocolError('malformed SASLInitialResponse: length does not match the data');
  return { mechanism, data };
}

export const encodeSASLResponse = (data: Buffer): Buffer => encodeMessage(MessageType.PasswordFamily, data);
