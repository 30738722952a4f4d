import type { ParseArgsConfig } from 'node:util';

/** Parsed flags and positionals of one command. */
export interface ParsedArgs {
  values: Record<string, string | boolean | undefined>;
  positionals: string[];
}

/** Where a command writes; tests capture these. */
export interface CommandIO {
  out(text: string): void;
  err(text: string): void;
  env: NodeJS.ProcessEnv;
}

/** One `nodemedic <name>` command. Adding one: export a spec from `agent/cli-<area>.ts` and list it in agent/cli.ts. */
export interface CommandSpec {
  name: string;
  /** One line for `nodemedic --help`. */
  summary: string;
  /** e.g. `nodemedic check [--config F] [--json] [--only a,b]`. */
  usage: string;
  options: NonNullable<ParseArgsConfig['options']>;
  /** More for `--help` after the flags (what the command does step by step, its exit codes). */
  help?: string;
  /** How many positionals are allowed; default none. */
  positionals?: { min: number; max: number };
  /** Returns the exit code. Throw UsageError (64) or ConfigError (78) for those cases. */
  run(args: ParsedArgs, io: CommandIO): Promise<number>;
}

export const configOption = { config: { type: 'string', short: 'c' } } as const;
