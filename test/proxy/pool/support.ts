/**
 * A small server-connection driver for the pool tests, built on the proxy's own upstream dialing
 * and protocol codecs: a real PostgreSQL session (trust authentication, as the test servers use on
 * loopback) whose frames the test reads one by one, or runs simple queries on.
 */
import type net from 'node:net';
import { FrameReader, type TypedFrame } from '../../../src/proxy/protocol/frames.js';
import { encodeMessage, encodeStartupMessage, MessageType, parseErrorFields, PROTOCOL_3_0, TERMINATE } from '../../../src/proxy/protocol/messages.js';
import { openUpstream, upstreamTarget } from '../../../src/proxy/upstream.js';
import type { ServerConnection, TransactionStatus } from '../../../src/proxy/pool/pool.js';

export class RawServer implements ServerConnection {
  private readonly reader = new FrameReader(1 << 30);
  /** Who gets the frames the server sends; `run` takes them while it runs. */
  onFrame: ((frame: TypedFrame) => void) | undefined;
  transactionStatus: TransactionStatus = 'I';
  closed = false;
  /** The ParameterStatus frames of the startup, for a relay to replay to its clients. */
  readonly parameterStatus: Buffer[] = [];
  processId = 0;

  private constructor(readonly socket: net.Socket) {
    socket.on('data', (chunk: Buffer) => {
      this.reader.push(chunk);
      for (let frame = this.reader.nextTyped(); frame; frame = this.reader.nextTyped()) {
        if (frame.type === MessageType.ReadyForQuery) this.transactionStatus = String.fromCharCode(frame.body[0]!) as TransactionStatus;
        this.onFrame?.(frame);
      }
    });
    socket.on('error', () => {});
    socket.on('close', () => {
      this.closed = true;
    });
  }

  static async open(url: string): Promise<RawServer> {
    const parsed = new URL(url);
    const socket = await openUpstream(upstreamTarget(url, 5_000));
    const server = new RawServer(socket);
    socket.resume();
    await new Promise<void>((resolve, reject) => {
      server.onFrame = (frame) => {
        if (frame.type === MessageType.ParameterStatus) server.parameterStatus.push(Buffer.from(frame.frame));
        else if (frame.type === MessageType.BackendKeyData) server.processId = frame.body.readInt32BE(0);
        else if (frame.type === MessageType.ErrorResponse) reject(new Error(parseErrorFields(frame.body).get('M')));
        else if (frame.type === MessageType.Authentication && frame.body.readInt32BE(0) !== 0) reject(new Error('the test server asked for a password'));
        else if (frame.type === MessageType.ReadyForQuery) resolve();
      };
      socket.once('close', () => reject(new Error('the server closed the connection during startup')));
      socket.write(
        encodeStartupMessage(PROTOCOL_3_0, [
          ['user', decodeURIComponent(parsed.username)],
          ['database', decodeURIComponent(parsed.pathname.slice(1))],
        ]),
      );
    });
    server.onFrame = undefined;
    return server;
  }

  get usable(): boolean {
    return !this.closed;
  }

  send(frame: Buffer): void {
    this.socket.write(frame);
  }

  /** Runs `sql` as a simple query and returns the first column of each row, as text. */
  query(sql: string): Promise<string[]> {
    const previous = this.onFrame;
    return new Promise<string[]>((resolve, reject) => {
      const rows: string[] = [];
      let failure: Error | undefined;
      const onClose = () => reject(new Error('the server closed the connection'));
      this.socket.once('close', onClose);
      this.onFrame = (frame) => {
        if (frame.type === 0x44 /* DataRow */) {
          const length = frame.body.readInt32BE(2);
          rows.push(frame.body.toString('utf8', 6, 6 + length));
        } else if (frame.type === MessageType.ErrorResponse) {
          failure = new Error(parseErrorFields(frame.body).get('M'));
        } else if (frame.type === MessageType.ReadyForQuery) {
          this.onFrame = previous;
          this.socket.removeListener('close', onClose);
          if (failure) reject(failure);
          else resolve(rows);
        }
      };
      this.socket.write(encodeMessage(MessageType.Query, Buffer.from(`${sql}\0`)));
    });
  }

  async run(sql: string): Promise<void> {
    await this.query(sql);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.socket.end(TERMINATE);
  }
}
