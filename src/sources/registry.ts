// The one place that knows every source engine. Nothing registers itself on import: the list below is the
// whole set, and a duplicate engine is a startup error, not a silent override.

import { BackupdError, type FieldProblem, ValidationError } from '../errors.js';
import { mariadb } from './mariadb.js';
import { postgres } from './postgres.js';
import type { Source, SourceFactory } from './source.js';
import { sqlite } from './sqlite.js';

/** A source as an operator writes it in the agent's config: a name, an engine and its untrusted config. */
export interface SourceSpec {
  name: string;
  engine: string;
  config: unknown;
}

// Factories differ in their config type; the registry only passes a factory the config its own parseConfig
// returned, so erasing the type to unknown here is safe.
type AnyFactory = SourceFactory<unknown>;

export class SourceRegistry {
  private readonly factories = new Map<string, AnyFactory>();

  constructor(factories: readonly AnyFactory[] = []) {
    for (const factory of factories) {
      if (this.factories.has(factory.engine)) {
        throw new BackupdError('INTERNAL', `source engine "${factory.engine}" is registered twice`);
      }
      this.factories.set(factory.engine, factory);
    }
  }

  get engines(): string[] {
    return [...this.factories.keys()].sort();
  }

  /** Every problem of a source spec (unknown engine, bad config fields), none when it is valid. */
  problems(spec: SourceSpec, path: string): FieldProblem[] {
    const factory = this.factories.get(spec.engine);
    if (!factory) {
      return [
        { path: `${path}.engine`, message: `unknown engine "${spec.engine}" (known: ${this.engines.join(', ')})` },
      ];
    }
    try {
      factory.parseConfig(spec.config, `${path}.config`);
      return [];
    } catch (error) {
      if (error instanceof ValidationError) return error.problems;
      throw error;
    }
  }

  /** Validate and open a source. */
  async open(spec: SourceSpec, path = 'source'): Promise<Source> {
    const problems = this.problems(spec, path);
    if (problems.length > 0) throw new ValidationError('source', problems);
    const factory = this.factories.get(spec.engine)!;
    return factory.open(spec.name, factory.parseConfig(spec.config, `${path}.config`));
  }
}

/** Every engine backupd ships. */
export const sourceEngines = new SourceRegistry([sqlite as AnyFactory, postgres as AnyFactory, mariadb as AnyFactory]);
