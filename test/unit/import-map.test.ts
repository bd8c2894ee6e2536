import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, posix, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

/**
 * The layout map of README.md "Development": which module (a folder under src/) may
 * import which. Dependencies point one way, so that the planning core can be read and tested alone
 * and a change in one layer never reaches back into the layers it serves. `typeOnly` names files a
 * module may see only through `import type`, which leaves nothing behind at run time.
 */
interface Rule {
  imports: readonly string[];
  typeOnly?: readonly string[];
}

const IMPORT_MAP: Record<string, Rule> = {
  errors: { imports: [] },
  migration: { imports: ['errors'] },
  core: { imports: ['errors'], typeOnly: ['migration/format.ts'] },
  operations: { imports: ['core', 'errors', 'migration'] },
  catalog: { imports: ['core', 'db', 'errors'] },
  db: { imports: ['errors'] },
  state: { imports: ['core', 'db', 'errors'] },
  sqlparse: { imports: ['errors'] },
  lint: { imports: ['sqlparse', 'errors'] },
  convert: { imports: ['sqlparse', 'migration', 'errors'] },
  observe: { imports: ['errors'] },
  engine: { imports: ['core', 'operations', 'catalog', 'state', 'db', 'migration', 'observe', 'errors'] },
  proxy: { imports: ['core', 'state', 'db', 'observe', 'sqlparse', 'errors'] },
  dev: { imports: ['engine', 'proxy', 'state', 'migration', 'observe', 'db', 'errors'] },
  cli: { imports: ['*'] },
};

/**
 * Files the core's type-only imports reach: they must stay free of tandem imports themselves. (The
 * errors module may import nothing but itself, which its rule above already says.)
 */
const LEAF_FILES = ['migration/format.ts'];

interface Import {
  /** Importing file, relative to src/. */
  file: string;
  /** The specifier as written. */
  specifier: string;
  /** Imported file, relative to src/. */
  target: string;
  typeOnly: boolean;
}

function moduleOf(file: string): string {
  return file.includes('/') ? file.slice(0, file.indexOf('/')) : file.replace(/\.ts$/, '');
}

/** Relative imports of one file: static imports and re-exports, dynamic import(), import('…') types. */
function importsOf(file: string, text: string): Import[] {
  const source = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true);
  const found: Import[] = [];
  const add = (specifier: string, typeOnly: boolean) => {
    if (!specifier.startsWith('.')) return;
    const target = posix.normalize(posix.join(posix.dirname(file), specifier)).replace(/\.js$/, '.ts');
    found.push({ file, specifier, target, typeOnly });
  };
  const visit = (node: ts.Node) => {
    if (ts.isImportDeclaration(node) && ts.isStringLiteral(node.moduleSpecifier)) {
      const clause = node.importClause;
      const named = clause?.namedBindings;
      const everyNameIsType =
        clause !== undefined && clause.name === undefined && named !== undefined && ts.isNamedImports(named) && named.elements.length > 0 && named.elements.every((element) => element.isTypeOnly);
      add(node.moduleSpecifier.text, clause?.isTypeOnly === true || everyNameIsType);
    } else if (ts.isExportDeclaration(node) && node.moduleSpecifier && ts.isStringLiteral(node.moduleSpecifier)) {
      add(node.moduleSpecifier.text, node.isTypeOnly);
    } else if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword) {
      const [argument] = node.arguments;
      if (argument && ts.isStringLiteralLike(argument)) add(argument.text, false);
    } else if (ts.isImportTypeNode(node) && ts.isLiteralTypeNode(node.argument) && ts.isStringLiteral(node.argument.literal)) {
      add(node.argument.literal.text, true);
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  return found;
}

/** Every import the map forbids, named by file and specifier. */
function violations(imports: readonly Import[], map: Record<string, Rule> = IMPORT_MAP): string[] {
  const found: string[] = [];
  for (const entry of imports) {
    const from = moduleOf(entry.file);
    const to = moduleOf(entry.target);
    const rule = map[from];
    if (!rule) {
      found.push(`${entry.file}: module "${from}" is not in the import map`);
      continue;
    }
    if (LEAF_FILES.includes(entry.file)) {
      found.push(`${entry.file} imports ${entry.specifier}: it must import nothing of tandem's`);
      continue;
    }
    if (from === to || rule.imports.includes('*') || rule.imports.includes(to)) continue;
    if (entry.typeOnly && rule.typeOnly?.includes(entry.target)) continue;
    found.push(`${entry.file} imports ${entry.specifier}: ${from} may not import ${to}`);
  }
  return found;
}

/** Cycles between modules, each as the path that closes it (a → b → a). */
function moduleCycles(imports: readonly Import[]): string[] {
  const edges = new Map<string, Set<string>>();
  for (const entry of imports) {
    const from = moduleOf(entry.file);
    const to = moduleOf(entry.target);
    if (from === to) continue;
    if (!edges.has(from)) edges.set(from, new Set());
    edges.get(from)!.add(to);
  }
  const cycles = new Set<string>();
  const finished = new Set<string>();
  const walk = (module: string, path: string[]) => {
    const at = path.indexOf(module);
    if (at >= 0) {
      cycles.add([...path.slice(at), module].join(' → '));
      return;
    }
    if (finished.has(module)) return;
    for (const next of edges.get(module) ?? []) walk(next, [...path, module]);
    finished.add(module);
  };
  for (const module of [...edges.keys()].sort()) walk(module, []);
  return [...cycles];
}

function sourceFiles(directory: string): string[] {
  return readdirSync(directory, { withFileTypes: true }).flatMap((entry) => {
    const path = join(directory, entry.name);
    if (entry.isDirectory()) return sourceFiles(path);
    return entry.name.endsWith('.ts') ? [path] : [];
  });
}

const srcRoot = join(dirname(fileURLToPath(import.meta.url)), '../../src');

let srcImports: Import[] | undefined;
function importsOfSrc(): Import[] {
  return (srcImports ??= sourceFiles(srcRoot).flatMap((path) => importsOf(relative(srcRoot, path).split('\\').join('/'), readFileSync(path, 'utf8'))));
}

const imported = (file: string, specifier: string, typeOnly = false): Import => importsOf(file, `${typeOnly ? 'import type' : 'import'} { x } from '${specifier}';`)[0]!;

describe('import map', () => {
  it('every import in src/ follows the map', () => {
    const imports = importsOfSrc();
    expect(imports.length).toBeGreaterThan(100);
    expect(violations(imports)).toEqual([]);
  });

  it('no two modules import each other, directly or around a loop', () => {
    expect(moduleCycles(importsOfSrc())).toEqual([]);
  });

  it('names the file and the import that break the map', () => {
    expect(violations([imported('core/model.ts', '../engine/migrator.js')])).toEqual(['core/model.ts imports ../engine/migrator.js: core may not import engine']);
    expect(violations([imported('operations/add_column.ts', '../core/model.js'), imported('cli/main.ts', '../engine/migrator.js')])).toEqual([]);
    expect(violations([imported('newthing/a.ts', '../core/model.js')])).toEqual(['newthing/a.ts: module "newthing" is not in the import map']);
  });

  it('lets the core see the migration format only through import type', () => {
    expect(violations([imported('core/planner.ts', '../migration/format.js', true)])).toEqual([]);
    expect(violations([imported('core/planner.ts', '../migration/format.js')])).toEqual(['core/planner.ts imports ../migration/format.js: core may not import migration']);
    expect(violations([imported('core/planner.ts', '../migration/load.js', true)])).toEqual(['core/planner.ts imports ../migration/load.js: core may not import migration']);
    expect(violations([imported('migration/format.ts', '../errors.js')])).toEqual(['migration/format.ts imports ../errors.js: it must import nothing of tandem\'s']);
  });

  it('finds re-exports, dynamic imports and import types', () => {
    const text = [
      "import { a, type B } from './a.js';",
      "import { type C } from '../core/c.js';",
      "export { d } from '../d/d.js';",
      "import 'node:fs';",
      "const e = await import('../e/e.js');",
      "let f: import('../f/f.js').F;",
    ].join('\n');
    expect(importsOf('engine/x.ts', text).map(({ target, typeOnly }) => [target, typeOnly])).toEqual([
      ['engine/a.ts', false],
      ['core/c.ts', true],
      ['d/d.ts', false],
      ['e/e.ts', false],
      ['f/f.ts', true],
    ]);
  });

  it('reports a cycle between modules', () => {
    const imports = [imported('state/a.ts', '../engine/b.js'), imported('engine/b.ts', '../core/c.js'), imported('core/c.ts', '../state/d.js')];
    expect(moduleCycles(imports)).toEqual(['core → state → engine → core']);
    expect(moduleCycles(imports.slice(0, 2))).toEqual([]);
  });
});
