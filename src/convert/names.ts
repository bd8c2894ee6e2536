/**
 * The names PostgreSQL gives constraints and indexes that the SQL leaves unnamed. The migration
 * format needs a name for each, and choosing PostgreSQL's keeps the converted migration creating
 * exactly what the plain SQL would have (`users_email_key`, `orders_user_id_fkey`, ...).
 */

/** PostgreSQL's NAMEDATALEN - 1: longer names are cut. */
export const MAX_NAME = 63;

/**
 * `table_columns_label`, shortened the way PostgreSQL's makeObjectName does it: the longer of
 * the two parts loses characters first until the whole fits in 63 bytes.
 */
export function defaultName(table: string, columns: readonly string[], label: string): string {
  const second = columns.join('_');
  const overhead = label.length + 1 + (second ? 1 : 0);
  const available = MAX_NAME - overhead;
  let firstLength = table.length;
  let secondLength = second.length;
  while (firstLength + secondLength > available) {
    if (firstLength > secondLength) firstLength--;
    else secondLength--;
  }
  const parts = [table.slice(0, firstLength)];
  if (second) parts.push(second.slice(0, secondLength));
  parts.push(label);
  return parts.join('_');
}
