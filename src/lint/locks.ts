/**
 * Which existing tables a statement locks strongly enough to stop the application: any lock mode
 * that conflicts with ROW EXCLUSIVE (taken by every INSERT, UPDATE and DELETE) or stronger. Rules
 * about lock_timeout and long transactions ask this one question.
 */
import type { Node } from 'libpg-query';
import { asNode, relationFromNames, relationOf, stringList, type RelationName } from '../sqlparse/ast.js';

/** ALTER TABLE subcommands that take SHARE UPDATE EXCLUSIVE or weaker: reads and writes go on. */
const WEAK_ALTER_COMMANDS = new Set(['AT_ValidateConstraint', 'AT_SetStatistics', 'AT_ClusterOn', 'AT_DropCluster', 'AT_AttachPartition']);

/** The tables a statement would block reads or writes on (new tables are filtered by the caller). */
export function blockingTargets(node: Node): RelationName[] {
  const alter = asNode(node, 'AlterTableStmt');
  if (alter) {
    if (alter.objtype !== 'OBJECT_TABLE') return [];
    const commands = (alter.cmds ?? []).map((cmd) => asNode(cmd, 'AlterTableCmd'));
    const weak = commands.every(
      (cmd) => cmd && (WEAK_ALTER_COMMANDS.has(cmd.subtype ?? '') || (cmd.subtype === 'AT_DetachPartition' && isConcurrentDetach(cmd.def))),
    );
    // A foreign key also takes SHARE ROW EXCLUSIVE on the table it references, even when the table
    // it is added to is new (Prisma creates tables first and adds their keys with ALTER TABLE).
    const referenced = commands.flatMap((cmd) =>
      cmd?.subtype === 'AT_AddConstraint' || cmd?.subtype === 'AT_AddColumn' ? referencedTables(cmd.def ? [cmd.def] : []) : [],
    );
    return [...(weak ? [] : listOf(relationOf(alter.relation))), ...referenced];
  }
  const index = asNode(node, 'IndexStmt');
  if (index) return index.concurrent ? [] : listOf(relationOf(index.relation));
  const drop = asNode(node, 'DropStmt');
  if (drop) {
    if (drop.concurrent) return [];
    if (drop.removeType === 'OBJECT_TABLE' || drop.removeType === 'OBJECT_INDEX') {
      return (drop.objects ?? []).flatMap((object) => listOf(relationFromNames(stringList(asNode(object, 'List')?.items))));
    }
    return [];
  }
  const rename = asNode(node, 'RenameStmt');
  if (rename?.relation) return listOf(relationOf(rename.relation));
  const trigger = asNode(node, 'CreateTrigStmt');
  if (trigger) return listOf(relationOf(trigger.relation));
  const truncate = asNode(node, 'TruncateStmt');
  if (truncate) return (truncate.relations ?? []).flatMap((r) => listOf(relationOf(asNode(r, 'RangeVar'))));
  const lock = asNode(node, 'LockStmt');
  // Modes 1-4 (ACCESS SHARE up to SHARE UPDATE EXCLUSIVE) let writers through; 5 (SHARE) and up do not.
  if (lock && (lock.mode ?? 0) >= 5) return (lock.relations ?? []).flatMap((r) => listOf(relationOf(asNode(r, 'RangeVar'))));
  const vacuum = asNode(node, 'VacuumStmt');
  if (vacuum && (vacuum.options ?? []).some((o) => asNode(o, 'DefElem')?.defname === 'full')) {
    return (vacuum.rels ?? []).flatMap((r) => listOf(relationOf(asNode(r, 'VacuumRelation')?.relation)));
  }
  const cluster = asNode(node, 'ClusterStmt');
  if (cluster) return listOf(relationOf(cluster.relation));
  const reindex = asNode(node, 'ReindexStmt');
  if (reindex && !(reindex.params ?? []).some((p) => asNode(p, 'DefElem')?.defname === 'concurrently')) {
    return listOf(relationOf(reindex.relation));
  }
  const create = asNode(node, 'CreateStmt');
  // A new table's foreign keys take SHARE ROW EXCLUSIVE on the tables they reference.
  if (create) return referencedTables(create.tableElts ?? []);
  return [];
}

function isConcurrentDetach(def: Node | undefined): boolean {
  return asNode(def, 'PartitionCmd')?.concurrent === true;
}

function referencedTables(elements: Node[]): RelationName[] {
  const found: RelationName[] = [];
  for (const element of elements) {
    const constraints = asNode(element, 'ColumnDef')?.constraints ?? [element];
    for (const constraintNode of constraints) {
      const constraint = asNode(constraintNode, 'Constraint');
      if (constraint?.contype === 'CONSTR_FOREIGN') found.push(...listOf(relationOf(constraint.pktable)));
    }
  }
  return found;
}

function listOf<T>(value: T | undefined): T[] {
  return value === undefined ? [] : [value];
}
