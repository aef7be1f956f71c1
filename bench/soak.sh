#!/usr/bin/env bash
# bench/soak.sh BUILD_DIR [SECONDS] — `make soak` (issue 7; not part of CI): a real tumad and three
# tuma-opsim operators paying each other in a ring (alpha -> beta -> gamma -> alpha) with a mix
# of rejections, unknown MSISDNs and short expiries, for SECONDS (default 600), while faults are
# injected every 15-35 s at random:
#   kill9-switch     kill -9 tumad, restart it on the same data directory
#   kill9-operator   kill -9 one operator, restart it (it recovers from its data directory)
#   disconnect       SIGTERM one operator (it drains and leaves), restart it
#   freeze-payee     SIGSTOP one operator for 12 s: a payee that stops answering (the 5 s
#                    expiries fire), then SIGCONT
# At the end the operators stop (draining), then every operator's own view is reconciled against
# the switch: `tuma-opsim totals` must say reconciled, nothing pending, and net_change (received
# - sent) = -NET of `tuma positions`; the NETs sum to 0; after tumad stops, its ledger must
# balance and its journal verify (tuma-soak-check). Prints a summary and writes it as JSON to
# DIR/summary.json (DIR: $SOAK_DIR, default a temporary directory, kept).
#
# Exit status: 0 all reconciled, 1 a discrepancy or a failure (the summary says which).
set -euo pipefail

build=${1:?usage: bench/soak.sh BUILD_DIR [SECONDS]}
seconds=${2:-600}
build=$(cd "$build" && pwd)
tumad=$build/switch/tumad
tuma=$build/cli/tuma
opsim=$build/adapters/opsim/tuma-opsim
check=$build/bench/tuma-soak-check
for p in "$tumad" "$tuma" "$opsim" "$check"; do
  [ -x "$p" ] || { echo "soak: $p is missing (ninja -C $build)" >&2; exit 1; }
done

dir=${SOAK_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/tuma-soak.XXXXXX")}
mkdir -p "$dir"
pki=$dir/pki
rate=${SOAK_RATE:-100} # payments per second per operator
log() { printf '%s soak: %s\n' "$(date -u +%H:%M:%S)" "$*"; }

tumad_pid=""
declare -A op_pid=()
cleanup() {
  for n in "${!op_pid[@]}"; do
    kill -CONT "${op_pid[$n]}" 2>/dev/null || true
    kill -KILL "${op_pid[$n]}" 2>/dev/null || true
  done
  [ -n "$tumad_pid" ] && kill -KILL "$tumad_pid" 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

# ---- the scheme: PKI, configuration
"$tuma" pki init --dir "$pki" >"$dir/cli.log" 2>&1
for n in alpha beta gamma; do
  "$tuma" pki issue --dir "$pki" --name "$n" --role operator --out "$pki" >>"$dir/cli.log" 2>&1
done
"$tuma" pki issue --dir "$pki" --name admin --role admin --out "$pki" >>"$dir/cli.log" 2>&1

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port=$(free_port); admin_port=$(free_port); metrics_port=$(free_port)
cat >"$dir/tumad.ini" <<INI
[switch]
listen = 127.0.0.1:$port
admin_listen = 127.0.0.1:$admin_port
metrics_listen = 127.0.0.1:$metrics_port
data_dir = $dir/data
max_expiry_ms = 60000
log_level = info

[tls]
ca = $pki/ca.crt
cert = $pki/tumad.crt
key = $pki/tumad.key

[participant alpha]
name = Alpha Mobile Money
currencies = KES
initial_deposit.KES = 100000000000
msisdn_prefixes = 25470

[participant beta]
name = Beta Bank
currencies = KES
initial_deposit.KES = 100000000000
msisdn_prefixes = 25471

[participant gamma]
name = Gamma Wallet
currencies = KES
initial_deposit.KES = 100000000000
msisdn_prefixes = 25472
INI

start_tumad() {
  "$tumad" --config "$dir/tumad.ini" >>"$dir/tumad.log" 2>&1 &
  tumad_pid=$!
  for _ in $(seq 1 300); do
    if { exec 3<>"/dev/tcp/127.0.0.1/$metrics_port"; } 2>/dev/null; then
      printf 'GET /healthz HTTP/1.0\r\n\r\n' >&3
      if head -c 12 <&3 | grep -q 200; then exec 3>&-; return 0; fi
      exec 3>&-
    fi
    kill -0 "$tumad_pid" 2>/dev/null || { echo "soak: tumad exited at start" >&2; return 1; }
    sleep 0.1
  done
  echo "soak: tumad not ready" >&2
  return 1
}

declare -A prefix=([alpha]=25470 [beta]=25471 [gamma]=25472)
declare -A payee=([alpha]=25471 [beta]=25472 [gamma]=25470)
end=$(( $(date +%s) + seconds ))

# An operator: pays the next one in the ring until the end of the soak, then stays as payee.
start_op() {
  local n=$1 left=$(( end - $(date +%s) ))
  [ "$left" -lt 1 ] && left=1
  "$opsim" --connect "127.0.0.1:$port" --pki "$pki" --as "$n" --data "$dir/op-$n" \
    --wallets 1000 --msisdn-prefix "${prefix[$n]}" --initial-balance 100000000 \
    --payee-prefix "${payee[$n]}" --payee-wallets 1000 --rate "$rate" --duration "$left" \
    --amount-min 100 --amount-max 5000 --reject-percent 3 --unknown-percent 1 \
    --short-expiry-percent 1 --expiry-ms 5000 --payee-latency-ms 2 --drain-ms 20000 \
    --linger --json >>"$dir/op-$n.out" 2>>"$dir/op-$n.log" &
  op_pid[$n]=$!
}

start_tumad
for n in alpha beta gamma; do start_op "$n"; done
log "tumad and 3 operators up (${rate}/s each, $seconds s); scratch $dir"

declare -A faults=([kill9-switch]=0 [kill9-operator]=0 [disconnect]=0 [freeze-payee]=0)
ops=(alpha beta gamma)
while :; do
  pause=$(( 15 + RANDOM % 21 ))
  now=$(date +%s)
  [ $(( now + pause + 15 )) -ge "$end" ] && break
  sleep "$pause"
  n=${ops[$(( RANDOM % 3 ))]}
  case $(( RANDOM % 4 )) in
    0) log "fault: kill -9 tumad"
       kill -KILL "$tumad_pid"; wait "$tumad_pid" 2>/dev/null || true
       sleep 1; start_tumad; faults[kill9-switch]=$(( faults[kill9-switch] + 1 )) ;;
    1) log "fault: kill -9 operator $n"
       kill -KILL "${op_pid[$n]}"; wait "${op_pid[$n]}" 2>/dev/null || true
       sleep 1; start_op "$n"; faults[kill9-operator]=$(( faults[kill9-operator] + 1 )) ;;
    2) log "fault: operator $n disconnects (SIGTERM) and comes back"
       kill -TERM "${op_pid[$n]}"; wait "${op_pid[$n]}" 2>/dev/null || true
       start_op "$n"; faults[disconnect]=$(( faults[disconnect] + 1 )) ;;
    3) log "fault: operator $n stops answering for 12 s (SIGSTOP)"
       kill -STOP "${op_pid[$n]}"; sleep 12; kill -CONT "${op_pid[$n]}"
       faults[freeze-payee]=$(( faults[freeze-payee] + 1 )) ;;
  esac
done
while [ "$(date +%s)" -lt "$end" ]; do sleep 1; done

# ---- the end: operators drain and stop; reconcile each against the switch
log "stopping the operators"
for n in alpha beta gamma; do kill -TERM "${op_pid[$n]}" 2>/dev/null || true; done
for n in alpha beta gamma; do wait "${op_pid[$n]}" 2>/dev/null || true; unset "op_pid[$n]"; done
TUMA_PKI_DIR=$pki "$tuma" positions --connect "127.0.0.1:$admin_port" >"$dir/positions.txt"
kill -TERM "$tumad_pid"; wait "$tumad_pid" || true; tumad_pid=""
ledger_json=$("$check" "$dir/data/ledger") && ledger_ok=1 || ledger_ok=0

ok=1
sum_net=0
ops_json=""
for n in alpha beta gamma; do
  t=$("$opsim" totals --data "$dir/op-$n")
  net=$(awk -v p="$n" '$1 == p { print $7 }' "$dir/positions.txt")
  get() { python3 -c 'import json,sys; d=json.loads(sys.argv[1]); v=d
for k in sys.argv[2].split("."): v=v[k]
print(json.dumps(v))' "$t" "$1"; }
  rec=$(get reconciled); change=$(get net_change)
  pend=$(( $(get pending_debits.count) + $(get pending_credits.count) ))
  cin=$(get committed_in.count); cout=$(get committed_out.count)
  sum_net=$(( sum_net + net ))
  verdict=ok
  if [ "$rec" != true ] || [ "$pend" -ne 0 ] || [ $(( change + net )) -ne 0 ]; then
    verdict=MISMATCH; ok=0
  fi
  log "$n: committed in $cin, out $cout, net_change $change, switch NET $net, pending $pend, reconciled $rec: $verdict"
  ops_json="$ops_json${ops_json:+,}\"$n\":{\"committed_in\":$cin,\"committed_out\":$cout,\"net_change\":$change,\"switch_net\":$net,\"pending\":$pend,\"reconciled\":$rec,\"verdict\":\"$verdict\"}"
done
[ "$sum_net" -eq 0 ] || ok=0
[ "$ledger_ok" -eq 1 ] || ok=0
faults_json=""
for f in "${!faults[@]}"; do faults_json="$faults_json${faults_json:+,}\"$f\":${faults[$f]}"; done
printf '{"seconds":%s,"rate_per_operator":%s,"faults":{%s},"operators":{%s},"sum_net":%s,"ledger":%s,"ok":%s}\n' \
  "$seconds" "$rate" "$faults_json" "$ops_json" "$sum_net" "$ledger_json" \
  "$([ $ok -eq 1 ] && echo true || echo false)" >"$dir/summary.json"
log "faults: ${faults_json}"
log "ledger: $ledger_json"
log "summary: $dir/summary.json"
if [ $ok -eq 1 ]; then log "every operator's view reconciles with the switch and the ledger"; exit 0; fi
log "DISCREPANCY (see $dir)"; exit 1
