/**
 * RPM version comparison (a port of rpm's rpmio/rpmvercmp.c and rpmverCmp/labelCompare) and a strict
 * reader for the systemd version strings found on nodes. Pure: no I/O.
 */

/** -1: a < b, 0: equal, 1: a > b. */
export type Ordering = -1 | 0 | 1;

// rpm uses its own locale-independent ASCII classes (risdigit/risalpha), so any byte >= 0x80
// (every UTF-8 unit of a non-ASCII character) is a separator. JS code units >= 0x80 behave alike.
function isDigit(c: number): boolean {
  return c >= 0x30 && c <= 0x39;
}
function isAlpha(c: number): boolean {
  return (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a);
}
function isAlnum(c: number): boolean {
  return isDigit(c) || isAlpha(c);
}

const TILDE = 0x7e;
const CARET = 0x5e;
const END = -1;

/**
 * rpm's `rpmvercmp(a, b)` on one version (or release) string: alternating all-digit and all-letter
 * segments compared in turn; anything else separates; `~` sorts before everything (even the end),
 * `^` sorts after the end but before any further segment; numbers compare numerically (leading
 * zeros ignored) and beat letters. A NUL ends the string, as it would in C.
 */
export function rpmvercmp(a: string, b: string): Ordering {
  const s1 = cString(a);
  const s2 = cString(b);
  if (s1 === s2) return 0;
  const at = (s: string, i: number): number => (i < s.length ? s.charCodeAt(i) : END);
  let one = 0;
  let two = 0;
  while (one < s1.length || two < s2.length) {
    while (one < s1.length && !isAlnum(at(s1, one)) && at(s1, one) !== TILDE && at(s1, one) !== CARET) one++;
    while (two < s2.length && !isAlnum(at(s2, two)) && at(s2, two) !== TILDE && at(s2, two) !== CARET) two++;
    const c1 = at(s1, one);
    const c2 = at(s2, two);

    if (c1 === TILDE || c2 === TILDE) {
      if (c1 !== TILDE) return 1;
      if (c2 !== TILDE) return -1;
      one++;
      two++;
      continue;
    }
    // Like `~`, except that a string which has ended sorts before `^` (1.0 < 1.0^git1).
    if (c1 === CARET || c2 === CARET) {
      if (c1 === END) return -1;
      if (c2 === END) return 1;
      if (c1 !== CARET) return 1;
      if (c2 !== CARET) return -1;
      one++;
      two++;
      continue;
    }
    if (c1 === END || c2 === END) break;

    const isNum = isDigit(c1);
    const inSegment = isNum ? isDigit : isAlpha;
    let end1 = one;
    let end2 = two;
    while (end1 < s1.length && inSegment(at(s1, end1))) end1++;
    while (end2 < s2.length && inSegment(at(s2, end2))) end2++;
    // A segment of the other kind (or none) on the right: numbers are newer than letters.
    if (end2 === two) return isNum ? 1 : -1;

    let seg1 = s1.slice(one, end1);
    let seg2 = s2.slice(two, end2);
    if (isNum) {
      seg1 = seg1.replace(/^0+/, '');
      seg2 = seg2.replace(/^0+/, '');
      if (seg1.length !== seg2.length) return seg1.length > seg2.length ? 1 : -1;
    }
    // Segments are ASCII here, so comparing UTF-16 code units is strcmp.
    if (seg1 !== seg2) return seg1 < seg2 ? -1 : 1;
    one = end1;
    two = end2;
  }
  // All segments equal; only separators differed, or one string has segments left.
  if (one >= s1.length && two >= s2.length) return 0;
  return one >= s1.length ? -1 : 1;
}

function cString(s: string): string {
  const nul = s.indexOf('\0');
  return nul === -1 ? s : s.slice(0, nul);
}

/** An `[epoch:]version[-release]` split the way rpm splits it. Undefined parts were absent. */
export interface EVR {
  epoch: string | undefined;
  version: string;
  release: string | undefined;
}

/**
 * rpm's lenient split (`parseEVR` in rpmds.c/rpmver.c): leading digits followed by `:` are the epoch
 * (an empty epoch is `0`), the release is what follows the LAST `-`. Never fails; use
 * `parseVersionRelease` for strings that must be well formed.
 */
export function splitEVR(evr: string): EVR {
  let s = cString(evr);
  let epoch: string | undefined;
  const m = /^(\d*):/.exec(s);
  if (m) {
    epoch = m[1] || '0';
    s = s.slice(m[0].length);
  }
  const dash = s.lastIndexOf('-');
  if (dash === -1) return { epoch, version: s, release: undefined };
  return { epoch, version: s.slice(0, dash), release: s.slice(dash + 1) };
}

/**
 * rpm's `rpmverCmp` (what `rpm.labelCompare` and `rpmdev-vercmp` use): epochs compare with a missing
 * epoch as `0`, then versions, then releases, but only when both sides have a release; a missing
 * release on either side matches any release (so a minimum of `219` means "any 219 build").
 */
export function compareEVR(a: string | EVR, b: string | EVR): Ordering {
  const x = typeof a === 'string' ? splitEVR(a) : a;
  const y = typeof b === 'string' ? splitEVR(b) : b;
  const byEpoch = rpmvercmp(x.epoch ?? '0', y.epoch ?? '0');
  if (byEpoch) return byEpoch;
  const byVersion = rpmvercmp(x.version, y.version);
  if (byVersion) return byVersion;
  if (x.release !== undefined && y.release !== undefined) return rpmvercmp(x.release, y.release);
  return 0;
}

export function formatEVR(v: EVR): string {
  return `${v.epoch !== undefined ? `${v.epoch}:` : ''}${v.version}${v.release !== undefined ? `-${v.release}` : ''}`;
}

// ---------------------------------------------------------------------------------------------
// Reading version strings as found on nodes. These are strict on purpose: a string we cannot read
// with certainty is reported as such, never "fixed" into something plausible.

/** True when a release carries the RHEL/CentOS 7 dist tag (`.el7`, `.el7_9`, ...). */
export function isEl7Release(release: string | undefined): boolean {
  return release !== undefined && /(?:^|[^0-9A-Za-z])el7(?![0-9A-Za-z])/.test(release);
}

// Red Hat's own scheme for an el7 release: N[.N...].el7[_minor][.zstream...], e.g. 62.el7_6.2,
// 73.el7.1, 6.0.1.el7_2.3 (Oracle), 78.el7.centos. A `~` or anything else there is a publisher's
// mangling (219-78.el7~9.7 for 219-78.el7_9.7), and guessing the intended value would be a lie.
const EL7_RELEASE = '[0-9][0-9A-Za-z.]*\\.el7(?:_[0-9]+)?(?:\\.[0-9A-Za-z_]+)*';
const FIELD = '[0-9A-Za-z][0-9A-Za-z._+~^]*';
const FIELD_NO_UNDERSCORE = '[0-9A-Za-z][0-9A-Za-z.+~^]*';
const NOT_EL7 = '(?!(?:[0-9A-Za-z._+~^]*[._+~^])?el7(?![0-9A-Za-z]))';

/**
 * JSON-Schema `pattern` accepting exactly what `parseVersionRelease` accepts (tested to agree), for
 * config values such as `checks.systemd-version.minimum`.
 */
export const VERSION_RELEASE_PATTERN =
  `^(?:[0-9]+:)?(?:${FIELD_NO_UNDERSCORE}|${FIELD}-(?:${EL7_RELEASE}|${NOT_EL7}${FIELD}))$`;

/** A systemd version read from a node. */
export interface InstalledVersion extends EVR {
  /** How the text was written: an rpm `N-V-R[.A]`, a bare `[E:]V[-R]`, or a `systemctl --version` line. */
  form: 'nvra' | 'evr' | 'systemctl';
  /** The text that was read, verbatim. */
  text: string;
  /** Package name (`nvra` only). */
  name?: string;
  /** Package architecture (`nvra` only, when present). */
  arch?: string;
  /** The number systemd itself reports (`systemctl` only): `252` in `systemd 252 (252.19-1~deb12u1)`. */
  upstream?: string;
  /**
   * The distribution's build string in parentheses (`systemctl` only), verbatim. Vendors format it
   * freely (`255.5-3-arch`), so it is split into version and release only when it reads as one.
   */
  packageVersion?: string;
}

/** Either the version, or why the text could not be read with certainty. */
export type VersionReading = { ok: true; value: InstalledVersion } | { ok: false; text: string; error: string };

const unreadable = (text: string, error: string): VersionReading => ({ ok: false, text, error });

/**
 * Reads a strict `[epoch:]version[-release]` (`219-67.el7`, `1:3.10-4`). Rejected, with the reason:
 * characters rpm does not allow, more than one `-`, a field that does not start with a letter or
 * digit, an `_` when there is no `-` (vendors print `219_78.el7_9.9` for `219-78.el7_9.9`, and which
 * `_` was meant is unknowable), and an el7 release not shaped like Red Hat's (`219-78.el7~9.7`).
 */
export function parseVersionRelease(text: string): VersionReading {
  const q = JSON.stringify(text);
  if (text === '') return unreadable(text, 'empty version string');
  if (/\s/.test(text)) return unreadable(text, `${q} contains whitespace`);
  const m = /^(?:(\d+):)?(.*)$/s.exec(text) as RegExpExecArray;
  const epoch = m[1];
  const rest = m[2] as string;
  const bad = /[^0-9A-Za-z._+~^-]/.exec(rest);
  if (bad) return unreadable(text, `${q} contains ${JSON.stringify(bad[0])}, which rpm does not allow in a version or release`);
  const parts = rest.split('-');
  if (parts.length > 2) return unreadable(text, `${q} has more than one "-", so version and release cannot be told apart`);
  const [version, release] = parts as [string, string | undefined];
  for (const [what, field] of [['version', version], ['release', release]] as const) {
    if (field !== undefined && !/^[0-9A-Za-z]/.test(field)) {
      return unreadable(text, `${q}: the ${what} ${JSON.stringify(field)} must start with a letter or digit`);
    }
  }
  if (release === undefined && version.includes('_')) {
    return unreadable(text, `${q} has "_" but no "-": published strings sometimes write "_" for "-" (219_78.el7_9.9), so version and release cannot be told apart`);
  }
  if (isEl7Release(release) && !new RegExp(`^${EL7_RELEASE}$`).test(release as string)) {
    return unreadable(text, `${q}: the release ${JSON.stringify(release)} names el7 but is not shaped like a RHEL 7 release (N.el7[_M][.K]); it looks mangled`);
  }
  return { ok: true, value: { form: 'evr', text, epoch, version, release } };
}

// Architectures rpm -q may print after the release. A last segment not listed here is taken as part
// of the release, which is what it is on every distribution we know.
const ARCHES = new Set([
  'noarch', 'x86_64', 'x86_64_v2', 'x86_64_v3', 'i386', 'i486', 'i586', 'i686', 'athlon', 'aarch64',
  'armv6hl', 'armv7hl', 'armv7hnl', 'armv7l', 'ppc', 'ppc64', 'ppc64le', 'ppc64p7', 's390', 's390x',
  'riscv64', 'loongarch64', 'ia64', 'mips64el', 'sparc64',
]);

/**
 * Reads an rpm package label `name-version-release[.arch]` as `rpm -q` prints it
 * (`systemd-219-62.el7_6.2.x86_64`), or a package file name ending in `.rpm`. The version and release
 * obey `parseVersionRelease`.
 */
export function parseNVRA(text: string): VersionReading {
  const q = JSON.stringify(text);
  if (/\s/.test(text)) return unreadable(text, `${q} contains whitespace`);
  let rest = text;
  let arch: string | undefined;
  const file = /^(.*)\.([0-9A-Za-z_]+)\.rpm$/.exec(rest);
  if (file && ARCHES.has(file[2] as string)) {
    rest = file[1] as string;
    arch = file[2];
  } else if (rest.endsWith('.rpm')) {
    return unreadable(text, `${q} looks like a package file but has no known architecture before ".rpm"`);
  } else {
    const dot = rest.lastIndexOf('.');
    if (dot !== -1 && ARCHES.has(rest.slice(dot + 1))) {
      arch = rest.slice(dot + 1);
      rest = rest.slice(0, dot);
    }
  }
  const parts = rest.split('-');
  if (parts.length < 3) return unreadable(text, `${q} is not a package label name-version-release`);
  const release = parts.pop() as string;
  const version = parts.pop() as string;
  const name = parts.join('-');
  if (!/^[A-Za-z][0-9A-Za-z._+-]*$/.test(name)) return unreadable(text, `${q}: ${JSON.stringify(name)} is not a package name`);
  const vr = parseVersionRelease(`${version}-${release}`);
  if (!vr.ok) return unreadable(text, `${q}: ${vr.error}`);
  return { ok: true, value: { ...vr.value, form: 'nvra', text, name, ...(arch ? { arch } : {}) } };
}

/**
 * Reads the first line of `systemctl --version`: `systemd 219` (RHEL/CentOS 7 prints no build string)
 * or `systemd 252 (252.19-1~deb12u1)`. When the build string reads as `version-release` its parts are
 * used; otherwise the version is the upstream number and the release unknown. A build string naming
 * el7 must read cleanly, since the el7 rule depends on it.
 */
export function parseSystemctlVersionLine(text: string): VersionReading {
  const q = JSON.stringify(text);
  const m = /^systemd (\d+)(?: \(([^\s()]+)\))?$/.exec(text);
  if (!m) return unreadable(text, `${q} is not a "systemctl --version" line ("systemd N" or "systemd N (BUILD)")`);
  const upstream = m[1] as string;
  const packageVersion = m[2];
  const base: InstalledVersion = { form: 'systemctl', text, epoch: undefined, version: upstream, release: undefined, upstream };
  if (packageVersion === undefined) return { ok: true, value: base };
  const vr = parseVersionRelease(packageVersion);
  if (vr.ok) {
    return { ok: true, value: { ...base, version: vr.value.version, release: vr.value.release, epoch: vr.value.epoch, packageVersion } };
  }
  if (/(?:^|[^0-9A-Za-z])el7(?![0-9A-Za-z])/.test(packageVersion)) return unreadable(text, `${q}: ${vr.error}`);
  return { ok: true, value: { ...base, packageVersion } };
}

/**
 * Reads one systemd version string in any of the forms a node shows: a `systemctl --version` first
 * line, an rpm package label, or a bare `[epoch:]version[-release]`.
 */
export function parseSystemdVersion(text: string): VersionReading {
  if (text.startsWith('systemd ')) return parseSystemctlVersionLine(text);
  if (/^[A-Za-z][^:]*-/.test(text)) return parseNVRA(text);
  return parseVersionRelease(text);
}
