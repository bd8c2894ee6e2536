import type { Command } from 'commander';
import type { CliIO } from '../io.js';
import { registerBackfill } from './backfill.js';
import { registerBaseline } from './baseline.js';
import { registerComplete } from './complete.js';
import { registerConvert } from './convert.js';
import { registerCreate } from './create.js';
import { registerDev } from './dev.js';
import { registerInit } from './init.js';
import { registerLatest } from './latest.js';
import { registerLint } from './lint.js';
import { registerMigrate } from './migrate.js';
import { registerProxy } from './proxy.js';
import { registerPull } from './pull.js';
import { registerRollback } from './rollback.js';
import { registerStart } from './start.js';
import { registerStatus } from './status.js';
import { registerUpdate } from './update.js';
import { registerValidate } from './validate.js';

/** Each command lives in its own file and registers itself on the program. */
export type RegisterCommand = (program: Command, io: CliIO) => void;

export const COMMANDS: RegisterCommand[] = [
  registerInit,
  registerStart,
  registerComplete,
  registerRollback,
  registerStatus,
  registerMigrate,
  registerLatest,
  registerBackfill,
  registerProxy,
  registerDev,
  registerLint,
  registerConvert,
  registerUpdate,
  registerValidate,
  registerPull,
  registerBaseline,
  registerCreate,
];
