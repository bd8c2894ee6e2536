/**
 * What transaction-mode prepared statements cost per message, without sockets: a pgbench
 * `-M prepared -S` transaction (Bind, Describe, Execute, Sync; BindComplete, RowDescription,
 * DataRow, CommandComplete, ReadyForQuery) cut into frames, once passed on as they are and once
 * through PreparedStatements, moving to the other of two server connections after every transaction.
 *
 *   npx tsx bench/proxy/prepared.ts [transactions, default 1000000]
 */
import { FrameReader, type TypedFrame } from '../../src/proxy/protocol/frames.js';
import { encodeMessage } from '../../src/proxy/protocol/messages.js';
import { PreparedStatements, ServerStatements } from '../../src/proxy/pool/prepared.js';

const transactions = Number(process.argv[2] ?? 1_000_000);

const message = (type: string, payload: Buffer | string = '') => encodeMessage(type.charCodeAt(0), Buffer.isBuffer(payload) ? payload : Buffer.from(payload, 'latin1'));
const int16 = (n: number) => Buffer.from([n >> 8, n & 0xff]);
const int32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeInt32BE(n);
  return b;
};

const parse = message('P', Buffer.concat([Buffer.from('P0_1\0SELECT abalance FROM pgbench_accounts WHERE aid = $1\0'), int16(1), int32(23)]));
const transaction = Buffer.concat([
  message('B', Buffer.concat([Buffer.from('\0P0_1\0'), int16(0), int16(1), int32(5), Buffer.from('12345'), int16(0)])),
  message('D', 'P\0'),
  message('E', Buffer.concat([Buffer.from('\0'), int32(0)])),
  message('S'),
]);
const replies = Buffer.concat([
  message('2'),
  message('T', Buffer.concat([int16(1), Buffer.from('abalance\0'), int32(16384), int16(3), int32(23), int16(4), int32(-1), int16(0)])),
  message('D', Buffer.concat([int16(1), int32(1), Buffer.from('0')])),
  message('C', 'SELECT 1\0'),
  message('Z', 'I'),
]);

function framesOf(bytes: Buffer): TypedFrame[] {
  const reader = new FrameReader(1 << 20);
  reader.push(bytes);
  const out: TypedFrame[] = [];
  for (let frame = reader.nextTyped(); frame; frame = reader.nextTyped()) out.push(frame);
  return out;
}

let bytes = 0;
/** Parses injected since the last replies: the simulated server answers each with ParseComplete. */
let injected = 0;
const PARSE_COMPLETE = framesOf(message('1'))[0]!;
const sink = {
  server: (b: Buffer) => {
    if (b[0] === 0x50 /* Parse */) injected++;
    bytes += b.length;
  },
  client: (b: Buffer) => void (bytes += b.length),
};

// Cut once: the figure is the rewriting, not the framing (which the session pays either way).
const clientFrames = framesOf(transaction);
const serverFrames = framesOf(replies);

function run(rewrite: boolean): number {
  const servers = [new ServerStatements(), new ServerStatements()];
  const statements = new PreparedStatements();
  statements.attach(servers[0]!);
  for (const frame of framesOf(Buffer.concat([parse, message('S')]))) statements.fromClient(frame, sink);
  for (const frame of framesOf(Buffer.concat([message('1'), message('Z', 'I')]))) statements.fromServer(frame, sink);
  injected = 0;
  const started = performance.now();
  for (let i = 0; i < transactions; i++) {
    if (rewrite) {
      statements.detach();
      statements.attach(servers[i & 1]!);
    }
    for (const frame of clientFrames) rewrite ? statements.fromClient(frame, sink) : sink.server(frame.frame);
    for (; injected > 0; injected--) statements.fromServer(PARSE_COMPLETE, sink);
    for (const frame of serverFrames) rewrite ? statements.fromServer(frame, sink) : sink.client(frame.frame);
  }
  return ((performance.now() - started) * 1e6) / transactions;
}

const median = (values: number[]) => values.sort((a, b) => a - b)[values.length >> 1]!;
const plain: number[] = [];
const rewritten: number[] = [];
for (let round = 0; round < 7; round++) {
  plain.push(run(false));
  rewritten.push(run(true));
}
console.log(`frames passed on as they are  ${median(plain).toFixed(0).padStart(6)} ns per transaction (9 messages), median of 7`);
console.log(`through PreparedStatements    ${median(rewritten).toFixed(0).padStart(6)} ns per transaction (9 messages), median of 7`);
