// The one place that knows every destination driver. Nothing registers itself on import: the list
// below is the whole set, and a duplicate kind is a startup error, not a silent override. Destinations
// opened here come wrapped in the retry and limit settings of their spec (policy.ts).

import { BackupdError, ValidationError } from '../errors.js';
import { azure } from './azure.js';
import type { Destination, DestinationFactory } from './destination.js';
import { ftp } from './ftp.js';
import { gcs } from './gcs.js';
import { glacier } from './glacier.js';
import { local } from './local.js';
import { applySettings, type DestinationSettings, parseSettings, splitConfig } from './policy.js';
import type { RetryPolicy } from './retry.js';
import { s3 } from './s3.js';

/**
 * A destination as an operator writes it in a task: a name, a driver kind and its untrusted config (the
 * driver's fields, plus the optional `retry` and `limits` settings every destination takes).
 */
export interface DestinationSpec {
  name: string;
  kind: string;
  config: unknown;
}

// Factories differ in their config type; the registry only ever passes a factory the config that
// factory's own parseConfig returned, so erasing the type to unknown here is safe.
type AnyFactory = DestinationFactory<unknown>;

export interface RegistryOptions {
  /** Retry timing under every opened destination's own settings (tests inject sleep, now, random here). */
  retry?: RetryPolicy;
}

/** Told about each retry of a destination call, e.g. to log it with the run. */
export type RetryListener = NonNullable<RetryPolicy['onRetry']>;

export class DestinationRegistry {
  private readonly factories = new Map<string, AnyFactory>();
  private readonly retry: RetryPolicy;

  constructor(factories: readonly AnyFactory[] = [], options: RegistryOptions = {}) {
    for (const factory of factories) this.register(factory);
    this.retry = options.retry ?? {};
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
      throw new ValidationError('destination', [{ path, message: `unknown destination kind "${kind}"` }], {
        message: `${path}: unknown destination kind "${kind}" (known: ${this.kinds.join(', ')})`,
      });
    }
    return factory;
  }

  /** Validate a spec's config, driver fields and settings (a ValidationError naming every bad field under `path`). */
  parse(spec: DestinationSpec, path = 'destination'): unknown {
    return this.check(spec, path).config;
  }

  /** The spec with every secret in its config masked, for logs and API answers; the settings are kept. */
  redact(spec: DestinationSpec, path = 'destination'): DestinationSpec {
    const { factory, config, settings } = this.check(spec, path);
    return { ...spec, config: { ...(factory.redact(config) as object), ...settings } };
  }

  /**
   * Validate and open a destination, wrapped as its settings say: retries of transient errors with backoff
   * inside a budget (DEFAULT_RETRY unless `config.retry` says otherwise), limits when `config.limits` is set.
   * `onRetry` hears about each retry of this destination's calls; once `signal` aborts (e.g. the run's), no
   * call is retried and a backoff in progress ends with CANCELLED.
   */
  async open(
    spec: DestinationSpec,
    path = 'destination',
    options: { onRetry?: RetryListener; signal?: AbortSignal } = {},
  ): Promise<Destination> {
    const { factory, config, settings } = this.check(spec, path);
    const retry: RetryPolicy = {
      ...this.retry,
      ...(options.onRetry ? { onRetry: options.onRetry } : {}),
      ...(options.signal ? { signal: options.signal } : {}),
    };
    return applySettings(await factory.open(spec.name, config), settings, retry);
  }

  /** Validate a spec and open its driver alone, without retries or limits (for callers that wrap it). */
  async openDriver(spec: DestinationSpec, path = 'destination'): Promise<Destination> {
    const { factory, config } = this.check(spec, path);
    return factory.open(spec.name, config);
  }

  /** The driver, its parsed config and the settings; problems of both in one ValidationError. */
  private check(
    spec: DestinationSpec,
    path: string,
  ): { factory: AnyFactory; config: unknown; settings: DestinationSettings } {
    const factory = this.factoryFor(spec.kind, `${path}.kind`);
    const split = splitConfig(spec.config);
    const parsed = parseSettings(split.settings, `${path}.config`);
    let config: unknown;
    try {
      config = factory.parseConfig(split.driver, `${path}.config`);
    } catch (error) {
      if (!(error instanceof ValidationError) || parsed.problems.length === 0) throw error;
      throw new ValidationError(`${spec.kind} destination`, [...error.problems, ...parsed.problems]);
    }
    if (parsed.problems.length > 0) throw new ValidationError(`${spec.kind} destination`, parsed.problems);
    return { factory, config, settings: parsed.settings };
  }
}

/** Every driver backupd ships. */
export const destinations = new DestinationRegistry([local, s3, azure, gcs, glacier, ftp]);

/**
 * Open the driver of an operator's spec with the built-in drivers, without the retry and limit wrappers
 * `destinations.open` adds: for tools and tests that wrap it themselves.
 */
export function openDestination(spec: DestinationSpec, path?: string): Promise<Destination> {
  return destinations.openDriver(spec, path);
}
