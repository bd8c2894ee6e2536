/**
 * Who may use the admin console: the users named by `--admin-users` (PgBouncer's admin_users), on
 * the database named by `--admin-database`. With no admin users the console is closed.
 */
import type { ErrorFields } from '../protocol/messages.js';

export const DEFAULT_ADMIN_DATABASE = 'tandem';

export class AdminUsers {
  private constructor(private readonly names: ReadonlySet<string>) {}

  /** `--admin-users`: comma-separated user names; spaces around them are ignored. */
  static parse(text: string, flag: string): AdminUsers {
    const names = text
      .split(',')
      .map((name) => name.trim())
      .filter((name) => name !== '');
    const invalid = names.find((name) => /\s/.test(name));
    if (invalid !== undefined) throw new Error(`${flag} takes user names separated by commas, got "${text}"`);
    return new AdminUsers(new Set(names));
  }

  static readonly none = new AdminUsers(new Set());

  /** User names are compared exactly, as PostgreSQL's role names are. */
  isAdmin(user: string): boolean {
    return this.names.has(user);
  }

  /** False without --admin-users: the console lets no one in. */
  get open(): boolean {
    return this.names.size > 0;
  }
}

/** The FATAL a non-admin user gets at login to the admin database, after authentication. */
export function adminLoginRefusal(user: string, adminDatabase: string): ErrorFields {
  return {
    severity: 'FATAL',
    code: '28000',
    message: `user "${user}" is not allowed to use the admin console (database "${adminDatabase}")`,
    hint: 'The proxy lets the users named by --admin-users in.',
  };
}
