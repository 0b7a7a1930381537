// The one place that knows every destination driver. Nothing registers itself on import: the list
// below is the whole set, and a duplicate kind is a startup error, not a silent override.

import { BackupdError } from '../errors.js';
import { azure } from './azure.js';
import type { Destination, DestinationFactory } from './destination.js';
import { ftp } from './ftp.js';
import { gcs } from './gcs.js';
import { glacier } from './glacier.js';
import { local } from './local.js';
import { s3 } from './s3.js';

/** A destination as an operator writes it in a task: a name, a driver kind and its untrusted config. */
export interface DestinationSpec {
  name: string;
  kind: string;
  config: unknown;
}

// Factories differ in their config type; the registry only ever passes a factory the config that
// factory's own parseConfig returned, so erasing the type to unknown here is safe.
type AnyFactory = DestinationFactory<unknown>;

export class DestinationRegistry {
  private readonly factories = new Map<string, AnyFactory>();

  constructor(factories: readonly AnyFactory[] = []) {
    for (const factory of factories) this.register(factory);
  }

  /** Add a driver; throws INTERNAL when its kind is already registered. */
  register(factory: AnyFactory): void {
    if (this.factories.has(factory.kind)) {
      throw new BackupdError('INTERNAL', `destination kind "${factory.kind}" is registered twice`);
    }
    this.factories.set(factory.kind, factory);
  }

  get kinds(): string[] {
    return [...this.factories.keys()].sort();
  }

  /** The driver for `kind`; INVALID_ARGUMENT naming the unknown kind and the known ones. */
  factoryFor(kind: string, path = 'kind'): AnyFactory {
    const factory = this.factories.get(kind);
    if (!factory) {
      throw new BackupdError(
        'INVALID_ARGUMENT',
        `${path}: unknown destination kind "${kind}" (known: ${this.kinds.join(', ')})`,
        { details: { problems: [{ path, message: `unknown destination kind "${kind}"` }] } },
      );
    }
    return factory;
  }

  /** Validate a spec's config (ValidationError naming every bad field under `path`). */
  parse(spec: DestinationSpec, path = 'destination'): unknown {
    return this.factoryFor(spec.kind, `${path}.kind`).parseConfig(spec.config, `${path}.config`);
  }

  /** The spec with every secret in its config masked, for logs and API answers. */
  redact(spec: DestinationSpec, path = 'destination'): DestinationSpec {
    const factory = this.factoryFor(spec.kind, `${path}.kind`);
    return { ...spec, config: factory.redact(factory.parseConfig(spec.config, `${path}.config`)) };
  }

  /** Validate and open a destination. */
  async open(spec: DestinationSpec, path = 'destination'): Promise<Destination> {
    const factory = this.factoryFor(spec.kind, `${path}.kind`);
    return factory.open(spec.name, factory.parseConfig(spec.config, `${path}.config`));
  }
}

/** Every driver backupd ships. */
export const destinations = new DestinationRegistry([local, s3, azure, gcs, glacier, ftp]);

/** Open a destination from an operator's spec with the built-in drivers. */
export function openDestination(spec: DestinationSpec, path?: string): Promise<Destination> {
  return destinations.open(spec, path);
}
