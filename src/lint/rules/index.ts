/** Every lint rule, in the order the documentation lists them. */
import type { Rule } from '../types.js';
import { COLUMN_RULES } from './columns.js';
import { CONSTRAINT_RULES } from './constraints.js';
import { INDEX_RULES } from './indexes.js';
import { TABLE_RULES } from './tables.js';
import { TRANSACTION_RULES } from './transactions.js';
import { TYPE_RULES } from './types.js';

export const RULES: readonly Rule[] = [...COLUMN_RULES, ...CONSTRAINT_RULES, ...INDEX_RULES, ...TABLE_RULES, ...TRANSACTION_RULES, ...TYPE_RULES];

/** Findings that come from the file itself rather than a rule; they can not be disabled. */
export const SYNTAX_ERROR = 'syntax-error';
export const INVALID_DIRECTIVE = 'invalid-directive';

export const RULE_NAMES: readonly string[] = RULES.map((rule) => rule.name);
