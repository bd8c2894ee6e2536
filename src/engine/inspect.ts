import type { Queryable } from '../db/connection.js';
import { TandemError } from '../errors/index.js';
import type { Inspector } from '../core/planner.js';

const VOLATILITY = { i: 'immutable', s: 'stable', v: 'volatile' } as const;

/**
 * Asks the server. A default's volatility decides whether ADD COLUMN … DEFAULT is a catalog-only
 * change (PostgreSQL 11+ stores a constant for existing rows) or a rewrite of the whole table under
 * an ACCESS EXCLUSIVE lock. The server records which functions an expression calls when it is stored
 * in a view, so a throwaway temporary view, rolled back, tells us exactly.
 */
export function databaseInspector(db: Queryable): Inspector {
  return {
    async volatility(expression, type) {
      await db.query('BEGIN');
      try {
        await db.query(`CREATE TEMPORARY VIEW _tandem_probe AS SELECT CAST((${expression}) AS ${type}) AS value`);
        const { rows } = await db.query<{ volatility: 'i' | 's' | 'v' | null }>(
          `SELECT max(p.provolatile::text) AS volatility
             FROM pg_depend d
             JOIN pg_rewrite r ON r.oid = d.objid AND d.classid = 'pg_rewrite'::regclass
             JOIN pg_proc p ON (d.refclassid = 'pg_proc'::regclass AND p.oid = d.refobjid)
                OR (d.refclassid = 'pg_operator'::regclass AND p.oid = (SELECT oprcode FROM pg_operator WHERE oid = d.refobjid)::oid)
            WHERE r.ev_class = 'pg_temp._tandem_probe'::regclass`,
        );
        // 'v' > 's' > 'i' in text order, so max() is the least stable function in the expression.
        return VOLATILITY[rows[0]?.volatility ?? 'i'];
      } catch (error) {
        throw new TandemError({ kind: 'expression_invalid', reason: (error as Error).message, type }, { cause: error });
      } finally {
        await db.query('ROLLBACK');
      }
    },
  };
}
