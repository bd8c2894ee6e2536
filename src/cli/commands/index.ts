import type { Command } from 'commander';
import type { CliIO } from '../io.js';
import { registerInit } from './init.js';
import { registerLint } from './lint.js';
import { registerConvert } from './convert.js';

/** Each command lives in its own file and registers itself on the program. */
export type RegisterCommand = (program: Command, io: CliIO) => void;

export const COMMANDS: RegisterCommand[] = [registerInit, registerLint, registerConvert];
