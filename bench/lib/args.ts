/**
 * Command-line flags shared by every benchmark: `--json`, `--rounds 5`, `--round-ms 1000`,
 * `--warmup-ms 300`, `--concurrency 1,16,64`, `--quick`, plus flags a benchmark declares itself.
 * Flags take their value as the next argument or after `=` (`--rounds=7`). An unknown flag or a
 * malformed value stops the run with a message naming the flag, before anything is measured.
 */

export interface FlagSpec {
  /** Flag name without the dashes, e.g. 'keys'. */
  readonly name: string;
  /** 'boolean' flags take no value. */
  readonly type: 'boolean' | 'int' | 'int-list' | 'string';
  readonly description: string;
  readonly default?: boolean | number | readonly number[] | string;
  /** Accepted values of a 'string' flag. */
  readonly choices?: readonly string[];
}

export type FlagValues = Record<string, boolean | number | number[] | string | undefined>;

/** The flags every benchmark takes; `defaults` changes their default values per benchmark. */
export function commonFlags(defaults: { rounds: number; roundMs: number; warmupMs: number; concurrency: readonly number[] }): FlagSpec[] {
  return [
    { name: 'json', type: 'boolean', description: 'print JSON instead of tables', default: false },
    { name: 'rounds', type: 'int', description: 'measured rounds per contender', default: defaults.rounds },
    { name: 'round-ms', type: 'int', description: 'length of one round of one contender, in ms', default: defaults.roundMs },
    { name: 'warmup-ms', type: 'int', description: 'unmeasured warm-up per contender and setting, in ms', default: defaults.warmupMs },
    { name: 'concurrency', type: 'int-list', description: 'concurrent loops per contender, comma-separated', default: defaults.concurrency },
    { name: 'quick', type: 'boolean', description: 'a smoke run: 3 rounds of 200 ms, 100 ms warm-up', default: false },
    { name: 'help', type: 'boolean', description: 'print this help', default: false },
  ];
}

/** Parses `argv` against `specs`; exits with a usage message on `--help` or a bad flag. */
export function parseFlags(usage: string, specs: readonly FlagSpec[], argv: readonly string[] = process.argv.slice(2)): FlagValues {
  const values: FlagValues = {};
  for (const spec of specs) values[spec.name] = Array.isArray(spec.default) ? [...spec.default] : (spec.default as FlagValues[string]);
  const fail = (message: string): never => {
    process.stderr.write(`${message}\n\n${help(usage, specs)}`);
    process.exit(2);
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (!arg.startsWith('--')) fail(`unexpected argument "${arg}"`);
    const eq = arg.indexOf('=');
    const name = arg.slice(2, eq === -1 ? undefined : eq);
    const spec = specs.find((s) => s.name === name) ?? fail(`unknown flag --${name}`);
    if (spec.type === 'boolean') {
      if (eq !== -1) fail(`--${name} takes no value`);
      values[name] = true;
      continue;
    }
    const raw = eq !== -1 ? arg.slice(eq + 1) : argv[++i];
    if (raw === undefined) fail(`--${name} needs a value`);
    values[name] = parseValue(spec, raw!, fail);
  }
  if (values.help === true) {
    process.stdout.write(help(usage, specs));
    process.exit(0);
  }
  if (values.quick === true) {
    values.rounds = 3;
    values['round-ms'] = 200;
    values['warmup-ms'] = 100;
  }
  return values;
}

function parseValue(spec: FlagSpec, raw: string, fail: (message: string) => never): number | number[] | string {
  const int = (text: string): number => {
    const n = Number(text);
    return Number.isSafeInteger(n) && n > 0 ? n : fail(`--${spec.name} needs positive integers, got "${text}"`);
  };
  switch (spec.type) {
    case 'int':
      return int(raw);
    case 'int-list':
      return raw.split(',').map((part) => int(part.trim()));
    default:
      if (spec.choices && !spec.choices.includes(raw)) fail(`--${spec.name} is one of ${spec.choices.join(', ')}, got "${raw}"`);
      return raw;
  }
}

function help(usage: string, specs: readonly FlagSpec[]): string {
  const lines = specs.map((s) => {
    const value = s.type === 'boolean' ? '' : s.choices ? ` <${s.choices.join('|')}>` : s.type === 'int-list' ? ' <n,n,...>' : s.type === 'int' ? ' <n>' : ' <text>';
    const dflt = s.default === undefined || s.type === 'boolean' ? '' : ` (default ${Array.isArray(s.default) ? s.default.join(',') : String(s.default)})`;
    return `  --${s.name}${value}`.padEnd(34) + `${s.description}${dflt}`;
  });
  return `${usage}\n\nFlags:\n${lines.join('\n')}\n`;
}
