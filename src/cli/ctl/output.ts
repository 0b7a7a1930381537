// Where backupctl writes: stdout for results (tables, or JSON with --json), stderr for errors. Every byte
// passes through a mask, so the token and encryption keys never appear, whatever a message echoes.

/** The part of a stream backupctl uses: process.stdout, or a buffer in tests. */
export interface TextSink {
  write(chunk: string): unknown;
  isTTY?: boolean;
  columns?: number;
}

export class Output {
  private readonly secrets = new Set<string>();

  constructor(
    readonly stdout: TextSink,
    readonly stderr: TextSink,
    readonly json: boolean,
  ) {}

  /** Mask `secret` in everything written from now on (also its JSON-escaped form). */
  addSecret(secret: string | undefined): void {
    if (!secret) return;
    this.secrets.add(secret);
    this.secrets.add(JSON.stringify(secret).slice(1, -1));
  }

  mask(text: string): string {
    let out = text;
    // Longest first, so a secret that contains another is masked whole.
    for (const secret of [...this.secrets].sort((a, b) => b.length - a.length)) {
      if (secret) out = out.split(secret).join('***');
    }
    return out;
  }

  /** Raw text to stdout (progress redraws). */
  write(text: string): void {
    this.stdout.write(this.mask(text));
  }

  line(text = ''): void {
    this.write(`${text}\n`);
  }

  /** One JSON document, indented for people who read it too. */
  document(value: unknown): void {
    this.write(`${JSON.stringify(value, null, 2)}\n`);
  }

  /** One line of a JSON-lines stream. */
  jsonLine(value: unknown): void {
    this.write(`${JSON.stringify(value)}\n`);
  }

  error(text: string): void {
    this.stderr.write(`${this.mask(text)}\n`);
  }
}
