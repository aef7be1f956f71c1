#!/bin/sh
# peer_postgres.sh — the PostgreSQL peer of `tuma-bench ledger` (DESIGN §6: "ledger vs
# PostgreSQL doing the same double-entry transfers, same machine").
#
# Starts a throwaway cluster (initdb + pg_ctl from /usr/lib/postgresql/<newest>/bin) listening
# only on a unix socket in a fresh temp directory, with fsync=on and synchronous_commit=on
# (every transfer is durable before pgbench sees its commit, as in the ledger), loads
# --accounts plain accounts and drives pgbench (-c clients, -j threads, -T seconds) with one
# transfer per transaction through create_transfer(): lock both accounts in id order, check the
# balance constraint (debits_must_not_exceed_credits / credits_must_not_exceed_debits, as the
# ledger does; the accounts carry no such flag, like tuma-bench's), insert the transfer with
# ON CONFLICT (id) DO NOTHING as the idempotency check, then update both balances. Transfer
# ids are 128-bit (uuid) and client-chosen: pgbench client number ‖ per-client counter, so
# each client appends at its own right edge of the primary key. The transfers table has an
# index per account side, as the ledger keeps each account's transfers queryable
# (--no-account-indexes drops them).
#
# As root it runs the cluster as the `postgres` user (runuser); otherwise as the caller. The
# cluster and its directory are removed on exit, whatever the exit (trap).
#
# Output: a human summary, or with --json one JSON line. With --ledger-tps X (the ledger's
# transfers/s) it also reports ratio = X / PostgreSQL's transfers/s.
set -eu

accounts=10000
seconds=30
clients=16
jobs=2
json=0
ledger_tps=""
account_indexes=1
tmpbase=${TMPDIR:-/tmp}
[ -n "$tmpbase" ] || tmpbase=/tmp

usage() {
  cat <<EOF
usage: peer_postgres.sh [--accounts N] [--seconds N] [--clients N] [--jobs N]
                        [--ledger-tps X] [--no-account-indexes] [--tmpdir DIR] [--json]
  --accounts N          accounts (default 10000)
  --seconds N           pgbench duration (default 30)
  --clients N           pgbench clients -c (default 16)
  --jobs N              pgbench threads -j (default 2)
  --ledger-tps X        the ledger's transfers/s, to report the ratio
  --no-account-indexes  no per-account indexes on transfers
  --tmpdir DIR          folder for the throwaway cluster (default \$TMPDIR or /tmp)
  --json                one JSON line on stdout
EOF
}

die_usage() {
  echo "peer_postgres.sh: $*" >&2
  exit 2
}

# whole number in [min, max]
num() {
  case "$2" in
    '' | *[!0-9]*) die_usage "$1: '$2' is not a whole number" ;;
  esac
  [ "${#2}" -le 9 ] || die_usage "$1: $2 is out of range [$3, $4]"
  if [ "$2" -lt "$3" ] || [ "$2" -gt "$4" ]; then die_usage "$1: $2 is out of range [$3, $4]"; fi
}

while [ $# -gt 0 ]; do
  opt=$1
  case "$opt" in
    --*=*) val=${opt#*=}; opt=${opt%%=*}; shift; set -- "$opt" "$val" "$@" ;;
  esac
  case "$1" in
    -h | --help) usage; exit 0 ;;
    --json) json=1; shift; continue ;;
    --no-account-indexes) account_indexes=0; shift; continue ;;
  esac
  [ $# -ge 2 ] || die_usage "$1 needs a value (or is unknown)"
  case "$1" in
    --accounts) num "$1" "$2" 2 100000000; accounts=$2 ;;
    --seconds) num "$1" "$2" 1 86400; seconds=$2 ;;
    --clients) num "$1" "$2" 1 1000; clients=$2 ;;
    --jobs) num "$1" "$2" 1 1000; jobs=$2 ;;
    --ledger-tps)
      echo "$2" | grep -Eq '^[0-9]+(\.[0-9]+)?$' || die_usage "$1: '$2' is not a number"
      ledger_tps=$2 ;;
    --tmpdir) tmpbase=$2 ;;
    *) usage >&2; die_usage "unknown option '$1'" ;;
  esac
  shift 2
done
[ "$jobs" -le "$clients" ] || die_usage "--jobs ($jobs) must not exceed --clients ($clients)"

pgbin=$(for d in /usr/lib/postgresql/*/bin; do [ -d "$d" ] && echo "$d"; done | sort -V | tail -n 1)
if [ -z "$pgbin" ] || [ ! -x "$pgbin/initdb" ] || [ ! -x "$pgbin/pg_ctl" ]; then
  echo "peer_postgres.sh: no /usr/lib/postgresql/*/bin/{initdb,pg_ctl} (run scripts/deps)" >&2
  exit 1
fi
pgbench=$pgbin/pgbench
[ -x "$pgbench" ] || pgbench=$(command -v pgbench) || {
  echo "peer_postgres.sh: pgbench not found" >&2
  exit 1
}
psql=$pgbin/psql

work=$(mktemp -d "$tmpbase/tuma-bench-pg.XXXXXX")
data=$work/data
started=0

if [ "$(id -u)" -eq 0 ]; then
  id postgres >/dev/null 2>&1 || {
    echo "peer_postgres.sh: running as root needs the 'postgres' user" >&2
    rm -rf "$work"
    exit 1
  }
  chown postgres "$work"
  as_pg() { runuser -u postgres -- "$@"; }
else
  as_pg() { "$@"; }
fi

cleanup() {
  status=$?
  trap - EXIT INT TERM HUP
  if [ "$started" -eq 1 ]; then
    as_pg "$pgbin/pg_ctl" -D "$data" -m immediate -w stop >/dev/null 2>&1 || true
  fi
  rm -rf "$work"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP
trap 'exit 141' PIPE

if ! as_pg test -w "$work"; then
  echo "peer_postgres.sh: $work is not writable by the cluster's user (try --tmpdir /tmp)" >&2
  exit 1
fi

log() { [ "$json" -eq 1 ] || echo "$@"; }

as_pg "$pgbin/initdb" -D "$data" -U tuma --auth=trust -E UTF8 --locale=C >"$work/initdb.log" 2>&1 || {
  cat "$work/initdb.log" >&2
  exit 1
}
cat >>"$data/postgresql.conf" <<EOF
# peer_postgres.sh: durable (as the ledger), tuned for a short write-heavy run
listen_addresses = ''
unix_socket_directories = '$work'
fsync = on
synchronous_commit = on
full_page_writes = on
max_connections = $((clients + 10))
shared_buffers = 1GB
wal_buffers = 64MB
max_wal_size = 16GB
checkpoint_timeout = 30min
EOF
as_pg "$pgbin/pg_ctl" -D "$data" -l "$work/server.log" -w -t 60 start >/dev/null || {
  cat "$work/server.log" >&2
  exit 1
}
started=1

q() { "$psql" -h "$work" -U tuma -d postgres -X -q -v ON_ERROR_STOP=1 "$@"; }

index_sql=""
if [ "$account_indexes" -eq 1 ]; then
  index_sql="CREATE INDEX transfers_debit ON transfers (debit_account_id, ts);
CREATE INDEX transfers_credit ON transfers (credit_account_id, ts);"
fi

q >/dev/null <<EOF
CREATE TABLE accounts (
  id bigint PRIMARY KEY,
  ledger integer NOT NULL,
  code smallint NOT NULL,
  flags smallint NOT NULL DEFAULT 0,
  debits_pending bigint NOT NULL DEFAULT 0,
  debits_posted bigint NOT NULL DEFAULT 0,
  credits_pending bigint NOT NULL DEFAULT 0,
  credits_posted bigint NOT NULL DEFAULT 0,
  user_data_64 bigint NOT NULL DEFAULT 0,
  ts timestamptz NOT NULL DEFAULT clock_timestamp()
) WITH (fillfactor = 50);
CREATE TABLE transfers (
  id uuid PRIMARY KEY,
  debit_account_id bigint NOT NULL,
  credit_account_id bigint NOT NULL,
  amount bigint NOT NULL,
  ledger integer NOT NULL,
  code smallint NOT NULL,
  flags smallint NOT NULL DEFAULT 0,
  ts timestamptz NOT NULL DEFAULT clock_timestamp()
);
$index_sql

-- One double-entry transfer, after the ledger's rules for a plain transfer: the existing id
-- wins (idempotency), then the accounts' existence and ledger, then the balance constraints.
-- Results are returned, never raised, so a rejected transfer still commits (nothing).
CREATE FUNCTION create_transfer(p_hi bigint, p_lo bigint, p_debit bigint, p_credit bigint,
                                p_amount bigint) RETURNS text LANGUAGE plpgsql AS \$\$
DECLARE
  v_id uuid := (lpad(to_hex(p_hi), 16, '0') || lpad(to_hex(p_lo), 16, '0'))::uuid;
  r accounts%ROWTYPE;
  d accounts%ROWTYPE;
  c accounts%ROWTYPE;
  t transfers%ROWTYPE;
BEGIN
  IF p_debit = p_credit THEN RETURN 'accounts_must_be_different'; END IF;
  IF p_amount <= 0 THEN RETURN 'amount_must_not_be_zero'; END IF;
  -- lock both accounts in id order, so that concurrent transfers cannot deadlock
  FOR r IN SELECT * FROM accounts WHERE id IN (p_debit, p_credit) ORDER BY id FOR UPDATE LOOP
    IF r.id = p_debit THEN d := r; ELSE c := r; END IF;
  END LOOP;
  SELECT * INTO t FROM transfers WHERE id = v_id;
  IF FOUND THEN
    IF t.debit_account_id = p_debit AND t.credit_account_id = p_credit
       AND t.amount = p_amount THEN RETURN 'exists'; END IF;
    RETURN 'exists_with_different_fields';
  END IF;
  IF d.id IS NULL THEN RETURN 'debit_account_not_found'; END IF;
  IF c.id IS NULL THEN RETURN 'credit_account_not_found'; END IF;
  IF d.ledger <> c.ledger THEN RETURN 'accounts_must_have_the_same_ledger'; END IF;
  IF (d.flags & 2) <> 0
     AND d.debits_pending + d.debits_posted + p_amount > d.credits_posted THEN
    RETURN 'exceeds_credits';
  END IF;
  IF (c.flags & 4) <> 0
     AND c.credits_pending + c.credits_posted + p_amount > c.debits_posted THEN
    RETURN 'exceeds_debits';
  END IF;
  INSERT INTO transfers (id, debit_account_id, credit_account_id, amount, ledger, code)
    VALUES (v_id, p_debit, p_credit, p_amount, d.ledger, 1)
    ON CONFLICT (id) DO NOTHING;
  IF NOT FOUND THEN RETURN 'exists'; END IF;
  UPDATE accounts SET debits_posted = debits_posted + p_amount WHERE id = p_debit;
  UPDATE accounts SET credits_posted = credits_posted + p_amount WHERE id = p_credit;
  RETURN 'ok';
END
\$\$;

INSERT INTO accounts (id, ledger, code) SELECT g, 1, 1 FROM generate_series(1, $accounts) g;
VACUUM ANALYZE accounts;
CHECKPOINT;
EOF

cat >"$work/transfer.sql" <<'EOF'
\set n :n + 1
\set d random(1, :accounts)
\set c random(1, :accounts - 1)
\set c :c + case when :c >= :d then 1 else 0 end
\set amount random(1, 1000)
SELECT create_transfer(:client_id + 1, :n, :d, :c, :amount);
EOF

# CPU accounting, to tell a clean run from one that shared the machine: the machine's busy
# ticks (/proc/stat), the cluster's (the postmaster with its reaped children, plus its live
# children) and ours (the shell's children: pgbench); what is left is other work's.
hz=$(getconf CLK_TCK)
machine_ticks() { awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8 + $9; exit }' /proc/stat; }
cluster_ticks() {
  pm=$(head -n 1 "$data/postmaster.pid")
  cat /proc/[0-9]*/stat 2>/dev/null | awk -v pm="$pm" '
    $1 == pm { t += $14 + $15 + $16 + $17 } $4 == pm { t += $14 + $15 } END { print t + 0 }'
}
children_seconds() { # the children line of `times`: "XmY.Zs XmY.Zs"
  times | sed -n 2p | awk '{ n = 0; for (i = 1; i <= 2; i++) { split($i, a, "m"); sub("s", "", a[2]); n += a[1] * 60 + a[2] } print n }'
}
wall_ns() { date +%s%N; }

log "peer_postgres.sh: PostgreSQL $("$pgbin/postgres" --version | sed 's/.*) //'), $accounts accounts, pgbench -c $clients -j $jobs -T $seconds, synchronous_commit=on, fsync=on"
m0=$(machine_ticks) c0=$(cluster_ticks) s0=$(children_seconds) w0=$(wall_ns)
"$pgbench" -h "$work" -U tuma -n -M prepared -c "$clients" -j "$jobs" -T "$seconds" \
  -D accounts="$accounts" -D n=0 -f "$work/transfer.sql" postgres >"$work/pgbench.out" 2>&1 || {
  cat "$work/pgbench.out" >&2
  exit 1
}

m1=$(machine_ticks) c1=$(cluster_ticks) s1=$(children_seconds) w1=$(wall_ns)
other_pct=$(awk -v m="$((m1 - m0))" -v c="$((c1 - c0))" -v s0="$s0" -v s1="$s1" -v hz="$hz" \
  -v w="$((w1 - w0))" 'BEGIN { o = (m - c) / hz - (s1 - s0); if (o < 0) o = 0; printf "%.1f", 100 * o / (w / 1e9) }')
tps=$(sed -n 's/^tps = \([0-9.]*\) (without initial connection time).*/\1/p' "$work/pgbench.out")
txns=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$work/pgbench.out")
failed=$(sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p' "$work/pgbench.out")
lat=$(sed -n 's/^latency average = \([0-9.]*\) ms.*/\1/p' "$work/pgbench.out")
[ -n "$failed" ] || failed=0
if [ -z "$tps" ] || [ -z "$txns" ]; then
  echo "peer_postgres.sh: cannot read pgbench's output:" >&2
  cat "$work/pgbench.out" >&2
  exit 1
fi

# What actually committed, and the double-entry invariant.
sums=$(q -At -F ' ' -c "SELECT (SELECT count(*) FROM transfers),
  (SELECT coalesce(sum(amount), 0) FROM transfers),
  sum(debits_posted), sum(credits_posted) FROM accounts")
read -r rows amounts debits credits <<EOF
$sums
EOF
invariants=fail
if [ "$debits" = "$credits" ] && [ "$amounts" = "$debits" ]; then invariants=ok; fi
db_bytes=$(q -At -c "SELECT pg_database_size('postgres')")

ratio=""
[ -n "$ledger_tps" ] && ratio=$(awk -v a="$ledger_tps" -v b="$tps" 'BEGIN { if (b > 0) printf "%.1f", a / b }')

if [ "$json" -eq 1 ]; then
  printf '{"bench":"postgres_peer","version":"%s","accounts":%s,"clients":%s,"jobs":%s,"seconds":%s,"transactions":%s,"failed":%s,"transfers":%s,"transfers_per_sec":%s,"latency_avg_ms":%s,"invariants":"%s","account_indexes":%s,"db_bytes":%s,"cpu_other_pct":%s' \
    "$("$pgbin/postgres" --version | sed 's/.*) //;s/ .*//')" "$accounts" "$clients" "$jobs" \
    "$seconds" "$txns" "$failed" "$rows" "$tps" "${lat:-0}" "$invariants" \
    "$([ "$account_indexes" -eq 1 ] && echo true || echo false)" "$db_bytes" "$other_pct"
  [ -n "$ratio" ] && printf ',"ledger_transfers_per_sec":%s,"ratio":%s' "$ledger_tps" "$ratio"
  printf '}\n'
else
  echo "  transactions     $txns in $seconds s ($failed failed), $rows transfers stored"
  echo "  throughput       $tps transfers/s (latency avg ${lat:-?} ms)"
  echo "  invariants       $invariants (Σ amounts = Σ debits_posted = Σ credits_posted)"
  echo "  database         $db_bytes bytes"
  echo "  others           ${other_pct}% of one core (CPU of everything but the cluster and pgbench)"
  [ -n "$ratio" ] && echo "  ledger / pg      $ratio x (ledger $ledger_tps transfers/s)"
fi
if [ "$invariants" != ok ] || [ "$rows" != "$txns" ]; then
  echo "peer_postgres.sh: check failed: invariants $invariants, $rows rows for $txns transactions" >&2
  exit 1
fi
