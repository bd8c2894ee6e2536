import { expect } from 'vitest';
import { columnsOf, constraintsOf, indexesOf } from '../support/migrations.js';
import { runOperationCases } from '../support/cases.js';

const base = { name: '01_base', operations: [{ sql: { up: 'CREATE TABLE authors (id int PRIMARY KEY, name text)' } }] };

runOperationCases('create_table', [
  {
    name: 'every column option and table constraint',
    migrations: [
      base,
      {
        name: '02_create_books',
        operations: [
          {
            create_table: {
              name: 'books',
              comment: 'books we sell',
              columns: [
                { name: 'id', type: 'bigint', pk: true, generated: { identity: { user_specified_values: 'BY DEFAULT', sequence_options: 'START 100' } } },
                { name: 'isbn', type: 'text', unique: true, comment: 'the ISBN-13' },
                { name: 'title', type: 'text', check: { name: 'title_length', constraint: 'length(title) > 0' } },
                { name: 'subtitle', type: 'text', nullable: true },
                { name: 'price', type: 'numeric(10,2)', default: '0' },
                { name: 'price_with_tax', type: 'numeric(10,2)', nullable: true, generated: { expression: 'price * 1.2' } },
                {
                  name: 'author_id',
                  type: 'int',
                  nullable: true,
                  references: { name: 'books_author_fk', table: 'authors', column: 'id', on_delete: 'SET NULL', on_update: 'CASCADE' },
                },
                { name: 'shelf', type: 'int4range', nullable: true },
                { name: 'edition', type: 'int', default: '1' },
              ],
              constraints: [
                { name: 'title_edition_unique', type: 'unique', columns: ['title', 'edition'], index_parameters: { storage_parameters: 'fillfactor=80' } },
                { name: 'price_positive', type: 'check', check: 'price >= 0' },
                { name: 'shelves_disjoint', type: 'exclude', exclude: { index_method: 'gist', elements: 'shelf WITH &&' } },
              ],
            },
          },
        ],
      },
    ],
    afterStart: async (t) => {
      expect((await columnsOf(t.db, t.newSchema, 'books')).map((c) => c.name)).toEqual([
        'id', 'isbn', 'title', 'subtitle', 'price', 'price_with_tax', 'author_id', 'shelf', 'edition',
      ]);
      // The old version does not see the new table.
      expect((await t.old.query(`SELECT to_regclass('public_01_base.books') AS t`)).rows[0].t).toBeNull();
      await t.new.query(`INSERT INTO authors (id, name) VALUES (1, 'Le Guin')`);
      const { rows } = await t.new.query(
        `INSERT INTO books (isbn, title, price, author_id, shelf) VALUES ('978', 'Earthsea', 10, 1, '[1,3)') RETURNING id, price_with_tax, edition`,
      );
      expect(rows[0]).toEqual({ id: '100', price_with_tax: '12.00', edition: 1 });
      await expect(t.new.query(`INSERT INTO books (isbn, title, price) VALUES ('978', 'Dup', 1)`)).rejects.toThrow(/books_isbn_key/);
      await expect(t.new.query(`INSERT INTO books (isbn, title, price) VALUES ('979', '', 1)`)).rejects.toThrow(/title_length/);
      await expect(t.new.query(`INSERT INTO books (isbn, title, price) VALUES ('979', 'x', -1)`)).rejects.toThrow(/price_positive/);
      await expect(t.new.query(`INSERT INTO books (isbn, title, price, shelf) VALUES ('979', 'x', 1, '[2,4)')`)).rejects.toThrow(/shelves_disjoint/);
      await expect(t.new.query(`INSERT INTO books (title, price) VALUES ('no isbn', 1)`)).rejects.toThrow(/null value in column "isbn"/);
      await t.new.query(`UPDATE authors SET id = 2`);
      expect((await t.new.query(`SELECT author_id FROM books`)).rows).toEqual([{ author_id: 2 }]);
      const comments = await t.db.query(
        `SELECT obj_description('public.books'::regclass, 'pg_class') AS t, col_description('public.books'::regclass, 2) AS c`,
      );
      expect(comments.rows[0]).toEqual({ t: 'books we sell', c: 'the ISBN-13' });
    },
    afterComplete: async (t) => {
      const constraints = await constraintsOf(t.db, 'public', 'books');
      expect(Object.keys(constraints).sort()).toEqual([
        'books_author_fk', 'books_isbn_key', 'books_pkey', 'price_positive', 'shelves_disjoint', 'title_edition_unique', 'title_length',
      ]);
      expect(constraints.books_author_fk).toBe('FOREIGN KEY (author_id) REFERENCES authors(id) ON UPDATE CASCADE ON DELETE SET NULL');
      expect((await indexesOf(t.db, 'public', 'books')).title_edition_unique).toContain('WITH (fillfactor=\'80\')');
    },
    afterRollback: async (t) => {
      expect((await t.db.query(`SELECT to_regclass('public.books') AS t`)).rows[0].t).toBeNull();
    },
  },
  {
    name: 'composite primary key and a foreign key to a table created in the same migration',
    migrations: [
      {
        name: '01_two_tables',
        operations: [
          { create_table: { name: 'orders', columns: [{ name: 'id', type: 'int', pk: true }] } },
          {
            create_table: {
              name: 'order_lines',
              columns: [
                { name: 'order_id', type: 'int', pk: true, references: { name: 'lines_order_fk', table: 'orders', column: 'id', on_delete: 'CASCADE' } },
                { name: 'line', type: 'int', pk: true },
                { name: 'sku', type: 'text' },
              ],
              constraints: [{ name: 'lines_sku_fk_free', type: 'check', check: "sku <> ''", no_inherit: true }],
            },
          },
        ],
      },
    ],
    afterStart: async (t) => {
      await t.new.query(`INSERT INTO orders VALUES (1)`);
      await t.new.query(`INSERT INTO order_lines VALUES (1, 1, 'a'), (1, 2, 'b')`);
      await expect(t.new.query(`INSERT INTO order_lines VALUES (1, 1, 'c')`)).rejects.toThrow(/order_lines_pkey/);
      await t.new.query(`DELETE FROM orders`);
      expect((await t.new.query(`SELECT count(*)::int AS n FROM order_lines`)).rows[0].n).toBe(0);
    },
    afterComplete: async (t) => {
      expect((await constraintsOf(t.db, 'public', 'order_lines')).order_lines_pkey).toBe('PRIMARY KEY (order_id, line)');
    },
  },
]);
