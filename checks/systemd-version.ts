import type { CommandResult, Host } from '../platform/host.js';
import {
  compareEVR,
  formatEVR,
  isEl7Release,
  parseNVRA,
  parseSystemctlVersionLine,
  parseVersionRelease,
  rpmvercmp,
  VERSION_RELEASE_PATTERN,
  type EVR,
  type InstalledVersion,
  type VersionReading,
} from './rpm-version.js';
import { unknown, type BaseCheckOptions, type CheckDefinition, type Finding } from './types.js';

/**
 * Reasons this check reports:
 * - `SystemdUpToDate` (ok): an el7 systemd at or above `minimum`.
 * - `SystemdTooOld` (problem): an el7 systemd below `minimum`; the message carries the fix.
 * - `NotApplicable` (ok): not a RHEL/CentOS 7 build, or an upstream version newer than any el7 build.
 * - `ReleaseUnknown` (unknown): only a bare upstream version (`systemd 219`, as el7's systemctl
 *   prints it) at or below `minimum`'s version was available: the fix lives in the release.
 * - `UnreadableVersion` (unknown): the version text could not be read with certainty.
 * - `NotInstalled` (unknown): neither rpm knows systemd nor is systemctl there.
 * - `CommandTimeout` / `CommandFailed` (unknown): rpm or systemctl hung or failed.
 * - `InvalidConfig` (unknown): `minimum` is not a readable version (only when config validation was bypassed).
 */
export interface SystemdVersionOptions extends BaseCheckOptions {
  /**
   * On `.el7` releases, a systemd below this `[epoch:]version[-release]` (rpm ordering) is a problem:
   * systemd 219's sd-bus cookie overflow makes PID 1 stop answering D-Bus, which hangs runc and PLEG.
   * Without a release (`219`) any release of that version passes.
   */
  minimum: string;
}

/** Per command; two commands at most per run. */
const COMMAND_TIMEOUT_MS = 10_000;

const FIX = 'yum update -y systemd && systemctl daemon-reexec';

/**
 * The systemd package `rpm -q systemd` printed (exit 0). Several lines (one per installed arch or a
 * half-finished update) are fine only when they agree on the version.
 */
export function readRpmQueryOutput(stdout: string): VersionReading {
  const lines = stdout.split('\n').map((l) => l.trim()).filter(Boolean);
  if (!lines.length) return { ok: false, text: stdout, error: 'rpm -q systemd printed nothing' };
  const readings: InstalledVersion[] = [];
  for (const line of lines) {
    const r = parseNVRA(line);
    if (!r.ok) return r;
    if (r.value.name !== 'systemd') return { ok: false, text: line, error: `rpm -q systemd printed ${JSON.stringify(line)}, a package other than systemd` };
    readings.push(r.value);
  }
  const first = readings[0] as InstalledVersion;
  if (readings.some((r) => compareEVR(r, first) !== 0 || r.release !== first.release)) {
    return { ok: false, text: stdout, error: `rpm reports several systemd versions installed (${lines.join(', ')}); which one runs cannot be told` };
  }
  return { ok: true, value: first };
}

/** The first line of `systemctl --version` (the second lists compile-time features). */
export function readSystemctlVersionOutput(stdout: string): VersionReading {
  const first = (stdout.split('\n')[0] ?? '').replace(/\r$/, '').trim();
  return parseSystemctlVersionLine(first);
}

/** How the installed version is shown in messages and evidence. */
function shown(v: InstalledVersion): string {
  return v.packageVersion ?? formatEVR(v);
}

/** The verdict for a version that was read. Pure. */
export function judgeSystemdVersion(v: InstalledVersion, minimum: EVR, evidence: Record<string, unknown>): Finding {
  const version = shown(v);
  const min = formatEVR(minimum);
  const ev = { ...evidence, version, minimum: min, el7: isEl7Release(v.release) };
  if (isEl7Release(v.release)) {
    if (compareEVR(v, minimum) < 0) {
      return {
        status: 'problem',
        reason: 'SystemdTooOld',
        message:
          `systemd ${version} is older than ${min}: its sd-bus cookie counter overflows after months of unit churn, ` +
          `PID 1 stops answering D-Bus, runc hangs and the PLEG errors keep coming back until systemd is updated; ` +
          `fix: ${FIX} (if this build carries the backported fix, as some late 219-62.el7_6 builds do, lower checks.systemd-version.minimum)`,
        evidence: ev,
      };
    }
    return { status: 'ok', reason: 'SystemdUpToDate', message: `systemd ${version} is at or above ${min}`, evidence: ev };
  }
  if (v.release !== undefined || v.packageVersion !== undefined) {
    return {
      status: 'ok',
      reason: 'NotApplicable',
      message: `systemd ${version} is not a RHEL/CentOS 7 build; the el7 minimum ${min} does not apply`,
      evidence: ev,
    };
  }
  // Only an upstream number: RHEL/CentOS 7's systemctl prints just `systemd 219`, so the distribution
  // is unknown. Newer than the minimum's version is safe either way; otherwise the fix may or may
  // not be in the release we cannot see.
  if (rpmvercmp(v.version, minimum.version) > 0) {
    return {
      status: 'ok',
      reason: 'NotApplicable',
      message: `systemd ${version} is newer than any ${minimum.version} build; the el7 minimum ${min} does not apply`,
      evidence: ev,
    };
  }
  return unknown(
    'ReleaseUnknown',
    `systemd ${version} was reported without its package release, so it cannot be compared with ${min}; ` +
      'make `rpm -q systemd` reachable (install rpm, or set hostCommandPrefix to enter the host)',
    ev,
  );
}

function failure(what: string, r: CommandResult): Finding | undefined {
  if (r.timedOut) return unknown('CommandTimeout', `${what} did not finish within ${COMMAND_TIMEOUT_MS / 1000}s`, { command: r.argv });
  return undefined;
}

function firstLine(s: string): string {
  return s.trim().split('\n')[0] ?? '';
}

async function inspect(host: Host, minimum: EVR, signal: AbortSignal): Promise<Finding> {
  const opts = { timeoutMs: COMMAND_TIMEOUT_MS, onHost: true };
  const rpm = await host.run(['rpm', '-q', 'systemd'], opts);
  const rpmFailed = failure('rpm -q systemd', rpm);
  if (rpmFailed) return rpmFailed;
  let rpmState: string;
  if (rpm.notFound) rpmState = 'rpm not found';
  else if (rpm.exitCode === 0) {
    const reading = readRpmQueryOutput(rpm.stdout);
    if (!reading.ok) {
      return unknown('UnreadableVersion', `cannot read the systemd version from rpm: ${reading.error}`, { source: 'rpm -q systemd', output: rpm.stdout.slice(0, 500) });
    }
    return judgeSystemdVersion(reading.value, minimum, { source: 'rpm -q systemd', text: reading.value.text });
  } else if (/package systemd is not installed/.test(rpm.stdout + rpm.stderr)) {
    // A Debian box with the rpm tool but no rpm-managed systemd: systemctl knows better.
    rpmState = 'systemd not installed per rpm';
  } else {
    rpmState = `rpm failed: ${firstLine(rpm.stderr) || firstLine(rpm.stdout) || rpm.error || `exit ${rpm.exitCode}`}`;
  }

  if (signal.aborted) return unknown('CommandTimeout', 'the check timed out before systemctl --version could run', { rpm: rpmState });
  const sc = await host.run(['systemctl', '--version'], opts);
  const scFailed = failure('systemctl --version', sc);
  if (scFailed) return { ...scFailed, evidence: { ...scFailed.evidence, rpm: rpmState } };
  if (sc.notFound) {
    return unknown('NotInstalled', `no systemd found: ${rpmState}, and systemctl is not installed`, { rpm: rpmState });
  }
  if (sc.exitCode !== 0) {
    const why = firstLine(sc.stderr) || sc.error || `exit ${sc.exitCode}`;
    return unknown('CommandFailed', `systemctl --version failed: ${why}`, { rpm: rpmState });
  }
  const reading = readSystemctlVersionOutput(sc.stdout);
  if (!reading.ok) {
    return unknown('UnreadableVersion', `cannot read the systemd version from systemctl: ${reading.error}`, {
      source: 'systemctl --version',
      output: sc.stdout.slice(0, 500),
      rpm: rpmState,
    });
  }
  return judgeSystemdVersion(reading.value, minimum, { source: 'systemctl --version', text: reading.value.text, rpm: rpmState });
}

/** How long a definite (ok or problem) answer is reused before rpm/systemctl are asked again. */
export const RECHECK_MS = 10 * 60_000;

export const systemdVersionCheck: CheckDefinition<SystemdVersionOptions> = {
  id: 'systemd-version',
  reasons: ['SystemdTooOld', 'SystemdUpToDate', 'NotApplicable', 'ReleaseUnknown', 'UnreadableVersion', 'NotInstalled', 'CommandTimeout'],
  restartCures: false, // an old systemd needs a package update
  defaults: { enabled: true, minimum: '219-67.el7' },
  schema: {
    type: 'object',
    additionalProperties: false,
    properties: {
      enabled: { type: 'boolean' },
      // Same acceptance as parseVersionRelease, so a bad minimum is a config error, not a runtime one.
      minimum: { type: 'string', minLength: 1, pattern: VERSION_RELEASE_PATTERN, description: 'an rpm [epoch:]version[-release] such as 219-67.el7' },
    },
  },
  runTimeoutMs: () => 2 * COMMAND_TIMEOUT_MS + 5_000,
  create(options, deps) {
    const min = parseVersionRelease(options.minimum);
    let last: { finding: Finding; at: number } | undefined;
    return {
      id: 'systemd-version',
      run: async (signal) => {
        // Config validation rejects this first; a caller that bypassed it gets a finding, not a crash.
        if (!min.ok) return unknown('InvalidConfig', `checks.systemd-version.minimum: ${min.error}`, { minimum: options.minimum });
        // The installed systemd changes only with a package upgrade, so a definite answer is reused for
        // a while: running rpm and systemctl every sweep was most of the agent's idle CPU (bench/RESULTS.md).
        const now = deps.host.clock.now();
        if (last && now - last.at < RECHECK_MS) {
          return { ...last.finding, evidence: { ...last.finding.evidence, checkedAt: new Date(last.at).toISOString() } };
        }
        const finding = await inspect(deps.host, min.value, signal);
        last = finding.status === 'unknown' ? undefined : { finding, at: now };
        return finding;
      },
    };
  },
};
