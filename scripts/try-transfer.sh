#!/usr/bin/env bash
# scripts/try-transfer.sh — README.md's "Try it: a transfer between two operators", without a
# person: in a temporary directory, a scheme PKI (tuma pki), a tumad with two participants on
# free loopback ports, `tuma op receive` as beta in the background, `tuma op send` as alpha,
# then `tuma positions`. Exits 0 only if the transfer committed, the receiver saw it, and the
# positions moved by the amount; 1 otherwise (the directory is then kept, with every log); 2 if
# the build is missing.
#
#   scripts/try-transfer.sh            # uses ./build; BUILD=build-asan scripts/try-transfer.sh
#   KEEP=1 scripts/try-transfer.sh     # keep the temporary directory
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD:-build}
case $build in /*) ;; *) build=$root/$build ;; esac
tuma_bin=$build/cli/tuma
tumad_bin=$build/switch/tumad
amount=2500
deposit=1000000

if [ ! -x "$tuma_bin" ] || [ ! -x "$tumad_bin" ]; then
  echo "try-transfer: no $tuma_bin or $tumad_bin: build first (make, or ninja -C build)" >&2
  exit 2
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/tuma-try.XXXXXX")
tumad_pid=
receive_pid=
ok=0

cleanup() {
  for pid in $receive_pid $tumad_pid; do
    if kill -0 "$pid" 2>/dev/null; then
      kill "$pid" 2>/dev/null || true
      wait "$pid" 2>/dev/null || true
    fi
  done
  if [ "$ok" = 1 ] && [ -z "${KEEP:-}" ]; then
    rm -rf "$work"
  else
    echo "try-transfer: files kept in $work (tumad.log, receive.out, send.out)" >&2
  fi
}
trap cleanup EXIT

fail() {
  echo "try-transfer: FAILED: $*" >&2
  exit 1
}

# Shown as "tuma …", as in the README.
tuma() { "$tuma_bin" "$@"; }

say() { printf '\n$ %s\n' "$*"; }

# Waits up to $2 tenths of a second until file $1 contains $3; 1 if it never does.
wait_for_text() {
  local file=$1 tenths=$2 text=$3
  for _ in $(seq "$tenths"); do
    grep -q -- "$text" "$file" 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}

# A loopback port nothing listens on (a connection to it is refused).
free_port() {
  local p
  for _ in $(seq 200); do
    p=$((20000 + RANDOM % 12000))
    case " $* " in *" $p "*) continue ;; esac
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      echo "$p"
      return 0
    fi
  done
  return 1
}

cd "$work"
echo "try-transfer: working in $work"

say tuma pki init --dir pki
tuma pki init --dir pki
for who in alpha beta; do
  say tuma pki issue --dir pki --name $who --role operator
  tuma pki issue --dir pki --name $who --role operator
done
say tuma pki issue --dir pki --name admin --role admin
tuma pki issue --dir pki --name admin --role admin

# The README's tumad.ini, after a [switch] section with this run's ports (the README uses the
# defaults, 7400-7402).
write_config() {
  cat >tumad.ini <<EOF
[switch]
listen = 127.0.0.1:$port
admin_listen = 127.0.0.1:$admin_port
metrics_listen = 127.0.0.1:$metrics_port
data_dir = var/tumad

[tls]
ca = pki/ca.crt
cert = pki/tumad.crt
key = pki/tumad.key

[participant alpha]
name = Alpha Mobile Money
currencies = KES
initial_deposit.KES = $deposit

[participant beta]
name = Beta Bank
currencies = KES
initial_deposit.KES = $deposit
EOF
}

# Another process may take a port between the check and tumad's bind: then pick again.
for attempt in 1 2 3 4; do
  if ! port=$(free_port) || ! admin_port=$(free_port "$port") ||
    ! metrics_port=$(free_port "$port" "$admin_port"); then
    fail "no free loopback ports"
  fi
  write_config
  say "$tumad_bin" --config tumad.ini "(in the background, log in tumad.log; ports $port, $admin_port, $metrics_port)"
  "$tumad_bin" --config tumad.ini >>tumad.log 2>&1 &
  tumad_pid=$!
  ready=0
  for _ in $(seq 150); do
    if grep -q "event=ready" tumad.log; then
      ready=1
      break
    fi
    kill -0 "$tumad_pid" 2>/dev/null || break
    sleep 0.1
  done
  [ "$ready" = 1 ] && break
  kill "$tumad_pid" 2>/dev/null || true
  wait "$tumad_pid" 2>/dev/null || true
  tumad_pid=
  grep -q "Address already in use" tumad.log && [ "$attempt" -lt 4 ] && continue
  cat tumad.log >&2
  fail "tumad did not start"
done
cat tumad.log

conn=(--connect "127.0.0.1:$port")
say tuma op receive --pki pki --as beta --count 1 "${conn[@]}" "(in the background)"
tuma op receive --pki pki --as beta --count 1 "${conn[@]}" >receive.out 2>&1 &
receive_pid=$!
wait_for_text receive.out 100 "waiting for" || {
  cat receive.out >&2
  fail "op receive did not get ready"
}

say tuma op send --pki pki --as alpha --to beta --amount $amount --currency KES "${conn[@]}"
send_status=0
tuma op send --pki pki --as alpha --to beta --amount $amount --currency KES "${conn[@]}" \
  >send.out 2>&1 || send_status=$?
cat send.out
[ "$send_status" = 0 ] || fail "op send exited $send_status"
grep -q " COMMITTED" send.out || fail "op send did not print COMMITTED"

receive_status=0
for _ in $(seq 100); do
  kill -0 "$receive_pid" 2>/dev/null || break
  sleep 0.1
done
wait "$receive_pid" || receive_status=$?
receive_pid=
printf '\n(the receiver printed)\n'
cat receive.out
[ "$receive_status" = 0 ] || fail "op receive exited $receive_status"
id=$(sed -n 's/^transfer \([0-9a-f]\{32\}\) .*/\1/p' send.out)
grep -q "^forward  $id from alpha $amount KES to beta" receive.out ||
  fail "op receive did not print the forward of $id"
grep -q "^result   $id COMMITTED" receive.out || fail "op receive did not print the confirmation"

say tuma positions --connect "127.0.0.1:$admin_port"
tuma positions --connect "127.0.0.1:$admin_port" >positions.out 2>&1 ||
  fail "tuma positions failed: $(cat positions.out)"
cat positions.out
# PARTICIPANT CURRENCY LIQUIDITY RESERVED AVAILABLE NDC NET
check_position() {
  awk -v who="$1" -v liq="$2" -v net="$3" '
    $1 == who && $2 == "KES" { found = 1; if ($3 != liq || $4 != 0 || $7 != net) bad = 1 }
    END { exit !(found && !bad) }' positions.out
}
check_position alpha $((deposit - amount)) "$amount" ||
  fail "alpha's position is not liquidity $((deposit - amount)), net $amount"
check_position beta $((deposit + amount)) "-$amount" ||
  fail "beta's position is not liquidity $((deposit + amount)), net -$amount"

kill -TERM "$tumad_pid"
tumad_status=0
wait "$tumad_pid" || tumad_status=$?
tumad_pid=
[ "$tumad_status" = 0 ] || fail "tumad exited $tumad_status on SIGTERM"

ok=1
printf '\ntry-transfer: OK: transfer %s committed; alpha -%s KES, beta +%s KES (minor units)\n' \
  "$id" "$amount" "$amount"
