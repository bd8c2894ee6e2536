/**
 * What a client is told when the proxy refuses its login: word for word what PostgreSQL says, so
 * drivers and people react as they do to the server, and the same words whatever went wrong (unknown
 * user, no password stored, wrong password), so a client cannot tell which users exist.
 */
import type { ErrorFields } from '../protocol/messages.js';

export function passwordAuthenticationFailed(user: string): ErrorFields {
  return { severity: 'FATAL', code: '28P01', message: `password authentication failed for user "${user}"` };
}

/** A SCRAM or SASL message that breaks the protocol: PostgreSQL's 08P01 with its wording. */
export function malformedScramMessage(detail: string): ErrorFields {
  return { severity: 'FATAL', code: '08P01', message: 'malformed SCRAM message', detail };
}
