#!/usr/bin/env bash
# Issue 11 asks that every fleet fault reproduced by hand (its items 1-10) be a test that failed before
# the change. Each patch in test/failed-before/ puts one old behaviour back into today's code (the
# smallest change that does what the old code did); this script applies it to a clean copy of HEAD,
# builds it, runs the test that proves the guarantee, and records whether that test fails, as it must.
# A patch that no longer applies or builds is reported as such, never counted as a failing test.
#
#   bash scripts/failed-before.sh [CASE ...]      # all cases, or those whose name starts with CASE
#
# Writes test/failed-before/RESULTS.md (or $FAILED_BEFORE_OUT). Takes 30-60 minutes: it is evidence
# for a review, not part of `npm test` (which proves that the same tests pass with the fixes).
set -uo pipefail
root=$(git rev-parse --show-toplevel)
dir="$root/test/failed-before"
out="${FAILED_BEFORE_OUT:-$dir/RESULTS.md}"
head=$(git -C "$root" rev-parse --short=12 HEAD)

# case name | issue 11 item | test files (space-separated)
cases=(
  "01-lease-expires-during-reboot|1: two nodes reboot at once|test/fleet-reboot.test.ts"
  "02-api-outage-counts-against-recovery|2: an API outage after the boot leaves the node cordoned|test/fleet-reboot.test.ts"
  "03a-stop-waits-for-the-remediator-first|3: stop during a drain|test/lifecycle-drain.test.ts"
  "03b-reloads-overlap|3: two SIGHUPs run two reloads at once|test/lifecycle-reload-storm.test.ts"
  "04-cli-reboot-ignores-sighup|4: nodemedic reboot ended by SIGHUP|test/fleet-cli.test.ts"
  "05-wall-clock-intervals|5: wall-clock time for in-process intervals|test/lifecycle-clock.test.ts"
  "06-lease-renewal-no-retry|6: one transient error while renewing the Lease|test/k8s-lease.test.ts"
  "07-runtime-restart-no-storm-guard|7: runtime restarts not gated by the storm guard|test/k8s-fleet-races.test.ts"
  "08-orphan-cordon-only-reported|8: a cordon applied late leaves an orphan|test/k8s-fleet-races.test.ts"
  "09-guards-before-the-slot|9: the guards are checked before the slot is taken|test/k8s-fleet-races.test.ts"
  "10-refusal-not-retried|10: a refused drain-reboot is never retried|test/ladder-decide.test.ts test/fleet-reboot.test.ts"
)

selected() {
  local name=$1
  shift
  [ $# -eq 0 ] && return 0
  for want in "$@"; do [[ "$name" == "$want"* ]] && return 0; done
  return 1
}

scratch=$(mktemp -d)
trap 'git -C "$root" worktree prune; rm -rf "$scratch"' EXIT
rows=()
status=0
for c in "${cases[@]}"; do
  IFS='|' read -r name item tests <<<"$c"
  selected "$name" "$@" || continue
  wt="$scratch/$name"
  log="$scratch/$name.log"
  git -C "$root" worktree add --detach -q "$wt" HEAD
  ln -s "$root/node_modules" "$wt/node_modules"
  started=$(date +%s)
  if ! git -C "$wt" apply "$dir/$name.patch" 2>"$log"; then
    verdict="patch no longer applies"; status=1
  elif ! (cd "$wt" && npx tsc -p tsconfig.json) >>"$log" 2>&1; then
    verdict="does not build"; status=1
  else
    # shellcheck disable=SC2086
    (cd "$wt" && timeout 1800 npx tap --reporter=tap $tests) >>"$log" 2>&1
    rc=$?
    failing=$(grep -cE '^\s*not ok ' "$log")
    first=$(grep -m1 -E '^\s+not ok ' "$log" | sed -E 's/^\s+//; s/\|/\\|/g' | cut -c1-160)
    if [ "$rc" -ne 0 ] && [ "$failing" -gt 0 ]; then
      verdict="fails, as it must ($failing failing assertions; first: \`$first\`)"
    else
      verdict="**passes: the test does not catch this fault**"; status=1
    fi
  fi
  secs=$(($(date +%s) - started))
  echo "$name: $verdict (${secs}s)" >&2
  rows+=("| $item | \`test/failed-before/$name.patch\` | \`$tests\` | $verdict | ${secs}s | \`$head\` $(date -u +%Y-%m-%d) |")
  git -C "$root" worktree remove --force "$wt"
done
[ ${#rows[@]} -gt 0 ] || { echo "failed-before: no case matches $*" >&2; exit 2; }

# A run of some cases replaces their rows and keeps the others' (each row names its commit and date).
kept=()
if [ -f "$out" ]; then
  while IFS= read -r line; do
    name=$(sed -nE 's/^\| [^|]+ \| `test\/failed-before\/([^`]+)\.patch`.*/\1/p' <<<"$line")
    [ -n "$name" ] || continue
    printf '%s\n' "${rows[@]}" | grep -qF "failed-before/$name.patch" || kept+=("$line")
  done <"$out"
fi
{
  echo "# The fleet faults of issue 11, each caught by its test"
  echo
  echo "Produced by \`bash scripts/failed-before.sh [CASE ...]\`: each row from the run at the commit it names, the patch applied to that commit."
  echo "Each patch puts one old behaviour back; with it, the test named must fail. Without the patches, \`npm test\` runs the same tests and they pass."
  echo
  echo "| issue 11 item | old behaviour put back | test | with the patch | time | run at |"
  echo "|---|---|---|---|---|---|"
  printf '%s\n' "${kept[@]}" "${rows[@]}" | grep . | sort -t'`' -k2,2
} >"$out"
echo "wrote $out" >&2
exit $status
