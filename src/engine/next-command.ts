import type { MigrationStatus } from '../state/schema.js';

/**
 * The commands that work on a migration in this status (complete and rollback refuse the others),
 * in one place so that every hint, `tandem status` and the errors after a lost connection agree.
 * `file` names the migration file where a command needs it.
 */
export function whatWorksNow(status: MigrationStatus, file?: string | null): string {
  switch (status) {
    case 'starting':
      return `resume its start (tandem start ${file ?? 'FILE'}, or tandem backfill) or roll it back (tandem rollback)`;
    case 'active':
      return 'complete it (tandem complete) or roll it back (tandem rollback)';
    case 'completing':
      return 'finish its complete (tandem complete)';
    case 'rolling_back':
      return 'finish its rollback (tandem rollback)';
    default:
      return 'tandem status shows where it stands';
  }
}
