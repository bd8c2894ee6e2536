/**
 * A logged-in admin console client (database --admin-database, a user of --admin-users): its
 * simple queries are answered by the console (admin/console.ts) over the proxy's live figures,
 * one at a time, in order. No server connection is involved.
 */
import type net from 'node:net';
import type tls from 'node:tls';
import { EXTENDED_PROTOCOL_REFUSAL, answerAdminQuery } from '../admin/console.js';
import type { AdminSource } from '../admin/source.js';
import { FrameReader, MAX_MESSAGE_LENGTH, ProtocolError } from '../protocol/frames.js';
import { MessageType, encodeErrorResponse, encodeMessage, encodeReadyForQuery, type ErrorFields } from '../protocol/messages.js';
import { endClient } from './client.js';

/** What the console's clients are told they talk to. */
const PARAMETERS: ReadonlyArray<[string, string]> = [
  ['server_version', '16.0 (tandem admin console)'],
  ['server_encoding', 'UTF8'],
  ['client_encoding', 'UTF8'],
  ['standard_conforming_strings', 'on'],
  ['DateStyle', 'ISO, MDY'],
  ['integer_datetimes', 'on'],
];

/** The end of a login to the console, after AuthenticationOk. */
export function adminWelcome(cancelKey: Buffer): Buffer {
  return Buffer.concat([
    ...PARAMETERS.map(([name, value]) => encodeMessage(MessageType.ParameterStatus, Buffer.from(`${name}\0${value}\0`, 'utf8'))),
    encodeMessage(MessageType.BackendKeyData, cancelKey),
    encodeReadyForQuery('I'),
  ]);
}

export class AdminConversation {
  private readonly reader = new FrameReader(MAX_MESSAGE_LENGTH);
  private answering: Promise<void> = Promise.resolve();
  private stopped = false;

  constructor(
    private readonly client: net.Socket | tls.TLSSocket,
    private readonly source: AdminSource,
    private readonly ended: (error: ErrorFields | undefined) => void,
  ) {}

  start(rest: Buffer): void {
    this.client.on('data', this.onData);
    if (rest.length > 0) this.onData(rest);
  }

  stop(): void {
    this.stopped = true;
    this.client.removeListener('data', this.onData);
  }

  private readonly onData = (chunk: Buffer): void => {
    if (this.stopped) return;
    this.reader.push(chunk);
    try {
      for (let frame = this.reader.nextTyped(); frame && !this.stopped; frame = this.reader.nextTyped()) {
        if (frame.type === MessageType.Terminate) {
          this.stop();
          this.client.end();
          this.ended(undefined);
          return;
        }
        if (frame.type !== MessageType.Query) {
          this.fail(EXTENDED_PROTOCOL_REFUSAL);
          return;
        }
        const sql = frame.body.toString('utf8', 0, Math.max(0, frame.body.length - 1));
        this.answering = this.answering.then(async () => {
          if (this.stopped) return;
          let reply: Buffer;
          try {
            reply = await answerAdminQuery(sql, this.source);
          } catch (error) {
            reply = encodeErrorResponse({ severity: 'ERROR', code: 'XX000', message: `the admin console failed: ${(error as Error).message}` });
          }
          if (!this.stopped && !this.client.destroyed) this.client.write(Buffer.concat([reply, encodeReadyForQuery('I')]));
        });
      }
    } catch (error) {
      this.fail({ severity: 'FATAL', code: error instanceof ProtocolError ? error.code : 'XX000', message: (error as Error).message });
    }
  };

  private fail(error: ErrorFields): void {
    this.stop();
    endClient(this.client, encodeErrorResponse(error));
    this.ended(error);
  }
}
