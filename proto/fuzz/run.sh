#!/bin/sh
# proto/fuzz/run.sh BUILD_DIR SECONDS — runs every libFuzzer target for SECONDS each.
#
# A target fuzz_<name> (built in BUILD_DIR/proto/fuzz/ with -Dfuzz=true) runs on a copy of
# its committed seed corpus proto/fuzz/corpus/<name>/ in a temporary directory, so the
# committed corpus never changes. A crash, leak, sanitizer report or timeout fails the run;
# the input that caused it is kept in BUILD_DIR/fuzz-artifacts/<name>/ (reproduce with
# BUILD_DIR/proto/fuzz/fuzz_<name> FILE). Used by `make fuzz-smoke` and `make fuzz`.
set -eu

if [ $# -ne 2 ]; then
  echo "usage: $0 BUILD_DIR SECONDS" >&2
  exit 2
fi
build=$1
seconds=$2
here=$(cd "$(dirname "$0")" && pwd)

work=$(mktemp -d "${TMPDIR:-/tmp}/tuma-fuzz.XXXXXX")
trap 'rm -rf "$work"' EXIT
trap 'exit 130' INT TERM

failed=""
ran=0
for seeds in "$here"/corpus/*/; do
  name=$(basename "$seeds")
  bin="$build/proto/fuzz/fuzz_$name"
  if [ ! -x "$bin" ]; then
    echo "fuzz: $bin is missing (configure with -Dfuzz=true and build it)" >&2
    exit 1
  fi
  corpus="$work/$name"
  artifacts="$build/fuzz-artifacts/$name"
  mkdir -p "$corpus" "$artifacts"
  cp "$seeds"* "$corpus"/
  echo "fuzz: fuzz_$name for ${seconds}s on $(ls "$corpus" | wc -l) seeds"
  # -max_len: every target reads network input in small pieces; 4 KiB is plenty to reach
  # every state. -timeout: one input taking 10 s is a hang.
  if ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}" \
     UBSAN_OPTIONS="${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}" \
     "$bin" -max_total_time="$seconds" -max_len=4096 -timeout=10 -rss_limit_mb=2048 \
       -print_final_stats=1 -artifact_prefix="$artifacts/" "$corpus" \
       >"$work/$name.log" 2>&1; then
    grep -E '^(#[0-9]+.*DONE|stat::number_of_executed_units|stat::new_units_added)' \
      "$work/$name.log" || true
  else
    tail -n 60 "$work/$name.log" >&2
    echo "fuzz: fuzz_$name FAILED; the input is in $artifacts/" >&2
    failed="$failed fuzz_$name"
  fi
  ran=$((ran + 1))
done

if [ "$ran" -eq 0 ]; then
  echo "fuzz: no corpus directories in $here/corpus" >&2
  exit 1
fi
if [ -n "$failed" ]; then
  echo "fuzz: failed:$failed" >&2
  exit 1
fi
echo "fuzz: $ran target(s) ran ${seconds}s each without a finding"
