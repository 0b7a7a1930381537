// A scripted in-memory destination for the wrapper tests (retry, limit): each call runs the next
// behaviour given for it, and every call is recorded.

import { Readable } from 'node:stream';
import type { Destination, ObjectInfo, PutBody } from '../../src/uploader/destination.js';

export type Behaviour = () => Promise<void>;

export class FakeDestination implements Destination {
  readonly kind = 'fake';
  readonly capabilities = { listable: true, rangeReads: true, immediateReads: true, maxObjectSize: 1 << 30 };
  readonly calls: string[] = [];
  readonly bodies: Buffer[] = [];
  readonly objects = new Map<string, Buffer>();
  private readonly script: Behaviour[];

  constructor(
    readonly name: string,
    script: Behaviour[] = [],
  ) {
    this.script = [...script];
  }

  private async step(call: string): Promise<void> {
    this.calls.push(call);
    const behaviour = this.script.shift();
    if (behaviour) await behaviour();
  }

  /** Reads the whole body first (as a real upload would), then runs the scripted behaviour. */
  async put(key: string, body: PutBody, size: number) {
    const chunks: Buffer[] = [];
    for await (const chunk of Buffer.isBuffer(body) ? Readable.from([body]) : body()) chunks.push(chunk as Buffer);
    const data = Buffer.concat(chunks);
    if (data.length !== size) throw new Error(`size ${data.length} != ${size}`);
    await this.step(`put ${key}`);
    this.bodies.push(data);
    this.objects.set(key, data);
    return {};
  }

  async get(key: string) {
    await this.step(`get ${key}`);
    return Readable.from([this.objects.get(key) ?? Buffer.alloc(0)]);
  }

  async stat(key: string): Promise<ObjectInfo | undefined> {
    await this.step(`stat ${key}`);
    const data = this.objects.get(key);
    return data ? { key, size: data.length, modifiedAt: new Date(0) } : undefined;
  }

  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    await this.step(`list ${prefix}`);
    for (const [key, data] of this.objects) {
      if (key.startsWith(prefix)) yield { key, size: data.length, modifiedAt: new Date(0) };
    }
  }

  async delete(key: string) {
    await this.step(`delete ${key}`);
    this.objects.delete(key);
  }

  async close() {}
}
