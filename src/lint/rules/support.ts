/** Shared moves of the rules: finding the ALTER TABLE subcommands and where each one starts. */
import type { AlterTableCmd, ColumnDef, Constraint, Node } from 'libpg-query';
import { asNode, relationOf, type RelationName } from '../../sqlparse/ast.js';
import { alterCommandStarts } from '../../sqlparse/slice.js';
import type { RuleContext } from '../types.js';

export interface AlterCommand {
  cmd: AlterTableCmd;
  /** Byte offset of the subcommand's first token. */
  at: number | undefined;
}

export interface AlterTable {
  relation: RelationName;
  /** The table was created earlier in this file: nothing else can be using it yet. */
  isNew: boolean;
  commands: AlterCommand[];
}

/** The statement as an `ALTER TABLE` on a table, with located subcommands. */
export function alterTable(context: RuleContext): AlterTable | undefined {
  const alter = asNode(context.statement.node, 'AlterTableStmt');
  const relation = relationOf(alter?.relation);
  if (!alter || !relation || alter.objtype !== 'OBJECT_TABLE') return undefined;
  const starts = alterCommandStarts(context.parsed, context.statement, alter.relation?.location);
  const commands = (alter.cmds ?? []).flatMap((node, index) => {
    const cmd = asNode(node, 'AlterTableCmd');
    if (!cmd) return [];
    const token = starts[index];
    return [{ cmd, at: token === undefined ? undefined : context.parsed.tokens[token]?.start }];
  });
  return { relation, isNew: context.state.isNewTable(relation), commands };
}

/** The ALTER TABLE subcommands of the given kinds, on a table that existed before this file. */
export function existingTableCommands(context: RuleContext, ...subtypes: string[]): (AlterCommand & { relation: RelationName })[] {
  const alter = alterTable(context);
  if (!alter || alter.isNew) return [];
  return alter.commands.filter(({ cmd }) => subtypes.includes(cmd.subtype ?? '')).map((command) => ({ ...command, relation: alter.relation }));
}

export function constraintsOf(column: ColumnDef | undefined): Constraint[] {
  return (column?.constraints ?? []).flatMap((node) => {
    const constraint = asNode(node, 'Constraint');
    return constraint ? [constraint] : [];
  });
}

export function constraintOf(node: Node | undefined): Constraint | undefined {
  return asNode(node, 'Constraint');
}
