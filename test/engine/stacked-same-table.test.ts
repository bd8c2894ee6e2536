/**
 * Stacked migrations on one table: 03 is started while 02, which changes the same table, is active.
 * 03 plans on 02's version of the table (02's shadow columns, its renames), the table's sync function
 * holds both migrations' rules, and writes through each of the three versions read back, transformed,
 * through the other two. Every order of complete and rollback the rules allow ends with the schema a
 * run without stacking leaves.
 */
import { describe, expect, it } from 'vitest';
import type pg from 'pg';
import { usePostgres } from '../support/harness.js';
import { migrationFile, ok, start, tandem, versionClient } from '../support/migrations.js';
import { snapshotSchema } from '../support/schema-snapshot.js';
import { snapshot } from '../support/cases.js';
import { spawnCli } from '../support/spawn.js';

const SETUP = `CREATE TABLE items (id int PRIMARY KEY, price int NOT NULL, name text, qty int);
               INSERT INTO items SELECT g, g * 10, 'item ' || g, g FROM generate_series(1, 20) g;`;

interface Versions {
  v1: pg.Client;
  v2: pg.Client;
  v3: pg.Client;
}

interface Pair {
  name: string;
  /** 02, then 03 stacked on it. */
  second: object[];
  third: object[];
  /** SQL run after SETUP, for what the pair needs on the table besides. */
  setup?: string;
  /** The table's name in versions 02 and 03, when not items. */
  table?: string;
  /** Writes through each version, read back through the others. */
  check: (versions: Versions) => Promise<void>;
}

/** 01: gives the starting point a version schema, so that three versions are live. */
const BASELINE = [{ create_table: { name: 'marker', columns: [{ name: 'id', type: 'int', pk: true }] } }];

const syncFunction = async (admin: pg.Client) =>
  (await admin.query(`SELECT pg_get_functiondef(p.oid) AS def FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'tandem' AND p.proname LIKE 'sync\\_%'`)).rows;

const one = async (client: pg.Client, sql: string) => (await client.query(sql)).rows[0];

const PAIRS: Pair[] = [
  {
    name: 'a column added after a type change, its up reading the changed column',
    second: [{ alter_column: { table: 'items', column: 'price', type: 'bigint', up: 'price * 100', down: '(price / 100)::int' } }],
    third: [{ add_column: { table: 'items', column: { name: 'total', type: 'bigint', nullable: true }, up: 'price * qty' } }],
    check: async ({ v1, v2, v3 }) => {
      // Backfilled: 02's price is 100 times 01's, 03's total is 02's price times qty.
      expect(await one(v3, 'SELECT price, total FROM items WHERE id = 2')).toEqual({ price: '2000', total: '4000' });
      await v1.query('UPDATE items SET price = 7 WHERE id = 3');
      expect(await one(v2, 'SELECT price FROM items WHERE id = 3')).toEqual({ price: '700' });
      expect(await one(v3, 'SELECT price, total FROM items WHERE id = 3')).toEqual({ price: '700', total: '2100' });
      await v2.query('UPDATE items SET price = 500 WHERE id = 4');
      expect(await one(v1, 'SELECT price FROM items WHERE id = 4')).toEqual({ price: 5 });
      expect(await one(v3, 'SELECT total FROM items WHERE id = 4')).toEqual({ total: '2000' });
      await v3.query('INSERT INTO items (id, price, name, qty, total) VALUES (100, 900, $$new$$, 2, 1)');
      expect(await one(v1, 'SELECT price, name FROM items WHERE id = 100')).toEqual({ price: 9, name: 'new' });
      expect(await one(v2, 'SELECT price FROM items WHERE id = 100')).toEqual({ price: '900' });
      expect(await one(v3, 'SELECT total FROM items WHERE id = 100')).toEqual({ total: '1' });
      await v1.query('INSERT INTO items (id, price, name, qty) VALUES (101, 3, $$old$$, 5)');
      expect(await one(v3, 'SELECT price, total FROM items WHERE id = 101')).toEqual({ price: '300', total: '1500' });
    },
  },
  {
    name: 'a rename of a column another migration changes the type of',
    second: [{ alter_column: { table: 'items', column: 'price', type: 'bigint', up: 'price', down: 'price::int' } }],
    third: [{ rename_column: { table: 'items', from: 'price', to: 'cost' } }],
    check: async ({ v1, v2, v3 }) => {
      await v3.query('UPDATE items SET cost = 42 WHERE id = 1');
      expect(await one(v1, 'SELECT price FROM items WHERE id = 1')).toEqual({ price: 42 });
      expect(await one(v2, 'SELECT price FROM items WHERE id = 1')).toEqual({ price: '42' });
      await v1.query('UPDATE items SET price = 43 WHERE id = 2');
      expect(await one(v3, 'SELECT cost FROM items WHERE id = 2')).toEqual({ cost: '43' });
      await v3.query('INSERT INTO items (id, cost, name) VALUES (100, 5, $$three$$)');
      expect(await one(v1, 'SELECT price, name FROM items WHERE id = 100')).toEqual({ price: 5, name: 'three' });
    },
  },
  {
    name: 'a type change and a NOT NULL column after a rename and a dropped column',
    second: [
      { rename_column: { table: 'items', from: 'name', to: 'title' } },
      { drop_column: { table: 'items', column: 'qty', down: '1' } },
    ],
    third: [
      { alter_column: { table: 'items', column: 'title', type: 'varchar(40)', up: 'upper(title)', down: 'lower(title)' } },
      { add_column: { table: 'items', column: { name: 'sku', type: 'text', nullable: false }, up: "'sku-' || id" } },
    ],
    check: async ({ v1, v2, v3 }) => {
      expect(await one(v3, 'SELECT title, sku FROM items WHERE id = 5')).toEqual({ title: 'ITEM 5', sku: 'sku-5' });
      await v1.query('UPDATE items SET name = $$renamed$$ WHERE id = 6');
      expect(await one(v2, 'SELECT title FROM items WHERE id = 6')).toEqual({ title: 'renamed' });
      expect(await one(v3, 'SELECT title FROM items WHERE id = 6')).toEqual({ title: 'RENAMED' });
      await v3.query('UPDATE items SET title = $$LOUD$$ WHERE id = 7');
      expect(await one(v2, 'SELECT title FROM items WHERE id = 7')).toEqual({ title: 'loud' });
      expect(await one(v1, 'SELECT name FROM items WHERE id = 7')).toEqual({ name: 'loud' });
      await v3.query('INSERT INTO items (id, price, title, sku) VALUES (100, 1, $$X$$, $$s$$)');
      expect(await one(v1, 'SELECT name, qty FROM items WHERE id = 100')).toEqual({ name: 'x', qty: 1 });
      await v2.query('INSERT INTO items (id, price, title) VALUES (101, 1, $$two$$)');
      expect(await one(v3, 'SELECT title, sku FROM items WHERE id = 101')).toEqual({ title: 'TWO', sku: 'sku-101' });
      expect(await one(v1, 'SELECT qty FROM items WHERE id = 101')).toEqual({ qty: 1 });
    },
  },
  {
    name: 'a rename and a check on the column another migration widens (the example of issue 16)',
    second: [{ alter_column: { table: 'items', column: 'price', type: 'bigint', up: 'price * 100', down: '(price / 100)::int' } }],
    third: [
      { rename_column: { table: 'items', from: 'price', to: 'cost' } },
      { alter_column: { table: 'items', column: 'cost', check: { name: 'cost_positive', constraint: 'cost > 0' }, up: 'greatest(cost, 1)', down: 'cost' } },
    ],
    check: async ({ v1, v2, v3 }) => {
      expect(await one(v3, 'SELECT cost FROM items WHERE id = 2')).toEqual({ cost: '2000' });
      await v1.query('UPDATE items SET price = 7 WHERE id = 3');
      expect(await one(v2, 'SELECT price FROM items WHERE id = 3')).toEqual({ price: '700' });
      expect(await one(v3, 'SELECT cost FROM items WHERE id = 3')).toEqual({ cost: '700' });
      // 02's down makes 0 of it, 03's up makes it positive again.
      await v2.query('UPDATE items SET price = 0 WHERE id = 4');
      expect(await one(v1, 'SELECT price FROM items WHERE id = 4')).toEqual({ price: 0 });
      expect(await one(v3, 'SELECT cost FROM items WHERE id = 4')).toEqual({ cost: '1' });
      await v3.query('UPDATE items SET cost = 900 WHERE id = 5');
      expect(await one(v2, 'SELECT price FROM items WHERE id = 5')).toEqual({ price: '900' });
      expect(await one(v1, 'SELECT price FROM items WHERE id = 5')).toEqual({ price: 9 });
      await expect(v3.query('UPDATE items SET cost = -1 WHERE id = 6')).rejects.toThrow(/cost_positive/);
      await v3.query('INSERT INTO items (id, cost, name) VALUES (100, 500, $$three$$)');
      expect(await one(v1, 'SELECT price, name FROM items WHERE id = 100')).toEqual({ price: 5, name: 'three' });
      await v1.query('INSERT INTO items (id, price, name) VALUES (101, 3, $$one$$)');
      expect(await one(v3, 'SELECT cost FROM items WHERE id = 101')).toEqual({ cost: '300' });
    },
  },
  {
    name: 'a rename and a check on a widened column that has a check and a foreign key of its own',
    setup: `CREATE TABLE prices (amount int PRIMARY KEY); INSERT INTO prices SELECT g * 10 FROM generate_series(0, 200) g;
            INSERT INTO prices VALUES (1), (3), (7), (42);
            ALTER TABLE items ADD CONSTRAINT price_nonneg CHECK (price >= 0), ADD CONSTRAINT price_listed FOREIGN KEY (price) REFERENCES prices (amount);`,
    second: [{ alter_column: { table: 'items', column: 'price', type: 'bigint', up: 'price', down: 'price::int' } }],
    third: [
      { rename_column: { table: 'items', from: 'price', to: 'cost' } },
      { alter_column: { table: 'items', column: 'cost', check: { name: 'cost_small', constraint: 'cost < 1000' }, up: 'least(cost, 999)', down: 'cost' } },
    ],
    check: async ({ v1, v2, v3 }) => {
      expect(await one(v3, 'SELECT cost FROM items WHERE id = 2')).toEqual({ cost: '20' });
      await v1.query('UPDATE items SET price = 7 WHERE id = 3');
      expect(await one(v3, 'SELECT cost FROM items WHERE id = 3')).toEqual({ cost: '7' });
      await v3.query('UPDATE items SET cost = 42 WHERE id = 4');
      expect(await one(v1, 'SELECT price FROM items WHERE id = 4')).toEqual({ price: 42 });
      // The old constraints hold in every version.
      await expect(v3.query('UPDATE items SET cost = 5 WHERE id = 5')).rejects.toThrow(/price_listed|foreign key/);
      await expect(v2.query('UPDATE items SET price = -10 WHERE id = 5')).rejects.toThrow(/price_nonneg/);
      await expect(v3.query('UPDATE items SET cost = -10 WHERE id = 5')).rejects.toThrow(/price_nonneg/);
      await expect(v3.query('UPDATE items SET cost = 2000 WHERE id = 5')).rejects.toThrow(/cost_small/);
      await v2.query('INSERT INTO items (id, price, name) VALUES (100, 1, $$two$$)');
      expect(await one(v3, 'SELECT cost FROM items WHERE id = 100')).toEqual({ cost: '1' });
    },
  },
  {
    name: 'a rename and a check on a widened column with an index and a unique constraint',
    setup: `CREATE INDEX items_price ON items (price DESC); ALTER TABLE items ADD CONSTRAINT price_unique UNIQUE (price);`,
    second: [{ alter_column: { table: 'items', column: 'price', type: 'bigint', up: 'price', down: 'price::int' } }],
    third: [
      { rename_column: { table: 'items', from: 'price', to: 'cost' } },
      { alter_column: { table: 'items', column: 'cost', check: { name: 'cost_small', constraint: 'cost < 1000' }, up: 'least(cost, 999)', down: 'cost' } },
    ],
    check: async ({ v1, v2, v3 }) => {
      await v3.query('UPDATE items SET cost = 7 WHERE id = 3');
      expect(await one(v1, 'SELECT price FROM items WHERE id = 3')).toEqual({ price: 7 });
      expect(await one(v2, 'SELECT price FROM items WHERE id = 3')).toEqual({ price: '7' });
      // The unique constraint holds through every version.
      await expect(v3.query('UPDATE items SET cost = 40 WHERE id = 5')).rejects.toThrow(/unique|duplicate/);
      await expect(v2.query('UPDATE items SET price = 40 WHERE id = 5')).rejects.toThrow(/unique|duplicate/);
      await expect(v1.query('UPDATE items SET price = 40 WHERE id = 5')).rejects.toThrow(/unique|duplicate/);
      await v1.query('INSERT INTO items (id, price, name) VALUES (100, 555, $$one$$)');
      expect(await one(v3, 'SELECT cost FROM items WHERE id = 100')).toEqual({ cost: '555' });
      await expect(v3.query('INSERT INTO items (id, cost, name) VALUES (101, 555, $$dup$$)')).rejects.toThrow(/unique|duplicate/);
    },
  },
  {
    name: 'a second type change of the column another migration changes the type of',
    second: [{ alter_column: { table: 'items', column: 'price', type: 'bigint', up: 'price * 100', down: '(price / 100)::int' } }],
    third: [{ alter_column: { table: 'items', column: 'price', type: 'numeric(14,2)', up: 'price / 100.0', down: '(price * 100)::bigint' } }],
    check: async ({ v1, v2, v3 }) => {
      expect(await one(v3, 'SELECT price FROM items WHERE id = 2')).toEqual({ price: '20.00' });
      await v1.query('UPDATE items SET price = 7 WHERE id = 3');
      expect(await one(v3, 'SELECT price FROM items WHERE id = 3')).toEqual({ price: '7.00' });
      await v3.query('UPDATE items SET price = 12.34 WHERE id = 4');
      expect(await one(v2, 'SELECT price FROM items WHERE id = 4')).toEqual({ price: '1234' });
      expect(await one(v1, 'SELECT price FROM items WHERE id = 4')).toEqual({ price: 12 });
      await v2.query('UPDATE items SET price = 250 WHERE id = 5');
      expect(await one(v3, 'SELECT price FROM items WHERE id = 5')).toEqual({ price: '2.50' });
      await v3.query('INSERT INTO items (id, price, name) VALUES (100, 5.5, $$three$$)');
      expect(await one(v1, 'SELECT price FROM items WHERE id = 100')).toEqual({ price: 5 });
    },
  },
  {
    name: 'a drop of a column another migration adds',
    second: [{ add_column: { table: 'items', column: { name: 'note', type: 'text', nullable: true }, up: "'note ' || id" } }],
    third: [{ drop_column: { table: 'items', column: 'note', down: "'from three'" } }],
    check: async ({ v1, v2, v3 }) => {
      expect(await one(v2, 'SELECT note FROM items WHERE id = 3')).toEqual({ note: 'note 3' });
      await v3.query('INSERT INTO items (id, price, name) VALUES (100, 1, $$three$$)');
      expect(await one(v2, 'SELECT note FROM items WHERE id = 100')).toEqual({ note: 'from three' });
      await v1.query('INSERT INTO items (id, price, name) VALUES (101, 1, $$one$$)');
      expect(await one(v2, 'SELECT note FROM items WHERE id = 101')).toEqual({ note: 'note 101' });
      expect(Object.keys(await one(v3, 'SELECT * FROM items WHERE id = 101'))).not.toContain('note');
    },
  },
  {
    name: 'a check constraint on a column another migration renames',
    second: [{ rename_column: { table: 'items', from: 'name', to: 'title' } }],
    third: [{ create_constraint: { table: 'items', name: 'title_short', type: 'check', columns: ['title'], check: 'length(title) < 8', up: { title: 'substr(title, 1, 7)' }, down: { title: 'title' } } }],
    check: async ({ v1, v2, v3 }) => {
      await v1.query('UPDATE items SET name = $$a long name$$ WHERE id = 2');
      expect(await one(v2, 'SELECT title FROM items WHERE id = 2')).toEqual({ title: 'a long name' });
      expect(await one(v3, 'SELECT title FROM items WHERE id = 2')).toEqual({ title: 'a long ' });
      await v3.query('UPDATE items SET title = $$short$$ WHERE id = 3');
      expect(await one(v1, 'SELECT name FROM items WHERE id = 3')).toEqual({ name: 'short' });
      await expect(v3.query('UPDATE items SET title = $$far too long$$ WHERE id = 4')).rejects.toThrow(/title_short/);
    },
  },
  {
    name: 'a column added to a table another migration renames',
    table: 'products',
    second: [{ rename_table: { from: 'items', to: 'products' } }],
    third: [{ add_column: { table: 'products', column: { name: 'label', type: 'text', nullable: true }, up: 'upper(name)' } }],
    check: async ({ v1, v2, v3 }) => {
      expect(await one(v3, 'SELECT label FROM products WHERE id = 4')).toEqual({ label: 'ITEM 4' });
      await v1.query('UPDATE items SET name = $$one$$ WHERE id = 5');
      expect(await one(v3, 'SELECT label FROM products WHERE id = 5')).toEqual({ label: 'ONE' });
      await v2.query('INSERT INTO products (id, price, name) VALUES (100, 1, $$two$$)');
      expect(await one(v3, 'SELECT label FROM products WHERE id = 100')).toEqual({ label: 'TWO' });
      await v3.query('INSERT INTO products (id, price, name, label) VALUES (101, 1, $$three$$, $$x$$)');
      expect(await one(v1, 'SELECT name FROM items WHERE id = 101')).toEqual({ name: 'three' });
    },
  },
];

/** The orders of complete (c) and rollback (r) the rules allow: the oldest completes first, the newest rolls back first. */
const ORDERS = [
  ['complete', 'complete'],
  ['complete', 'rollback'],
  ['rollback', 'complete'],
  ['rollback', 'rollback'],
] as const;

describe('stacked migrations on one table', () => {
  const db = usePostgres();

  async function versions(): Promise<Versions & { end: () => Promise<unknown> }> {
    const v1 = await versionClient(db.url, 'public_01_items');
    const v2 = await versionClient(db.url, 'public_02_second');
    const v3 = await versionClient(db.url, 'public_03_third');
    return { v1, v2, v3, end: () => Promise.all([v1, v2, v3].map((c) => c.end())) };
  }

  /** A database of its own with SETUP and `runs` applied one at a time: what the stacked run must end as. */
  let databases = 0;
  async function oneAtATime(admin: pg.Client, runs: object[][], setup = ''): Promise<unknown> {
    const name = `one_at_a_time_${++databases}`;
    await admin.query(`CREATE DATABASE ${name}`);
    const url = new URL(db.url);
    url.pathname = `/${name}`;
    const client = await versionClient(url.toString(), null);
    try {
      await client.query(SETUP + setup);
      ok(await tandem(url.toString(), ['start', await migrationFile('01_items', { operations: BASELINE }), '--complete']));
      for (const [i, operations] of runs.entries()) {
        ok(await tandem(url.toString(), ['start', await migrationFile(`0${i + 2}_x`, { operations }), '--complete']));
      }
      return await snapshotSchema(client, 'public');
    } finally {
      await client.end();
    }
  }

  for (const pair of PAIRS) {
    describe(pair.name, () => {
      for (const [first, second] of ORDERS) {
        it(`${first} 02, then ${second} 03 ${first === 'rollback' ? '(03 rolled back first)' : ''}`, async () => {
          await db.query(SETUP + (pair.setup ?? ''));
          ok(await tandem(db.url, ['start', await migrationFile('01_items', { operations: BASELINE }), '--complete']));
          const admin = await db.client();
          const initial = await snapshotSchema(admin, 'public');
          ok(await start(db.url, '02_second', pair.second));
          const afterSecond = await snapshot(admin);
          const secondsFunction = await syncFunction(admin);
          ok(await start(db.url, '03_third', pair.third));

          const live = await versions();
          try {
            await pair.check(live);
          } finally {
            await live.end();
          }

          // Complete works on the oldest (02), rollback on the newest (03).
          if (first === 'complete') {
            ok(await tandem(db.url, ['complete']));
            // 03 keeps working on what 02 swapped into place.
            const v2 = await versionClient(db.url, 'public_02_second');
            const v3 = await versionClient(db.url, 'public_03_third');
            try {
              const table = pair.table ?? 'items';
              await v2.query(`UPDATE ${table} SET price = price WHERE id = 9`);
              await v3.query(`UPDATE ${table} SET id = id WHERE id = 9`);
              expect((await v3.query(`SELECT * FROM ${table} WHERE id = 9`)).rows).toHaveLength(1);
            } finally {
              await Promise.all([v2.end(), v3.end()]);
            }
            ok(await tandem(db.url, [second]));
            const expected = second === 'complete' ? [pair.second, pair.third] : [pair.second];
            expect(await snapshotSchema(admin, 'public')).toEqual(await oneAtATime(admin, expected, pair.setup));
          } else {
            ok(await tandem(db.url, ['rollback']));
            // 02 is as it was before 03 started.
            expect(await snapshot(admin)).toEqual(afterSecond);
            expect(await syncFunction(admin)).toEqual(secondsFunction);
            ok(await tandem(db.url, [second]));
            if (second === 'complete') expect(await snapshotSchema(admin, 'public')).toEqual(await oneAtATime(admin, [pair.second], pair.setup));
            else expect(await snapshotSchema(admin, 'public')).toEqual(initial);
          }
          const triggers = await admin.query(`SELECT tgname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid WHERE c.relname IN ('items', 'products') AND NOT tgisinternal`);
          expect(triggers.rows).toEqual([]);
        });
      }
    });
  }

  describe('three migrations on one column (02 widens price, 03 makes it numeric, 04 renames it and adds a check)', () => {
    const second = [{ alter_column: { table: 'items', column: 'price', type: 'bigint', up: 'price * 100', down: '(price / 100)::int' } }];
    const third = [{ alter_column: { table: 'items', column: 'price', type: 'numeric(14,2)', up: 'price / 100.0', down: '(price * 100)::bigint' } }];
    const fourth = [
      { rename_column: { table: 'items', from: 'price', to: 'cost' } },
      { alter_column: { table: 'items', column: 'cost', check: { name: 'cost_small', constraint: 'cost < 1000' }, up: 'least(cost, 999)', down: 'cost' } },
    ];
    const setup = 'CREATE INDEX items_price ON items (price); ALTER TABLE items ADD CONSTRAINT price_unique UNIQUE (price);';

    // Complete takes the oldest, rollback the newest: each order ends with the migrations it completed applied one at a time.
    const endings = [
      ['complete', 'complete', 'complete'],
      ['rollback', 'rollback', 'rollback'],
      ['complete', 'rollback', 'complete'],
      ['rollback', 'complete', 'rollback'],
    ] as const;
    for (const ending of endings) {
      it(`writes through each of four versions read back through the others; then ${ending.join(', ')}: the schema is as one at a time`, async () => {
        await db.query(SETUP + setup);
        ok(await tandem(db.url, ['start', await migrationFile('01_items', { operations: BASELINE }), '--complete']));
        const admin = await db.client();
        const initial = await snapshotSchema(admin, 'public');
        ok(await start(db.url, '02_second', second));
        ok(await start(db.url, '03_third', third));
        ok(await start(db.url, '04_fourth', fourth));
        const v1 = await versionClient(db.url, 'public_01_items');
        const v2 = await versionClient(db.url, 'public_02_second');
        const v3 = await versionClient(db.url, 'public_03_third');
        const v4 = await versionClient(db.url, 'public_04_fourth');
        try {
          expect(await one(v4, 'SELECT cost FROM items WHERE id = 2')).toEqual({ cost: '20.00' });
          await v1.query('UPDATE items SET price = 7 WHERE id = 3');
          expect(await one(v2, 'SELECT price FROM items WHERE id = 3')).toEqual({ price: '700' });
          expect(await one(v3, 'SELECT price FROM items WHERE id = 3')).toEqual({ price: '7.00' });
          expect(await one(v4, 'SELECT cost FROM items WHERE id = 3')).toEqual({ cost: '7.00' });
          await v4.query('UPDATE items SET cost = 12.34 WHERE id = 4');
          expect(await one(v3, 'SELECT price FROM items WHERE id = 4')).toEqual({ price: '12.34' });
          expect(await one(v2, 'SELECT price FROM items WHERE id = 4')).toEqual({ price: '1234' });
          expect(await one(v1, 'SELECT price FROM items WHERE id = 4')).toEqual({ price: 12 });
          await v3.query('UPDATE items SET price = 5000 WHERE id = 5');
          expect(await one(v4, 'SELECT cost FROM items WHERE id = 5')).toEqual({ cost: '999.00' });
          expect(await one(v1, 'SELECT price FROM items WHERE id = 5')).toEqual({ price: 5000 });
          await v2.query('INSERT INTO items (id, price, name) VALUES (100, 250, $$two$$)');
          expect(await one(v4, 'SELECT cost, name FROM items WHERE id = 100')).toEqual({ cost: '2.50', name: 'two' });
          await expect(v4.query('UPDATE items SET cost = 2000 WHERE id = 6')).rejects.toThrow(/cost_small/);
          await expect(v4.query('UPDATE items SET cost = 10 WHERE id = 6')).rejects.toThrow(/unique|duplicate/);
        } finally {
          await Promise.all([v1, v2, v3, v4].map((c) => c.end()));
        }
        const pending = [second, third, fourth];
        const completed: object[][] = [];
        for (const command of ending) {
          ok(await tandem(db.url, [command]));
          if (command === 'complete') completed.push(pending.shift()!);
          else pending.pop();
        }
        const expected = completed.length ? await oneAtATime(admin, completed, setup) : initial;
        expect(await snapshotSchema(admin, 'public')).toEqual(expected);
        expect(await syncFunction(admin)).toEqual([]);
      });
    }
  });

  // A column added on 02's shadow, and a shadow of 02's shadow with an index and a unique constraint in waiting.
  const killed = [PAIRS[0]!, PAIRS.find((p) => p.name.includes('an index and a unique constraint'))!];
  it.each(killed)('resumes a stacked start, the complete under it and its rollback, each killed after any of its steps: $name', async (pair) => {
    await db.query(SETUP + (pair.setup ?? ''));
    ok(await tandem(db.url, ['start', await migrationFile('01_items', { operations: BASELINE }), '--complete']));
    ok(await start(db.url, '02_second', pair.second));
    const admin = await db.client();
    /** Runs `args` again and again, each run killed after one more step, until one finishes. */
    const killedAfterEachStep = async (args: string[], phase: string) => {
      for (let step = 1; ; step++) {
        const run = spawnCli(args, { DATABASE_URL: db.url, TANDEM_TEST_CRASH_AFTER: `${phase}:${step}` });
        const exit = await run.exit;
        if (exit === 0) return step;
        expect(exit, run.stderr()).toBe('SIGKILL');
      }
    };
    expect(await killedAfterEachStep(['start', await migrationFile('03_third', { operations: pair.third })], 'start')).toBeGreaterThan(3);
    const live = await versions();
    try {
      await pair.check(live);
    } finally {
      await live.end();
    }
    expect(await killedAfterEachStep(['complete'], 'complete')).toBeGreaterThan(3);
    expect(await killedAfterEachStep(['rollback'], 'rollback')).toBeGreaterThan(2);
    const status = JSON.parse(ok(await tandem(db.url, ['status', '--json'])).stdout);
    expect(status.activeMigrations).toEqual([]);
    expect(await snapshotSchema(admin, 'public')).toEqual(await oneAtATime(admin, [pair.second], pair.setup));
  }, 300_000);
});
