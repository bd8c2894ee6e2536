/**
 * Whether a DEFAULT expression is volatile. Since PostgreSQL 11, ADD COLUMN with a non-volatile
 * default only writes the catalog; a volatile one (a value per row) rewrites the whole table. The
 * linter has no database to ask, so it knows the functions migrations use in defaults, and treats
 * any other function as possibly volatile (CREATE FUNCTION's default is VOLATILE).
 */
import type { Node } from 'libpg-query';
import { stringList, walk } from '../sqlparse/ast.js';

const VOLATILE = new Set([
  'random',
  'random_normal',
  'setseed',
  'gen_random_uuid',
  'gen_random_bytes',
  'uuid_generate_v1',
  'uuid_generate_v1mc',
  'uuid_generate_v4',
  'uuidv4',
  'uuidv7',
  'clock_timestamp',
  'timeofday',
  'nextval',
  'setval',
  'txid_current',
  'pg_current_xact_id',
]);

const NON_VOLATILE = new Set([
  'now',
  'transaction_timestamp',
  'statement_timestamp',
  'current_setting',
  'lower',
  'upper',
  'btrim',
  'ltrim',
  'rtrim',
  'length',
  'concat',
  'concat_ws',
  'format',
  'md5',
  'replace',
  'substr',
  'substring',
  'left',
  'right',
  'lpad',
  'rpad',
  'repeat',
  'to_char',
  'to_date',
  'to_timestamp',
  'to_json',
  'to_jsonb',
  'json_build_object',
  'json_build_array',
  'jsonb_build_object',
  'jsonb_build_array',
  'array_fill',
  'make_date',
  'make_time',
  'make_timestamp',
  'make_timestamptz',
  'make_interval',
  'date_trunc',
  'date_part',
  'extract',
  'timezone',
  'abs',
  'round',
  'floor',
  'ceil',
  'power',
]);

export interface Volatility {
  /** Functions known to be volatile. */
  volatile: string[];
  /** Functions whose volatility the linter cannot know. */
  unknown: string[];
}

export function volatilityOf(expression: Node | undefined): Volatility {
  const result: Volatility = { volatile: [], unknown: [] };
  walk(expression, (kind, body) => {
    if (kind !== 'FuncCall') return;
    const name = stringList(body.funcname as Node[] | undefined).at(-1)?.toLowerCase();
    if (!name) return;
    if (VOLATILE.has(name)) result.volatile.push(name);
    else if (!NON_VOLATILE.has(name)) result.unknown.push(name);
  });
  return result;
}
