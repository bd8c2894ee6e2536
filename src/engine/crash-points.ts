/**
 * A test hook for crash-safety tests: with TANDEM_TEST_CRASH_AFTER=<phase>:<step> (e.g. complete:3)
 * the process kills itself with SIGKILL, as a crash or an OOM kill would, right after step <step>
 * (1-based) of <phase> has been recorded as done. Nothing else reads the variable.
 */
export function crashPointReached(phase: string, step: number): void {
  const wanted = process.env.TANDEM_TEST_CRASH_AFTER;
  if (wanted !== undefined && wanted === `${phase}:${step}`) process.kill(process.pid, 'SIGKILL');
}
