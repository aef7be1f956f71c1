#!/bin/sh
# run.sh — the benchmark set of bench/RESULTS.md (`make bench`): raw fsync rate, the durable
# ledger at 10,000 accounts and batches of 8190 (uniform, hot, random ids), the ledger one
# transfer per commit, and the PostgreSQL peer; then a table with the bars of DESIGN §6; then the
# switch end to end and the disbursement runs (issue 5) with their bars.
# Takes about five to ten minutes. Every run's JSON line is kept in --out.
#
#   bench/run.sh [--build DIR] [--tmpdir DIR] [--out FILE] [--pg-seconds N] [--quick]
#
# --quick shrinks every run (smoke test of the script; its figures are not bar figures).
# Exit status: 0 when every run succeeded and every bar held, 1 otherwise, 2 on bad usage.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
build=${BUILD_DIR:-$repo/build}
tmpbase=${TMPDIR:-/tmp}
[ -n "$tmpbase" ] || tmpbase=/tmp
out=""
pg_seconds=30
quick=0

die_usage() {
  echo "run.sh: $*" >&2
  exit 2
}
while [ $# -gt 0 ]; do
  case "$1" in
    --build) [ $# -ge 2 ] || die_usage "$1 needs a value"; build=$2; shift 2 ;;
    --tmpdir) [ $# -ge 2 ] || die_usage "$1 needs a value"; tmpbase=$2; shift 2 ;;
    --out) [ $# -ge 2 ] || die_usage "$1 needs a value"; out=$2; shift 2 ;;
    --pg-seconds)
      [ $# -ge 2 ] || die_usage "$1 needs a value"
      case "$2" in '' | *[!0-9]*) die_usage "$1: '$2' is not a whole number" ;; esac
      if [ "${#2}" -gt 5 ] || [ "$2" -lt 1 ]; then die_usage "$1: $2 is out of range [1, 99999]"; fi
      pg_seconds=$2; shift 2 ;;
    --quick) quick=1; shift ;;
    -h | --help) sed -n '2,10s/^# \{0,1\}//p' "$0"; exit 0 ;;
    *) die_usage "unknown option '$1'" ;;
  esac
done
[ -n "$out" ] || out=$build/bench-ledger.jsonl

# Build (only the benchmark target, so unrelated work in progress cannot block it).
if [ ! -f "$build/build.ninja" ]; then
  meson setup "$build" "$repo" >/dev/null
fi
ninja -C "$build" bench/tuma-bench >/dev/null
tb=$build/bench/tuma-bench

transfers=2000000
b1_transfers=2000
fsync_count=5000
if [ "$quick" -eq 1 ]; then
  transfers=100000
  b1_transfers=200
  fsync_count=500
  pg_seconds=3
fi

: >"$out"
failed=0
missed=0

# Field of a one-line JSON object: get KEY FILE (numbers and strings, unquoted).
get() { sed -n "s/.*\"$1\":\"\{0,1\}\([^,\"}]*\).*/\1/p" "$2" | head -n 1; }
segs() { sed -n 's/.*"segments_per_sec":\[\([^]]*\)\].*/\1/p' "$1" | tr ',' ' '; }
# run NAME CMD…: one benchmark, its JSON line to $tmp/NAME.json and $out
run() {
  name=$1
  shift
  if [ "$1" = L ]; then
    shift
    echo "run.sh: $name: tuma-bench ledger --accounts 10000 --transfers $transfers --batch 8190 --tmpdir $tmpbase --json $*" >&2
    set -- L "$@"
  else
    echo "run.sh: $name: $*" >&2
  fi
  if "$@" >"$tmp/$name.json" 2>"$tmp/$name.err"; then
    cat "$tmp/$name.json" >>"$out"
  else
    echo "run.sh: $name FAILED (exit $?):" >&2
    cat "$tmp/$name.err" "$tmp/$name.json" >&2
    cat "$tmp/$name.json" >>"$out"
    failed=$((failed + 1))
  fi
}
ge() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a != "" && a + 0 >= b + 0) }'; }
fmt() { awk -v a="$1" 'BEGIN { if (a == "") print "-"; else printf "%.0f", a }'; }

tmp=$(mktemp -d "$tmpbase/tuma-bench-run.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP
trap 'exit 141' PIPE

cpu=$(lscpu | sed -n 's/^Model name: *//p' | head -n 1)
fs=$(df -T "$tmpbase" | awk 'NR == 2 { print $2 " on " $1 }')
# Other work on the machine skews every figure here: record the load at the start.
load=$(cut -d ' ' -f 1-3 /proc/loadavg)
# Which ledger was measured: the commit, marked when ledger/ has uncommitted changes.
commit=$(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)
if [ -n "$(git -C "$repo" status --porcelain -- ledger 2>/dev/null)" ]; then
  commit="$commit+ledger-uncommitted"
fi
printf '{"bench":"machine","nproc":%s,"cpu":"%s","kernel":"%s","tmpdir":"%s","fs":"%s","loadavg":"%s","commit":"%s"}\n' \
  "$(nproc)" "$cpu" "$(uname -r)" "$tmpbase" "$fs" "$load" "$commit" >>"$out"

L() { "$tb" ledger --accounts 10000 --transfers "$transfers" --batch 8190 --tmpdir "$tmpbase" --json "$@"; }
run fsync "$tb" fsync --count "$fsync_count" --tmpdir "$tmpbase" --json
# The I/O of one LMDB commit as strace shows it for a one-transfer batch of this ledger: about
# 11 scattered 4 KiB pages, fdatasync, then the meta page through an O_DSYNC descriptor.
run commitio "$tb" fsync --count "$b1_transfers" --pages 11 --meta --tmpdir "$tmpbase" --json
run default L
run hot L --hot-accounts 10 --hot-percent 90
run random L --ids random
run batch1 "$tb" ledger --accounts 10000 --transfers "$b1_transfers" --batch 1 \
  --tmpdir "$tmpbase" --json
ledger_tps=$(get transfers_per_sec "$tmp/default.json")
run postgres "$here/peer_postgres.sh" --accounts 10000 --seconds "$pg_seconds" --clients 16 \
  --jobs 2 --tmpdir "$tmpbase" --json ${ledger_tps:+--ledger-tps "$ledger_tps"}

fsync_rate=$(get fsyncs_per_sec "$tmp/fsync.json")
half_fsync=$(awk -v a="$fsync_rate" 'BEGIN { if (a != "") printf "%.1f", a / 2 }')

verdict() { # verdict VALUE BAR: V=PASS/FAIL/- (not in a subshell: it counts misses)
  if [ -z "$2" ]; then
    V="-"
  elif ge "$1" "$2"; then
    V=PASS
  else
    missed=$((missed + 1))
    V=FAIL
  fi
}

echo
echo "machine: $(nproc) cores, $cpu, kernel $(uname -r), temp folder $tmpbase ($fs)"
echo "load average at the start: $load; at the end: $(cut -d ' ' -f 1-3 /proc/loadavg)"
echo "code: $commit"
[ "$quick" -eq 1 ] && echo "QUICK MODE: reduced runs, not bar figures"
echo
printf '%-22s %14s %10s %10s %8s %14s %6s %8s\n' "run" "transfers/s" "p50 ms" "p99 ms" "errors" "bar" "ok" "others"
row() { # row NAME LABEL BAR
  f=$tmp/$1.json
  tps=$(get transfers_per_sec "$f")
  verdict "$tps" "$3"
  v=$V
  inv=$(get invariants "$f")
  if [ "$inv" != ok ]; then
    v="$v/inv:${inv:-?}"
    missed=$((missed + 1))
  fi
  printf '%-22s %14s %10s %10s %8s %14s %6s %8s\n' "$2" "$(fmt "$tps")" "$(get batch_p50_ms "$f")" \
    "$(get batch_p99_ms "$f")" "$(get errors "$f")" "${3:+>= $(fmt "$3")}" "$v" \
    "$(fmt "$(get cpu_other_pct "$f")")%"
}
row default "batch 8190" 300000
row hot "  hot 10 @ 90%" 250000
row random "  ids random" ""
row batch1 "batch 1" "$half_fsync"
printf '%-22s %14s %10s %10s %8s %14s %6s %8s\n' "fsync (4 KiB)" "$(fmt "$fsync_rate")/s" \
  "$(get p50_ms "$tmp/fsync.json")" "$(get p99_ms "$tmp/fsync.json")" "" "" "" \
  "$(fmt "$(get cpu_other_pct "$tmp/fsync.json")")%"
printf '%-22s %14s %10s %10s %8s %14s %6s %8s\n' "commit-shaped I/O" \
  "$(fmt "$(get rounds_per_sec "$tmp/commitio.json")")/s" "$(get p50_ms "$tmp/commitio.json")" \
  "$(get p99_ms "$tmp/commitio.json")" "" "" "" "$(fmt "$(get cpu_other_pct "$tmp/commitio.json")")%"
pg_tps=$(get transfers_per_sec "$tmp/postgres.json")
ratio=$(get ratio "$tmp/postgres.json")
verdict "$ratio" 20
printf '%-22s %14s %10s %10s %8s %14s %6s %8s\n' "postgres peer" "$(fmt "$pg_tps")" \
  "avg $(get latency_avg_ms "$tmp/postgres.json")" "" "$(get failed "$tmp/postgres.json")" \
  ">= 20x" "$V" "$(fmt "$(get cpu_other_pct "$tmp/postgres.json")")%"
echo
echo "random ids, per 500,000 transfers: $(segs "$tmp/random.json") transfers/s"
echo "time ids,   per 500,000 transfers: $(segs "$tmp/default.json") transfers/s"
echo "ledger / postgres: ${ratio:-?}x (postgres: pgbench -c 16 -j 2 -T $pg_seconds)"
echo "batch 1 bar: half the raw fsync rate = $(fmt "$half_fsync") transfers/s; the raw I/O of an"
echo "  LMDB commit (11 pages + fdatasync + O_DSYNC meta page) alone runs at $(fmt "$(get rounds_per_sec "$tmp/commitio.json")")/s"
echo "data directory after $transfers transfers: $(get db_bytes "$tmp/default.json") bytes (time ids), $(get db_bytes "$tmp/random.json") bytes (random ids)"
echo "others: CPU used by everything else during the timed phase, % of one core. It includes the"
echo "        kernel's I/O work caused by the run itself (about 15-20% for the fsync runs on the"
echo "        machine of RESULTS.md, more for random ids); well above that, the machine was shared."
echo "JSON lines: $out"

# Switch end to end (issue 4, bench/RESULTS.md): tumad with its durable ledger on this machine,
# 2 operators paying each other over mTLS; closed loop (--max, 1 connection each, window 160)
# and open loop at 5,000 transfers/s (4 connections each). About 35 s (12 s with --quick).
sw_seconds=10
[ "$quick" -eq 1 ] && sw_seconds=3
run switch_max "$tb" switch --duration "$sw_seconds" --max --connections 1 --window 160 --tmpdir "$tmpbase" --json
run switch_rate "$tb" switch --duration "$sw_seconds" --rate 5000 --tmpdir "$tmpbase" --json
lt() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a != "" && a + 0 < b + 0) }'; }
swrow() { # swrow NAME LABEL MIN_TPS MAX_P99_MS
  f=$tmp/$1.json
  tps=$(get transfers_per_sec "$f")
  p99=$(get p99_ms "$f")
  v=PASS
  if { [ -n "$3" ] && ! ge "$tps" "$3"; } || ! lt "$p99" "$4"; then v=FAIL; fi
  [ "$(get ledger_ok "$f")" = true ] || v="$v/ledger"
  [ "$v" = PASS ] || missed=$((missed + 1))
  printf '%-22s %14s %10s %10s %8s %14s %6s %8s\n' "$2" "$(fmt "$tps")" "$(get p50_ms "$f")" \
    "$p99" "$(get errors "$f")" "${3:+>= $(fmt "$3"), }p99 < $4" "$v" \
    "$(fmt "$(get cpu_other_pct "$f")")%"
}
echo
echo "switch end to end (tumad, durable ledger; tumad CPU $(fmt "$(get tumad_cpu_pct "$tmp/switch_max.json")")% / bench CPU $(fmt "$(get bench_cpu_pct "$tmp/switch_max.json")")% of one core at --max)"
swrow switch_max "switch --max" 20000 25
swrow switch_rate "switch --rate 5000" "" 5

# Disbursements (issue 5, bench/RESULTS.md): tumad + 2 tuma-opsim payees + the tuma CLI from this
# build. 1,000,000 list rows validated (--validate-only, bar < 10 s) and 100,000 beneficiaries from
# submit to all paid (bar < 30 s; paid_twice = 0 always). Uploads in 1 MiB requests (the CLI's
# default of 32 KiB is ~3x slower), the batch at --rate 10000. About 2-4 minutes on a quiet
# machine (--quick: 100,000 rows and 10,000 beneficiaries, 20 s).
ds_rows=1000000
ds_pay=100000
if [ "$quick" -eq 1 ]; then
  ds_rows=100000
  ds_pay=10000
fi
run disburse_validate "$tb" disburse --beneficiaries "$ds_rows" --validate-only --wallets-from list \
  --chunk-bytes 1048576 --tmpdir "$tmpbase" --json
run disburse_pay "$tb" disburse --beneficiaries "$ds_pay" --rate 10000 --chunk-bytes 1048576 \
  --tmpdir "$tmpbase" --json
echo
echo "disbursements (tumad + 2 tuma-opsim payees; seconds, bench's clock)"
printf '%-34s %10s %12s %10s %8s %12s %6s %8s\n' "run" "seconds" "per second" "paid" "failed" "bar" "ok" "others"
f=$tmp/disburse_validate.json
vs=$(get validate_seconds "$f")
v=PASS
lt "$vs" 10 || v=FAIL
[ "$(get ok "$f")" = true ] || v="$v/run"
[ "$v" = PASS ] || missed=$((missed + 1))
printf '%-34s %10s %12s %10s %8s %12s %6s %8s\n' "validate $ds_rows rows" "$vs" \
  "$(fmt "$(get rows_per_second_validate "$f")")" "" "" "< 10 s" "$v" \
  "$(fmt "$(get cpu_other_pct_validate "$f")")%"
f=$tmp/disburse_pay.json
ps=$(get submit_to_paid_seconds "$f")
v=PASS
lt "$ps" 30 || v=FAIL
[ "$(get paid_twice "$f")" = 0 ] || v="$v/paid_twice"
[ "$(get ok "$f")" = true ] || v="$v/run"
[ "$v" = PASS ] || missed=$((missed + 1))
printf '%-34s %10s %12s %10s %8s %12s %6s %8s\n' "$ds_pay paid (submit to all paid)" "$ps" \
  "$(fmt "$(get paid_per_second "$f")")" "$(get paid "$f")" "$(get failed "$f")" \
  "< 30 s, x2=0" "$v" "$(fmt "$(get cpu_other_pct_execute "$f")")%"
echo "  paid twice: $(get paid_twice "$f"); validate $(get validate_seconds "$f") s + execute $(get execute_seconds "$f") s"
# Audit (issue 6, bench/RESULTS.md): `tuma audit verify` (chain, checkpoints, replay, compare)
# on a ledger of 5,000,000 events, in events/s. About 30 s (a few with --quick).
au_events=5000000
[ "$quick" -eq 1 ] && au_events=200000
run audit "$tb" audit --events "$au_events" --runs 3 --tmpdir "$tmpbase" --json
au=$(get events_per_sec "$tmp/audit.json")
verdict "$au" 1000000
echo
printf '%-22s %14s %10s %10s %8s %14s %6s %8s\n' "audit verify" "$(fmt "$au") ev/s" \
  "$(get seconds_median "$tmp/audit.json") s" "" "" ">= 1000000" "$V" \
  "$(fmt "$(get other_cpu_pct "$tmp/audit.json")")%"

if [ "$failed" -gt 0 ] || [ "$missed" -gt 0 ]; then
  echo "run.sh: $failed run(s) failed, $missed bar(s) missed" >&2
  exit 1
fi
