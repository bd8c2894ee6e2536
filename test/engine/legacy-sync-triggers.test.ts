/**
 * A migration that an older tandem started, whose table still has that tandem's sync triggers: one per
 * side (`_tandem_sync` for the old version, `_tandem_sync_new` for the new), its function told the
 * side by the trigger that calls it. This tandem must serve it, stack on it and complete or roll it
 * back. A stacked migration makes the function anew from the rules the older migration stored, with
 * one trigger; where it stored none (a tandem from before stacking on one table), it gives the two
 * triggers the new version schemas in their own shape.
 */
import { describe, expect, it } from 'vitest';
import type pg from 'pg';
import { usePostgres } from '../support/harness.js';
import { columnNames, ok, start, tandem, triggersOf, versionClient } from '../support/migrations.js';
import { snapshot } from '../support/cases.js';
import { legacySyncTriggersSql } from '../../src/core/legacy-sync-triggers.js';
import { syncFunctionName, SYNC_TRIGGER_NAME } from '../../src/core/triggers.js';

const SETUP = `CREATE TABLE users (id int PRIMARY KEY, email text, score int NOT NULL DEFAULT 0);
               CREATE TABLE orders (id int PRIMARY KEY, total int);
               INSERT INTO users SELECT g, 'u' || g || '@example.com', g FROM generate_series(1, 50) g;
               INSERT INTO orders SELECT g, g * 10 FROM generate_series(1, 50) g;`;

const USERS = [
  { rename_column: { table: 'users', from: 'email', to: 'mail' } },
  { alter_column: { table: 'users', column: 'score', type: 'bigint', up: 'score', down: 'score::int' } },
];
const ORDERS = [{ alter_column: { table: 'orders', column: 'total', type: 'bigint', up: 'total * 100', down: '(total / 100)::int' } }];
const USERS_AGAIN = [{ add_column: { table: 'users', column: { name: 'domain', type: 'text', nullable: true }, up: "split_part(mail, '@', 2)" } }];

/** What the older tandem's sync function declared instead of reading the writer's schema. */
const LEGACY_DECLARATION = `  -- Which trigger called: the new version's writers (see SYNC_TRIGGER_NEW_NAME) or anyone else.
  _tandem_from_new boolean := TG_ARGV[0] = 'new';`;

/** Turns users' sync function and trigger into what the older tandem made for the same migration. */
async function makeLegacy(admin: pg.Client, newVersionSchemas: string[], { rulesStored }: { rulesStored: boolean }): Promise<void> {
  if (!rulesStored) await admin.query(`UPDATE tandem.migrations SET plan = plan - 'syncRules' WHERE name = '02_users'`);
  const fn = `tandem.${syncFunctionName('public', 'users')}`;
  const { rows } = await admin.query(`SELECT pg_get_functiondef($1::regproc) AS def`, [fn]);
  const current = /^ {2}-- The writer is the new version.*\n.*\n/m;
  expect(rows[0].def).toMatch(current);
  await admin.query(rows[0].def.replace(current, `${LEGACY_DECLARATION}\n`));
  const target = { schema: 'public', table: 'users', functionSchema: 'tandem', functionName: syncFunctionName('public', 'users'), triggerName: SYNC_TRIGGER_NAME };
  for (const sql of legacySyncTriggersSql(target, newVersionSchemas)) await admin.query(sql);
}

describe('sync triggers made by an older tandem', () => {
  const db = usePostgres();
  const one = async (client: pg.Client, sql: string) => (await client.query(sql)).rows[0];

  for (const end of ['complete', 'rollback'] as const) {
    it(`serve both versions, without stored rules take a migration stacked on other tables in their own shape, and ${end}`, async () => {
      await db.query(SETUP);
      ok(await tandem(db.url, ['init']));
      const admin = await db.client();
      const initial = await snapshot(admin);
      ok(await start(db.url, '02_users', USERS));
      await makeLegacy(admin, ['public_02_users'], { rulesStored: false });
      expect(await triggersOf(admin, 'public', 'users')).toEqual(['_tandem_sync', '_tandem_sync_new']);
      const legacy = await snapshot(admin);

      const v1 = await versionClient(db.url, null);
      const v2 = await versionClient(db.url, 'public_02_users');
      try {
        // An INSERT changes both sides: only the writer's version says which way it goes.
        await v2.query(`INSERT INTO users (id, mail, score) VALUES (200, 'two@example.com', 2)`);
        expect(await one(v1, 'SELECT email, score FROM users WHERE id = 200')).toEqual({ email: 'two@example.com', score: 2 });
        await v1.query(`INSERT INTO users (id, email, score) VALUES (100, 'one@example.com', 1)`);
        expect(await one(v2, 'SELECT mail, score FROM users WHERE id = 100')).toEqual({ mail: 'one@example.com', score: '1' });

        // Stacked on orders: users' two triggers take 03's writers as the new version's, as that tandem did.
        ok(await start(db.url, '03_orders', ORDERS));
        expect(await triggersOf(admin, 'public', 'users')).toEqual(['_tandem_sync', '_tandem_sync_new']);
        const v3 = await versionClient(db.url, 'public_03_orders');
        try {
          await v3.query(`INSERT INTO users (id, mail, score) VALUES (300, 'three@example.com', 3)`);
          expect(await one(v1, 'SELECT email, score FROM users WHERE id = 300')).toEqual({ email: 'three@example.com', score: 3 });
          await v3.query(`INSERT INTO orders (id, total) VALUES (300, 700)`);
          expect(await one(v1, 'SELECT total FROM orders WHERE id = 300')).toEqual({ total: 7 });
        } finally {
          await v3.end();
        }
        ok(await tandem(db.url, ['rollback']));
        await admin.query('DELETE FROM users WHERE id = 300');
        expect(await snapshot(admin)).toEqual(legacy);

        await v2.query(`INSERT INTO users (id, mail, score) VALUES (201, 'again@example.com', 4)`);
        expect(await one(v1, 'SELECT email, score FROM users WHERE id = 201')).toEqual({ email: 'again@example.com', score: 4 });
      } finally {
        await Promise.all([v1.end(), v2.end()]);
      }

      ok(await tandem(db.url, [end]));
      expect(await triggersOf(admin, 'public', 'users')).toEqual([]);
      expect((await admin.query(`SELECT count(*)::int AS n FROM pg_proc WHERE proname LIKE 'sync\\_%'`)).rows[0].n).toBe(0);
      if (end === 'complete') {
        expect(await columnNames(admin, 'public', 'users')).toEqual(['id', 'mail', 'score']);
        expect(await one(admin, 'SELECT mail, score FROM users WHERE id = 201')).toEqual({ mail: 'again@example.com', score: '4' });
      } else {
        await admin.query('DELETE FROM users WHERE id IN (100, 200, 201)');
        expect(await snapshot(admin)).toEqual(initial);
      }
    });
  }

  it('are replaced by one trigger when a stacked migration makes the function anew from the stored rules, and rolled back with it', async () => {
    await db.query(SETUP);
    ok(await tandem(db.url, ['init']));
    const admin = await db.client();
    const initial = await snapshot(admin);
    ok(await start(db.url, '02_users', USERS));
    await makeLegacy(admin, ['public_02_users'], { rulesStored: true });
    expect(await triggersOf(admin, 'public', 'users')).toEqual(['_tandem_sync', '_tandem_sync_new']);

    ok(await start(db.url, '03_users', USERS_AGAIN));
    expect(await triggersOf(admin, 'public', 'users')).toEqual(['_tandem_sync']);
    const v1 = await versionClient(db.url, null);
    const v2 = await versionClient(db.url, 'public_02_users');
    const v3 = await versionClient(db.url, 'public_03_users');
    try {
      await v3.query(`INSERT INTO users (id, mail, score, domain) VALUES (300, 'three@example.com', 3, 'mine')`);
      expect(await one(v1, 'SELECT email, score FROM users WHERE id = 300')).toEqual({ email: 'three@example.com', score: 3 });
      expect(await one(v3, 'SELECT domain FROM users WHERE id = 300')).toEqual({ domain: 'mine' });
      await v2.query(`INSERT INTO users (id, mail, score) VALUES (200, 'two@example.com', 2)`);
      expect(await one(v1, 'SELECT email, score FROM users WHERE id = 200')).toEqual({ email: 'two@example.com', score: 2 });
      expect(await one(v3, 'SELECT domain FROM users WHERE id = 200')).toEqual({ domain: 'example.com' });
      await v1.query(`INSERT INTO users (id, email, score) VALUES (100, 'one@x.org', 1)`);
      expect(await one(v3, 'SELECT mail, score, domain FROM users WHERE id = 100')).toEqual({ mail: 'one@x.org', score: '1', domain: 'x.org' });

      ok(await tandem(db.url, ['rollback']));
      expect(await triggersOf(admin, 'public', 'users')).toEqual(['_tandem_sync']);
      await v2.query(`INSERT INTO users (id, mail, score) VALUES (201, 'again@example.com', 4)`);
      expect(await one(v1, 'SELECT email, score FROM users WHERE id = 201')).toEqual({ email: 'again@example.com', score: 4 });
    } finally {
      await Promise.all([v1.end(), v2.end(), v3.end()]);
    }
    ok(await tandem(db.url, ['rollback']));
    expect(await triggersOf(admin, 'public', 'users')).toEqual([]);
    await admin.query('DELETE FROM users WHERE id IN (100, 200, 201, 300)');
    expect(await snapshot(admin)).toEqual(initial);
  });
});
