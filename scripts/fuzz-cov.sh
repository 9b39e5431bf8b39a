#!/usr/bin/env bash
# fuzz-cov.sh: builds the coverage-guided fuzz targets (fuzz/, docs/reliability.md#fuzzing) on
# the pinned stable toolchain and runs each for FUZZ_SECONDS (default 30) from its corpus:
# the committed one, fuzz/corpus/<target>/ (named seeds, regression inputs, and the smallest
# inputs of the full corpus), and the full one, fuzz/corpus-full/<target>/, when an earlier
# FUZZ_MERGE=1 run left it (not committed). New inputs go to fuzz/corpus-new/<target>/.
# FUZZ_MERGE=1 then minimises all of them (libFuzzer -merge=1) into corpus-full, and refills the
# committed corpus: seeds and regressions, then the smallest inputs of the full corpus up to
# FUZZ_CORPUS_BYTES (16 KiB; 32 KiB for tar layers), so the repository stays small.
# FUZZ_SECONDS=0 with FUZZ_MERGE=1 only merges. A crash or a broken property fails the run;
# libFuzzer keeps the input in fuzz/artifacts/<target>/ (replay: cargo fuzz run --sanitizer
# none <target> <file>, or the target's binary and the file).
#
# FUZZ_TARGETS="a b" runs only those; FUZZ_ARGS adds libFuzzer options; FUZZ_TMPDIR sets where
# targets write their temporary files (default /dev/shm when writable). Needs cargo-fuzz
# (installed from crates.io when missing). Stable Rust has no -Zsanitizer, so the targets run
# without AddressSanitizer (`--sanitizer none`); every crate they reach forbids `unsafe`.
# Prints one line per target: runs, runs/s, coverage at the end (cov: edges, ft: features),
# and the committed corpus with the coverage it alone reaches.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

FUZZ_SECONDS="${FUZZ_SECONDS:-30}"
CARGO_FUZZ_VERSION=0.13.2
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz-cov: installing cargo-fuzz $CARGO_FUZZ_VERSION" >&2
  cargo install --locked --version "$CARGO_FUZZ_VERSION" cargo-fuzz
fi
targets="${FUZZ_TARGETS:-$(cargo fuzz list)}"
# Layer extraction and the servers file write temporary files on every run: on tmpfs when the
# machine has one, ten times faster than a loaded disk.
if [ -z "${FUZZ_TMPDIR:-}" ] && [ -d /dev/shm ] && [ -w /dev/shm ]; then FUZZ_TMPDIR=/dev/shm; fi
export TMPDIR="${FUZZ_TMPDIR:-${TMPDIR:-/tmp}}"
build=(--sanitizer none)

cargo fuzz build "${build[@]}"

# Per-target libFuzzer options: tar layers need room, and their extraction a memory ceiling.
options() {
  case "$1" in
    layer_extraction) echo "-max_len=16384 -rss_limit_mb=512" ;;
    index_verify | index_document) echo "-max_len=8192" ;;
    *) echo "-max_len=4096" ;;
  esac
}

# The committed corpus's byte budget per target.
budget() {
  case "$1" in
    layer_extraction) echo "${FUZZ_CORPUS_BYTES:-32768}" ;;
    *) echo "${FUZZ_CORPUS_BYTES:-16384}" ;;
  esac
}

# Refills corpus/$1 from corpus-full/$1: named seeds and regressions first, then the smallest
# inputs while they fit the budget.
refill() {
  local t="$1" keep used size f
  keep="$(mktemp -d corpus-keep.XXXXXX)"
  find "corpus/$t" -type f \( -name 'seed-*' -o -name 'regression-*' \) -exec cp {} "$keep/" \;
  used="$(find "$keep" -type f -printf '%s\n' | awk '{s+=$1} END {print s+0}')"
  while read -r size f; do
    if ((used + size > $(budget "$t"))); then break; fi
    cp "$f" "$keep/"
    used=$((used + size))
  done < <(find "corpus-full/$t" -type f -printf '%s %p\n' | sort -n)
  rm -rf "corpus/$t" && mv "$keep" "corpus/$t" && chmod 755 "corpus/$t"
}

summary=()
for t in $targets; do
  mkdir -p "corpus/$t" "corpus-new/$t" "corpus-full/$t"
  log="corpus-new/$t.log"
  : >"$log"
  runs=- rate=- cov=- ft=-
  if [ "$FUZZ_SECONDS" != 0 ]; then
    # shellcheck disable=SC2046
    if ! cargo fuzz run "${build[@]}" "$t" "corpus-new/$t" "corpus/$t" "corpus-full/$t" -- \
        -max_total_time="$FUZZ_SECONDS" -timeout=10 -print_final_stats=1 \
        $(options "$t") ${FUZZ_ARGS:-} >"$log" 2>&1; then
      tail -n 40 "$log"
      echo "fuzz-cov: $t FAILED; the input is in fuzz/artifacts/$t/ (log: fuzz/$log)" >&2
      exit 1
    fi
    runs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")"
    done_line="$(grep -a 'DONE ' "$log" | tail -n 1)"
    cov="$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$done_line")"
    ft="$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$done_line")"
    rate="$(sed -n 's/.* exec\/s: \([0-9]*\).*/\1/p' <<<"$done_line")"
  fi
  if [ "${FUZZ_MERGE:-0}" = 1 ]; then
    rm -rf "corpus-merged/$t" && mkdir -p "corpus-merged/$t"
    # shellcheck disable=SC2046
    cargo fuzz run "${build[@]}" "$t" "corpus-merged/$t" "corpus-full/$t" "corpus/$t" \
      "corpus-new/$t" -- -merge=1 $(options "$t") >>"$log" 2>&1
    rm -rf "corpus-full/$t" && mv "corpus-merged/$t" "corpus-full/$t" && rm -rf "corpus-new/$t"
    refill "$t"
  fi
  # What the committed corpus alone covers (libFuzzer reads it and stops).
  # shellcheck disable=SC2046
  start="$(cargo fuzz run "${build[@]}" "$t" "corpus/$t" -- -runs=0 $(options "$t") 2>&1 |
    grep -a 'INITED' | tail -n 1 || true)"
  start_cov="$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$start")"
  start_ft="$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$start")"
  files="$(find "corpus/$t" -type f | wc -l)"
  bytes="$(find "corpus/$t" -type f -printf '%s\n' | awk '{s+=$1} END {print s+0}')"
  summary+=("$(printf '%-17s %9s runs %7s/s  end cov: %-5s ft: %-6s | committed: %4s files %7s bytes, cov: %-5s ft: %s' \
    "$t" "$runs" "$rate" "$cov" "$ft" "$files" "$bytes" "$start_cov" "$start_ft")")
done
printf 'fuzz-cov (%s s per target):\n' "$FUZZ_SECONDS"
printf '  %s\n' "${summary[@]}"
