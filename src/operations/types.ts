import type { OperationBody, OperationKind } from '../migration/format.js';
import type { Planner } from '../core/planner.js';

/**
 * An operation validates its body against the model and plans its work: it changes the model to
 * what the new version sees and tells the planner which steps start, complete and rollback need.
 * Validation errors are thrown as TandemErrors with a `field`; the caller adds file and index.
 */
export type OperationPlanner<K extends OperationKind> = (body: OperationBody<K>, planner: Planner) => void | Promise<void>;
