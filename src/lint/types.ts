/** The vocabulary of `tandem lint`: rules, what they report, and the options they read. */
import type { ParsedSql, Statement } from '../sqlparse/parse.js';
import type { LintState } from './state.js';

export type Severity = 'error' | 'warning';

/** One problem found in one file, ready for any reporter. */
export interface Finding {
  rule: string;
  severity: Severity;
  file: string;
  /** 1-based. */
  line: number;
  /** 1-based, in UTF-16 code units. */
  column: number;
  /** What is wrong with this statement. */
  message: string;
  /** Why it is dangerous on a live database. */
  why: string;
  /** The safe way to get the same result. */
  fix: string;
}

export interface LintOptions {
  /** PostgreSQL major version the migrations will run on (e.g. 14; 9.6 for 9.6). */
  pgVersion: number;
  /** Treat every file as wrapped in one transaction, as many migration runners do. */
  assumeInTransaction: boolean;
  /** Rule names switched off for every file. */
  disabled: ReadonlySet<string>;
}

/** What a rule says about one statement; the runner adds file, line and column. */
export interface Problem {
  /** Byte offset the finding points at; the statement's start when absent. */
  at?: number;
  message: string;
  /** Replaces the rule's general `fix` when the advice depends on the statement. */
  fix?: string;
}

export interface RuleContext {
  parsed: ParsedSql;
  statement: Statement;
  options: LintOptions;
  /** What the file has done before this statement (tables it created, transaction, settings). */
  state: LintState;
  /** True the first time a rule asks with this key in this file: for findings reported once. */
  once(key: string): boolean;
}

export interface Rule {
  name: string;
  severity: Severity;
  /** One line for rule lists. */
  summary: string;
  why: string;
  fix: string;
  /** A statement the rule flags and safe ways to get the same result; documented and tested. */
  example: {
    bad: string;
    /** Plain SQL the rule does not flag, when there is a safe plain-SQL way. */
    good?: string;
    /** A tandem migration (YAML) that makes the change safely. */
    tandem?: string;
    /** The server version the example assumes, when it matters. */
    pgVersion?: number;
  };
  check(context: RuleContext): Problem[];
}
