/**
 * Framing of the PostgreSQL v3 wire protocol, with no I/O: bytes in, frames (or frame boundaries) out.
 *
 * Two shapes of frame exist. Startup-phase packets (StartupMessage, SSLRequest, CancelRequest…) are
 * `int32 length, body`; every later message is `byte type, int32 length, body`. In both the length
 * counts itself but not the type byte.
 */

/** PostgreSQL refuses startup packets longer than this (MAX_STARTUP_PACKET_LENGTH). */
export const MAX_STARTUP_PACKET_LENGTH = 10_000;

/** The largest message PostgreSQL accepts at all (PQ_LARGE_MESSAGE_LIMIT is 1 GB - 1). */
export const MAX_MESSAGE_LENGTH = 0x3fffffff;

/** A peer broke the protocol. `code` is the SQLSTATE the client is told (08P01 protocol_violation). */
export class ProtocolError extends Error {
  readonly code: string;
  constructor(message: string, code = '08P01') {
    super(message);
    this.name = 'ProtocolError';
    this.code = code;
  }
}

export interface TypedFrame {
  type: number;
  /** The whole frame, type byte and length included, so it can be forwarded untouched. */
  frame: Buffer;
  /** The payload after the length. */
  body: Buffer;
}

const EMPTY = Buffer.alloc(0);

/**
 * Collects chunks and cuts whole frames out of them. Used only while the proxy has to look inside
 * messages (startup and authentication); the forwarding phase uses FrameScanner, which never copies.
 */
export class FrameReader {
  private buffer: Buffer = EMPTY;

  /** `maxLength` bounds the length field, so a hostile peer cannot make us buffer without end. */
  constructor(private maxLength: number) {}

  setMaxLength(maxLength: number): void {
    this.maxLength = maxLength;
  }

  push(chunk: Buffer): void {
    this.buffer = this.buffer.length === 0 ? chunk : Buffer.concat([this.buffer, chunk]);
  }

  /** Bytes received but not yet returned as frames. */
  get pending(): number {
    return this.buffer.length;
  }

  /**
   * Whether the buffer starts with a Terminate message ('X', length 4) where a startup packet
   * belongs: true, false, or undefined while the bytes so far could still be one. node-postgres
   * sends it when a client is ended before it has connected.
   */
  startsWithTerminate(): boolean | undefined {
    const terminate = [0x58, 0, 0, 0, 4];
    const seen = Math.min(this.buffer.length, terminate.length);
    for (let i = 0; i < seen; i++) if (this.buffer[i] !== terminate[i]) return false;
    return seen === terminate.length ? true : undefined;
  }

  /** The next `int32 length, body` packet's body, or undefined until all of it has arrived. */
  nextUntyped(): Buffer | undefined {
    if (this.buffer.length < 4) return undefined;
    const length = this.buffer.readInt32BE(0);
    if (length < 8 || length > this.maxLength) {
      throw new ProtocolError(`invalid startup packet length ${length} (expected 8 to ${this.maxLength} bytes)`);
    }
    if (this.buffer.length < length) return undefined;
    const body = this.buffer.subarray(4, length);
    this.buffer = this.buffer.subarray(length);
    return body;
  }

  /** The next typed message, or undefined until all of it has arrived. */
  nextTyped(): TypedFrame | undefined {
    if (this.buffer.length < 5) return undefined;
    const length = this.buffer.readInt32BE(1);
    if (length < 4 || length > this.maxLength) {
      throw new ProtocolError(`invalid length ${length} for message type ${describeType(this.buffer[0]!)}`);
    }
    if (this.buffer.length < length + 1) return undefined;
    const frame = this.buffer.subarray(0, length + 1);
    this.buffer = this.buffer.subarray(length + 1);
    return { type: frame[0]!, frame, body: frame.subarray(5) };
  }

  /** Hands back whatever is buffered and forgets it (when switching to plain forwarding). */
  takeRest(): Buffer {
    const rest = this.buffer;
    this.buffer = EMPTY;
    return rest;
  }
}

/**
 * Follows frame boundaries in a forwarded byte stream without copying or holding payloads: the
 * forwarding path hands each chunk on as it came and only needs to know where messages start
 * (to count queries, and to know when it may inject an ErrorResponse without corrupting the stream).
 */
export class FrameScanner {
  /** Payload bytes of the current message still to come. */
  private remaining = 0;
  /** A header split across chunks: up to 5 bytes, kept as a number pair instead of a buffer. */
  private headerBytes = 0;
  private headerType = 0;
  private headerLength = 0;
  /** The body of a message of the captured type, while it is being read. */
  private capture: Buffer[] | undefined;

  constructor(
    private readonly onFrame: (type: number, length: number) => void,
    private readonly maxLength = MAX_MESSAGE_LENGTH,
    /** Messages of this type, up to `maxLength` bytes of body, are also handed over whole. */
    private readonly captured?: { type: number; maxLength: number; onBody: (body: Buffer) => void },
  ) {}

  /** True between messages: an injected message would be read as a whole message. */
  get atBoundary(): boolean {
    return this.remaining === 0 && this.headerBytes === 0;
  }

  scan(chunk: Buffer): void {
    const size = chunk.length;
    let offset = 0;
    while (offset < size) {
      if (this.remaining > 0) {
        const take = Math.min(this.remaining, size - offset);
        this.capture?.push(chunk.subarray(offset, offset + take));
        this.remaining -= take;
        offset += take;
        if (this.remaining === 0 && this.capture) {
          const body = Buffer.concat(this.capture);
          this.capture = undefined;
          this.captured!.onBody(body);
        }
        continue;
      }
      let type: number;
      let length: number;
      if (this.headerBytes === 0 && size - offset >= 5) {
        type = chunk[offset]!;
        length = chunk.readInt32BE(offset + 1);
        offset += 5;
      } else {
        // Slow path: the header straddles chunks; assemble it a byte at a time.
        if (this.headerBytes === 0) {
          this.headerType = chunk[offset]!;
          this.headerLength = 0;
        } else {
          this.headerLength = (this.headerLength * 256 + chunk[offset]!) >>> 0;
        }
        this.headerBytes++;
        offset++;
        if (this.headerBytes < 5) continue;
        this.headerBytes = 0;
        type = this.headerType;
        length = this.headerLength | 0;
      }
      if (length < 4 || length > this.maxLength) {
        throw new ProtocolError(`invalid length ${length} for message type ${describeType(type)}`);
      }
      this.remaining = length - 4;
      if (this.captured && type === this.captured.type && this.remaining > 0 && this.remaining <= this.captured.maxLength) this.capture = [];
      this.onFrame(type, length);
    }
  }
}

/** `'Q'` for a printable type byte, else its number: for error messages about garbage. */
export function describeType(type: number): string {
  return type >= 0x20 && type < 0x7f ? `'${String.fromCharCode(type)}'` : `0x${type.toString(16).padStart(2, '0')}`;
}
