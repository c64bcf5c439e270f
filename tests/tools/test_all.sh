#!/usr/bin/env bash
# `make test`: deps, then the lint (rustfmt, clippy), unit, regress (without and with the library preloaded), dates
# (the clock-dependent tests at awkward moments) and integration layers (each runs even if an
# earlier one failed), then stops the test cluster. Counts individual tests per layer
# (a layer that fails without reporting a failed test counts as one failure) and ends
# with the line "N passed, N failed".
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
MAKE=${MAKE:-make}
logs=$(mktemp -d)
trap 'for c in test preload dates; do tests/tools/cluster.sh stop $c >/dev/null 2>&1 || true; done; rm -rf "$logs"' EXIT

if ! "$MAKE" deps; then echo "deps failed"; echo "0 passed, 1 failed"; exit 1; fi

# count LAYER LOG RC -> prints "PASSED FAILED" for that layer's output
count() {
  local log=$1 rc=$2 p=0 f=0 line
  case $3 in
    unit) # cargo test: "test result: ok. 3 passed; 0 failed; ..."
      while read -r line; do
        p=$((p + $(sed -E 's/.* ([0-9]+) passed.*/\1/' <<<"$line")))
        f=$((f + $(sed -E 's/.* ([0-9]+) failed.*/\1/' <<<"$line")))
      done < <(sed 's/\x1b\[[0-9;]*m//g' "$log" | grep -E '^test result: .* [0-9]+ passed; [0-9]+ failed' || true) ;;
    regress|regress-preload) # pg_regress: " All 3 tests passed. " or " 1 of 3 tests failed. "
      if line=$(grep -oE 'All [0-9]+ tests passed' "$log"); then p=$(grep -oE '[0-9]+' <<<"$line")
      elif line=$(grep -oE '[0-9]+ of [0-9]+ tests failed' "$log"); then
        read -r f _ t _ <<<"$line"; p=$((t - f))
      fi ;;
    integration|dates|lint) # run.sh, dates.sh, make lint: "N passed, N failed[, N skipped]"
      if line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$log" | tail -n 1); then
        p=${line%% *}; f=$(sed -E 's/^[0-9]+ passed, ([0-9]+) failed.*/\1/' <<<"$line")
      fi ;;
  esac
  if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
  echo "$p $f"
}

total_p=0 total_f=0 summary=()
for layer in lint unit regress regress-preload dates integration; do
  echo "======== make $layer"
  # installs rewrite the extension's .so in place: never under a running test cluster
  for c in test preload dates; do tests/tools/cluster.sh stop $c >/dev/null 2>&1 || true; done
  rc=0
  "$MAKE" "$layer" 2>&1 | tee "$logs/$layer" || rc=${PIPESTATUS[0]}
  read -r p f < <(count "$logs/$layer" "$rc" "$layer")
  summary+=("$layer: $p passed, $f failed")
  total_p=$((total_p + p)) total_f=$((total_f + f))
done

echo "======== summary"
printf '  %s\n' "${summary[@]}"
echo "$total_p passed, $total_f failed"
[ "$total_f" -eq 0 ]
