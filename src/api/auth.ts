// Bearer tokens for operators. Missing or unknown credentials -> UNAUTHENTICATED; a known token without the
// right (the read-only token calling a method that changes something, or pointing ListBackups/Verify at a
// destination of its own) -> PERMISSION_DENIED. No token configured -> auth off, for the single-node demo on
// localhost (the server warns when that is not local).
// Only the Backupd service is checked: health and reflection stay open so standard tools work.

import { createHash, timingSafeEqual } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { BackupdError } from '../errors.js';

export interface AuthConfig {
  /** Full access. Empty or absent (with no read-only token) turns auth off. */
  token?: string;
  /** May call only the methods that change nothing: Get*, List*, Watch*, Verify. */
  readOnlyToken?: string;
}

export type Access = 'read' | 'write';

/**
 * What a method needs. Decided from its name so an RPC added later is a write (the safe side) unless it is
 * named as a read.
 */
export function accessOf(method: string): Access {
  return /^(Get|List|Watch)[A-Z]/.test(method) || method === 'Verify' ? 'read' : 'write';
}

/** A refusal, as the handler sends it. */
export type AuthFailure = Pick<grpc.StatusObject, 'code' | 'details'>;

export class Authenticator {
  private readonly full: Buffer | undefined;
  private readonly readOnly: Buffer | undefined;

  /** Throws INVALID_ARGUMENT for a configuration that could only be a mistake. */
  constructor(config: AuthConfig) {
    const token = config.token || undefined;
    const readOnlyToken = config.readOnlyToken || undefined;
    if (readOnlyToken !== undefined && token === undefined) {
      // Otherwise nobody could ever change anything, which is never what was meant.
      throw new BackupdError('INVALID_ARGUMENT', 'auth: readOnlyToken needs token (the full-access token) too');
    }
    if (readOnlyToken !== undefined && readOnlyToken === token) {
      throw new BackupdError('INVALID_ARGUMENT', 'auth: readOnlyToken must differ from token');
    }
    this.full = token === undefined ? undefined : digest(token);
    this.readOnly = readOnlyToken === undefined ? undefined : digest(readOnlyToken);
  }

  /** False when no token is configured: every call is let through. */
  get enabled(): boolean {
    return this.full !== undefined;
  }

  /**
   * Undefined when the call may proceed, else the status to refuse it with. `fullAccessFor` names what makes
   * this call of a read method need the full-access token anyway (ListBackups or Verify given an ad-hoc
   * destination spec: the agent would send requests wherever the caller says).
   */
  check(metadata: grpc.Metadata, method: string, fullAccessFor?: string): AuthFailure | undefined {
    if (!this.full) return undefined;
    const header = metadata.get('authorization')[0];
    if (header === undefined) {
      return { code: grpc.status.UNAUTHENTICATED, details: 'no token: pass --token or set BACKUPD_TOKEN' };
    }
    const presented = bearerToken(header);
    if (presented === undefined) {
      return { code: grpc.status.UNAUTHENTICATED, details: 'the authorization metadata must be "Bearer <token>"' };
    }
    const candidate = digest(presented);
    // Both comparisons always run, so timing tells nothing about which token (if any) matched.
    const isFull = timingSafeEqual(candidate, this.full);
    const isReadOnly = this.readOnly !== undefined && timingSafeEqual(candidate, this.readOnly);
    if (isFull) return undefined;
    if (isReadOnly) {
      if (accessOf(method) !== 'read') {
        return { code: grpc.status.PERMISSION_DENIED, details: `the read-only token may not call ${method}` };
      }
      if (fullAccessFor !== undefined) {
        return {
          code: grpc.status.PERMISSION_DENIED,
          details: `the read-only token may not call ${method} with ${fullAccessFor}; name a task and one of its destinations, or use the full-access token`,
        };
      }
      return undefined;
    }
    return { code: grpc.status.UNAUTHENTICATED, details: 'the token is not valid for this agent' };
  }
}

/** The token of an `authorization: Bearer <token>` value, or undefined when it is not one. */
function bearerToken(value: string | Buffer): string | undefined {
  if (typeof value !== 'string') return undefined;
  const match = /^Bearer\s+(\S+)\s*$/i.exec(value);
  return match?.[1];
}

// Hashing both sides first gives timingSafeEqual equal lengths and hides the configured token's length.
function digest(token: string): Buffer {
  return createHash('sha256').update(token, 'utf8').digest();
}
