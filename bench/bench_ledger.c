/* bench_ledger.c — `tuma-bench ledger`: durable ledger throughput (DESIGN §6, first row).
 *
 * Opens a fresh ledger (default options: every ledger_apply() commits with a full sync) in a
 * scratch directory, creates --accounts plain accounts (ledger 1, code 1, no flags), then
 * times only the transfer phase: it builds batches of --batch transfers between random
 * distinct accounts (seeded xoshiro256**; with --hot-accounts H --hot-percent P each side of
 * a transfer is drawn from the first H accounts with probability P%), applies each batch with
 * ledger_apply() and records its latency. With --two-phase-percent P, P% of the transfers are
 * created pending and posted (whole amount) at the start of the next batch; such a pending +
 * post pair counts as one transfer (two events). Every result must be LEDGER_OK; anything
 * else is counted in `errors`. At the end it checks the invariants with ledger_totals_of()
 * (Σ debits = Σ credits, posted and pending) and that the posted total equals the sum of the
 * amounts sent, and reports the data directory's size.
 *
 * Ids: --ids time (default) makes every id (accounts and transfers) time-ordered as DESIGN §3
 * asks of clients — high 48 bits the wall-clock milliseconds, then 16 random bits fixed per
 * run, then a 64-bit counter — so ids strictly increase; --ids random draws them uniformly.
 * Throughput is also reported per --segment transfers (default 500,000) to show how it
 * changes as the ledger grows. The CPU this process used during the timed phase, and the CPU
 * everything else on the machine used (cpu_other_pct, % of one core), are reported so that a
 * figure taken while the machine was shared can be told apart.
 */
#include "bench.h"

#include "ledger.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *const ledger_cmd = "ledger";

typedef struct lb_opts {
  uint64_t accounts;
  uint64_t transfers;
  uint64_t batch;
  uint64_t hot_accounts;
  uint64_t hot_percent;
  uint64_t two_phase_percent;
  uint64_t seed;
  uint64_t segment;
  int ids_random;
  int json;
  int keep;
  int nosync;
  const char *tmpdir;
} lb_opts;

/* Id generator state (see the file comment). */
typedef struct lb_ids {
  int random;
  uint16_t salt;
  uint64_t last_ms;
  uint64_t counter;
} lb_ids;

/* Everything a run measures. */
typedef struct lb_result {
  double setup_seconds;
  double seconds;
  uint64_t transfers; /* logical transfers completed (plain + posts) */
  uint64_t events;    /* transfer events applied (plain + pending + post) */
  uint64_t pending;   /* of which pending creations */
  uint64_t errors;    /* results other than LEDGER_OK */
  uint64_t by_result[LEDGER_RESULT_COUNT_];
  uint64_t expected_posted; /* Σ amounts of plain transfers and posts that returned OK */
  bench_samples batch_ns;
  double *segments; /* transfers/s per segment */
  size_t nsegments, segments_cap;
  ledger_totals totals;
  int invariants_ok;
  int totals_ok;
  uint64_t journal_seq;
  uint64_t db_bytes, db_alloc_bytes;
  double cpu_self_s;    /* this process's CPU time during the timed phase */
  double cpu_other_pct; /* everything else's, % of one core; -1 unknown */
  int interrupted;      /* the signal that stopped the run, 0 if none */
} lb_result;

static void ledger_usage(FILE *out) {
  fprintf(out,
          "usage: tuma-bench ledger [--accounts N] [--transfers N] [--batch N]\n"
          "                         [--hot-accounts N --hot-percent P] [--two-phase-percent P]\n"
          "                         [--ids time|random] [--seed N] [--segment N]\n"
          "                         [--tmpdir DIR] [--keep] [--unsafe-nosync] [--json]\n"
          "  --accounts N           accounts created before the timed phase (default 10000)\n"
          "  --transfers N          transfers in the timed phase (default 2000000)\n"
          "  --batch N              events per ledger_apply(), 1..%d (default %d)\n"
          "  --hot-accounts N       with --hot-percent P: each side of a transfer is drawn\n"
          "  --hot-percent P        from the first N accounts with probability P%%\n"
          "  --two-phase-percent P  P%% of transfers are pending, posted in the next batch\n"
          "                         (a pending + post pair counts as one transfer)\n"
          "  --ids time|random      time-ordered ids as DESIGN §3 asks (default) or uniform\n"
          "  --seed N               PRNG seed (default 1)\n"
          "  --segment N            report throughput per N transfers (default 500000)\n"
          "  --tmpdir DIR           folder for the data directory (default $TMPDIR or /tmp)\n"
          "  --keep                 keep the data directory (its path goes to stderr)\n"
          "  --unsafe-nosync        BENCHMARK ONLY: commit without fsync (not durable)\n"
          "  --json                 one JSON object on stdout instead of the table\n",
          LEDGER_BATCH_MAX, LEDGER_BATCH_MAX);
}

/* Parses argv into *o. Returns BENCH_EXIT_OK, BENCH_EXIT_USAGE after an error message, or -1
 * when help was asked for (printed). */
static int ledger_parse(int argc, char **argv, lb_opts *o) {
  int hot_accounts_set = 0, hot_percent_set = 0;
  for (int i = 1; i < argc; i++) {
    const char *v = NULL;
    const char *a = argv[i];
    int m;
    uint64_t *num = NULL;
    uint64_t lo = 0, hi = 0;
    const char *name = NULL;
    if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
      ledger_usage(stdout);
      return -1;
    } else if (strcmp(a, "--json") == 0) {
      o->json = 1;
    } else if (strcmp(a, "--keep") == 0) {
      o->keep = 1;
    } else if (strcmp(a, "--unsafe-nosync") == 0) {
      o->nosync = 1;
    } else if ((m = bench_opt(argc, argv, &i, ledger_cmd, "--ids", &v)) != 0) {
      if (m < 0)
        return BENCH_EXIT_USAGE;
      if (strcmp(v, "time") == 0) {
        o->ids_random = 0;
      } else if (strcmp(v, "random") == 0) {
        o->ids_random = 1;
      } else {
        fprintf(stderr, "tuma-bench ledger: --ids: '%s' is neither 'time' nor 'random'\n", v);
        return BENCH_EXIT_USAGE;
      }
    } else if ((m = bench_opt(argc, argv, &i, ledger_cmd, "--tmpdir", &v)) != 0) {
      if (m < 0)
        return BENCH_EXIT_USAGE;
      o->tmpdir = v;
    } else if ((m = bench_opt(argc, argv, &i, ledger_cmd, "--accounts", &v)) != 0) {
      name = "--accounts", num = &o->accounts, lo = 2, hi = 100000000;
    } else if ((m = bench_opt(argc, argv, &i, ledger_cmd, "--transfers", &v)) != 0) {
      name = "--transfers", num = &o->transfers, lo = 1, hi = 10000000000u;
    } else if ((m = bench_opt(argc, argv, &i, ledger_cmd, "--batch", &v)) != 0) {
      name = "--batch", num = &o->batch, lo = 1, hi = LEDGER_BATCH_MAX;
    } else if ((m = bench_opt(argc, argv, &i, ledger_cmd, "--hot-accounts", &v)) != 0) {
      name = "--hot-accounts", num = &o->hot_accounts, lo = 0, hi = 100000000;
      hot_accounts_set = 1;
    } else if ((m = bench_opt(argc, argv, &i, ledger_cmd, "--hot-percent", &v)) != 0) {
      name = "--hot-percent", num = &o->hot_percent, lo = 0, hi = 100;
      hot_percent_set = 1;
    } else if ((m = bench_opt(argc, argv, &i, ledger_cmd, "--two-phase-percent", &v)) != 0) {
      name = "--two-phase-percent", num = &o->two_phase_percent, lo = 0, hi = 100;
    } else if ((m = bench_opt(argc, argv, &i, ledger_cmd, "--seed", &v)) != 0) {
      name = "--seed", num = &o->seed, lo = 0, hi = UINT64_MAX;
    } else if ((m = bench_opt(argc, argv, &i, ledger_cmd, "--segment", &v)) != 0) {
      name = "--segment", num = &o->segment, lo = 1, hi = 10000000000u;
    } else {
      fprintf(stderr, "tuma-bench ledger: unknown option '%s'\n", a);
      ledger_usage(stderr);
      return BENCH_EXIT_USAGE;
    }
    if (num && (m < 0 || bench_parse_u64(ledger_cmd, name, v, lo, hi, num) != 0))
      return BENCH_EXIT_USAGE;
  }
  if (hot_accounts_set != hot_percent_set || (o->hot_accounts == 0) != (o->hot_percent == 0)) {
    fprintf(stderr, "tuma-bench ledger: --hot-accounts and --hot-percent go together, both "
                    "non-zero (or both zero)\n");
    return BENCH_EXIT_USAGE;
  }
  if (o->hot_percent && (o->hot_accounts < 2 || o->hot_accounts > o->accounts)) {
    fprintf(stderr,
            "tuma-bench ledger: --hot-accounts: %" PRIu64 " is out of range [2, %" PRIu64
            "] (--accounts)\n",
            o->hot_accounts, o->accounts);
    return BENCH_EXIT_USAGE;
  }
  return BENCH_EXIT_OK;
}

static uint64_t wall_ms(void) {
  struct timespec ts;
  (void)clock_gettime(CLOCK_REALTIME, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* The next id. `ms` is the wall clock of the batch being built (time mode only). */
static ledger_id next_id(lb_ids *g, bench_rng *r, uint64_t ms) {
  if (g->random) {
    for (;;) {
      ledger_id id = ledger_id_make(bench_rng_next(r), bench_rng_next(r));
      if (!ledger_id_is_zero(id) && !(id.lo == UINT64_MAX && id.hi == UINT64_MAX))
        return id;
    }
  }
  if (ms > g->last_ms)
    g->last_ms = ms; /* never backwards, so ids strictly increase */
  g->counter++;
  return ledger_id_make((g->last_ms & 0xffffffffffffu) << 16 | g->salt, g->counter);
}

/* An account index: from the hot set with probability hot_percent, else uniform. */
static uint64_t pick_account(const lb_opts *o, bench_rng *r) {
  if (o->hot_percent && bench_rng_below(r, 100) < o->hot_percent)
    return bench_rng_below(r, o->hot_accounts);
  return bench_rng_below(r, o->accounts);
}

static int push_segment(lb_result *res, double rate) {
  if (res->nsegments == res->segments_cap) {
    size_t cap = res->segments_cap ? res->segments_cap * 2 : 16;
    double *p = realloc(res->segments, cap * sizeof *p);
    if (!p)
      return -1;
    res->segments = p;
    res->segments_cap = cap;
  }
  res->segments[res->nsegments++] = rate;
  return 0;
}

/* Creates the accounts (ids into accounts[0..n)), in batches of LEDGER_BATCH_MAX. Returns 0,
 * or -1 after printing what failed, or -1 with res->interrupted set. */
static int create_accounts(ledger *l, const lb_opts *o, lb_ids *ids, bench_rng *r,
                           ledger_id *accounts, ledger_event *ev, ledger_result *results,
                           lb_result *res) {
  for (uint64_t done = 0; done < o->accounts;) {
    if ((res->interrupted = bench_interrupted()) != 0)
      return -1;
    size_t n = o->accounts - done < LEDGER_BATCH_MAX ? (size_t)(o->accounts - done)
                                                     : (size_t)LEDGER_BATCH_MAX;
    uint64_t ms = wall_ms();
    for (size_t i = 0; i < n; i++) {
      memset(&ev[i], 0, sizeof ev[i]);
      ev[i].kind = LEDGER_EVENT_CREATE_ACCOUNT;
      ev[i].account.id = accounts[done + i] = next_id(ids, r, ms);
      ev[i].account.ledger = 1;
      ev[i].account.code = 1;
    }
    int rc = ledger_apply(l, ev, results, n);
    if (rc != 0) {
      fprintf(stderr, "tuma-bench ledger: creating accounts: ledger_apply: %s\n",
              ledger_strerror(rc));
      return -1;
    }
    for (size_t i = 0; i < n; i++) {
      if (results[i] != LEDGER_OK) {
        fprintf(stderr, "tuma-bench ledger: creating account %" PRIu64 ": %s\n", done + i,
                ledger_result_name(results[i]));
        return -1;
      }
    }
    done += n;
  }
  return 0;
}

/* The timed phase (see the file comment). Returns 0, or -1 after printing what failed (a
 * failed ledger_apply() or out of memory; rejected events are not failures here), or -1 with
 * res->interrupted set. */
static int run_transfers(ledger *l, const lb_opts *o, lb_ids *ids, bench_rng *r,
                         const ledger_id *accounts, ledger_event *ev, ledger_result *results,
                         lb_result *res) {
  size_t batch = (size_t)o->batch;
  /* Pending transfers waiting for their post: never more than one batch's worth, because each
   * batch first posts everything waiting and then adds at most what is left of the batch. */
  ledger_transfer *ring = malloc(batch * sizeof *ring);
  if (!ring) {
    fprintf(stderr, "tuma-bench ledger: out of memory\n");
    return -1;
  }
  size_t ring_head = 0, ring_count = 0;
  uint64_t started = 0, seg_next = o->segment, seg_done = 0;
  bench_cpu cpu0, cpu1;
  bench_cpu_sample(&cpu0);
  uint64_t t0 = bench_now_ns(), seg_t = t0;
  int status = 0;

  while (started < o->transfers || ring_count > 0) {
    if ((res->interrupted = bench_interrupted()) != 0) {
      status = -1;
      break;
    }
    size_t n = 0, completing = 0;
    uint64_t ms = o->ids_random ? 0 : wall_ms();
    size_t posts = ring_count < batch ? ring_count : batch;
    for (size_t k = 0; k < posts; k++, n++) {
      const ledger_transfer *p = &ring[ring_head];
      ring_head = (ring_head + 1) % batch;
      ring_count--;
      memset(&ev[n], 0, sizeof ev[n]);
      ev[n].kind = LEDGER_EVENT_CREATE_TRANSFER;
      ev[n].transfer.id = next_id(ids, r, ms);
      ev[n].transfer.pending_id = p->id;
      ev[n].transfer.debit_account_id = p->debit_account_id;
      ev[n].transfer.credit_account_id = p->credit_account_id;
      ev[n].transfer.amount = p->amount;
      ev[n].transfer.ledger = p->ledger;
      ev[n].transfer.code = p->code;
      ev[n].transfer.flags = LEDGER_TRANSFER_POST_PENDING;
      completing++;
    }
    for (; n < batch && started < o->transfers; n++, started++) {
      uint64_t d = pick_account(o, r), c;
      do
        c = pick_account(o, r);
      while (c == d);
      memset(&ev[n], 0, sizeof ev[n]);
      ev[n].kind = LEDGER_EVENT_CREATE_TRANSFER;
      ledger_transfer *t = &ev[n].transfer;
      t->id = next_id(ids, r, ms);
      t->debit_account_id = accounts[d];
      t->credit_account_id = accounts[c];
      t->amount = 1 + bench_rng_below(r, 1000);
      t->ledger = 1;
      t->code = 1;
      if (o->two_phase_percent && bench_rng_below(r, 100) < o->two_phase_percent) {
        t->flags = LEDGER_TRANSFER_PENDING;
        ring[(ring_head + ring_count) % batch] = *t;
        ring_count++;
        res->pending++;
      } else {
        completing++;
      }
    }

    uint64_t a = bench_now_ns();
    int rc = ledger_apply(l, ev, results, n);
    uint64_t b = bench_now_ns();
    if (rc != 0) {
      fprintf(stderr, "tuma-bench ledger: ledger_apply (batch %zu, %zu events): %s\n",
              res->batch_ns.n + 1, n, ledger_strerror(rc));
      status = -1;
      break;
    }
    if (bench_samples_push(&res->batch_ns, b - a) != 0) {
      fprintf(stderr, "tuma-bench ledger: out of memory\n");
      status = -1;
      break;
    }
    for (size_t i = 0; i < n; i++) {
      ledger_result x = results[i];
      if (x != LEDGER_OK) {
        res->errors++;
        res->by_result[(unsigned)x < LEDGER_RESULT_COUNT_ ? x : LEDGER_BATCH_STORAGE_ERROR]++;
      } else if (!(ev[i].transfer.flags & LEDGER_TRANSFER_PENDING)) {
        res->expected_posted += ev[i].transfer.amount;
      }
    }
    res->events += n;
    res->transfers += completing;
    if (res->transfers >= seg_next) {
      if (push_segment(res, (double)(res->transfers - seg_done) * 1e9 / (double)(b - seg_t))) {
        fprintf(stderr, "tuma-bench ledger: out of memory\n");
        status = -1;
        break;
      }
      seg_done = res->transfers;
      seg_t = b;
      while (seg_next <= res->transfers)
        seg_next += o->segment;
    }
  }
  uint64_t t1 = bench_now_ns();
  bench_cpu_sample(&cpu1);
  res->seconds = (double)(t1 - t0) / 1e9;
  res->cpu_self_s = bench_cpu_self_s(&cpu0, &cpu1);
  res->cpu_other_pct = bench_cpu_other_pct(&cpu0, &cpu1);
  /* A trailing partial segment is reported only when there is no full one. */
  if (status == 0 && res->nsegments == 0 && res->transfers > 0 && t1 > t0 &&
      push_segment(res, (double)res->transfers * 1e9 / (double)(t1 - t0)) != 0) {
    fprintf(stderr, "tuma-bench ledger: out of memory\n");
    status = -1;
  }
  free(ring);
  return status;
}

/* Decimal text of a 128-bit unsigned integer into buf (at least 40 bytes). */
static const char *u128_str(unsigned __int128 v, char *buf, size_t len) {
  char *p = buf + len - 1;
  *p = '\0';
  do {
    *--p = (char)('0' + (int)(v % 10));
    v /= 10;
  } while (v && p > buf);
  return p;
}

static void print_json(const lb_opts *o, const lb_result *res, const char *base) {
  bench_samples s = res->batch_ns; /* sorted by the caller */
  char b1[48], b2[48], b3[48], b4[48];
  printf("{\"bench\":\"ledger\",\"durable\":%s,\"accounts\":%" PRIu64 ",\"batch\":%" PRIu64
         ",\"hot_accounts\":%" PRIu64 ",\"hot_percent\":%" PRIu64 ",\"two_phase_percent\":%" PRIu64
         ",\"ids\":\"%s\",\"seed\":%" PRIu64,
         o->nosync ? "false" : "true", o->accounts, o->batch, o->hot_accounts, o->hot_percent,
         o->two_phase_percent, o->ids_random ? "random" : "time", o->seed);
  printf(",\"setup_seconds\":%.3f,\"transfers\":%" PRIu64 ",\"events\":%" PRIu64
         ",\"pending_posted_pairs\":%" PRIu64 ",\"seconds\":%.3f,\"transfers_per_sec\":%.1f"
         ",\"events_per_sec\":%.1f,\"batches\":%zu,\"batch_p50_ms\":%.3f,\"batch_p99_ms\":%.3f"
         ",\"batch_max_ms\":%.3f",
         res->setup_seconds, res->transfers, res->events, res->pending, res->seconds,
         res->seconds > 0 ? (double)res->transfers / res->seconds : 0.0,
         res->seconds > 0 ? (double)res->events / res->seconds : 0.0, s.n,
         bench_samples_percentile_ms(&s, 50), bench_samples_percentile_ms(&s, 99),
         bench_samples_max_ms(&s));
  printf(",\"segment\":%" PRIu64 ",\"segments_per_sec\":[", o->segment);
  for (size_t i = 0; i < res->nsegments; i++)
    printf("%s%.1f", i ? "," : "", res->segments[i]);
  printf("],\"errors\":%" PRIu64 ",\"error_results\":{", res->errors);
  int first = 1;
  for (unsigned i = 0; i < LEDGER_RESULT_COUNT_; i++) {
    if (res->by_result[i]) {
      printf("%s\"%s\":%" PRIu64, first ? "" : ",", ledger_result_name((ledger_result)i),
             res->by_result[i]);
      first = 0;
    }
  }
  printf("},\"invariants\":\"%s\",\"totals\":\"%s\",\"debits_posted\":%s,\"credits_posted\":%s"
         ",\"debits_pending\":%s,\"credits_pending\":%s",
         res->invariants_ok ? "ok" : "fail", res->totals_ok ? "ok" : "fail",
         u128_str(res->totals.debits_posted, b1, sizeof b1),
         u128_str(res->totals.credits_posted, b2, sizeof b2),
         u128_str(res->totals.debits_pending, b3, sizeof b3),
         u128_str(res->totals.credits_pending, b4, sizeof b4));
  printf(",\"journal_seq\":%" PRIu64 ",\"db_bytes\":%" PRIu64 ",\"db_alloc_bytes\":%" PRIu64
         ",\"cpu_self_seconds\":%.3f,\"cpu_other_pct\":%.1f,\"tmpdir\":",
         res->journal_seq, res->db_bytes, res->db_alloc_bytes, res->cpu_self_s, res->cpu_other_pct);
  bench_json_str(stdout, base);
  printf("}\n");
}

static void print_table(const lb_opts *o, const lb_result *res, const char *base) {
  bench_samples s = res->batch_ns; /* sorted by the caller */
  char b1[48], b2[48];
  printf("tuma-bench ledger: %" PRIu64 " accounts, %" PRIu64 " transfers, batch %" PRIu64
         ", ids %s, %s\n",
         o->accounts, o->transfers, o->batch, o->ids_random ? "random" : "time",
         o->nosync ? "UNSAFE NOSYNC (not durable)" : "durable (sync on every commit)");
  if (o->hot_percent)
    printf("  hot              %" PRIu64 "%% of each side from the first %" PRIu64 " accounts\n",
           o->hot_percent, o->hot_accounts);
  if (o->two_phase_percent)
    printf("  two-phase        %" PRIu64 "%%: %" PRIu64
           " pending + post pairs, each counted as one transfer\n",
           o->two_phase_percent, res->pending);
  printf("  setup            %" PRIu64 " accounts in %.3f s (untimed)\n", o->accounts,
         res->setup_seconds);
  printf("  transfers        %" PRIu64 " (%" PRIu64 " events) in %.3f s\n", res->transfers,
         res->events, res->seconds);
  printf("  throughput       %.0f transfers/s\n",
         res->seconds > 0 ? (double)res->transfers / res->seconds : 0.0);
  printf("  cpu              %.3f s in this process (%.0f%% of one core); others used ",
         res->cpu_self_s, res->seconds > 0 ? 100.0 * res->cpu_self_s / res->seconds : 0.0);
  if (res->cpu_other_pct < 0)
    printf("unknown\n");
  else
    printf("%.0f%% of one core%s\n", res->cpu_other_pct,
           res->cpu_other_pct >= 10 ? "  (NOT A CLEAN MEASUREMENT)" : "");
  printf("  batch latency    p50 %.3f ms  p99 %.3f ms  max %.3f ms  (%zu batches)\n",
         bench_samples_percentile_ms(&s, 50), bench_samples_percentile_ms(&s, 99),
         bench_samples_max_ms(&s), s.n);
  printf("  per %" PRIu64 "   ", o->segment);
  for (size_t i = 0; i < res->nsegments; i++)
    printf(" %.0f", res->segments[i]);
  printf(" transfers/s\n");
  printf("  errors           %" PRIu64 "\n", res->errors);
  for (unsigned i = 0; i < LEDGER_RESULT_COUNT_; i++)
    if (res->by_result[i])
      printf("    %-30s %" PRIu64 "\n", ledger_result_name((ledger_result)i), res->by_result[i]);
  printf("  invariants       %s (debits_posted %s = credits_posted %s; pending %s)\n",
         res->invariants_ok ? "ok" : "FAIL", u128_str(res->totals.debits_posted, b1, sizeof b1),
         u128_str(res->totals.credits_posted, b2, sizeof b2),
         res->totals.debits_pending == res->totals.credits_pending ? "balanced" : "UNBALANCED");
  printf("  totals           %s (posted total = sum of amounts sent)\n",
         res->totals_ok ? "ok" : "FAIL");
  printf("  journal          %" PRIu64 " records\n", res->journal_seq);
  printf("  data directory   %" PRIu64 " bytes (%" PRIu64 " allocated) in %s\n", res->db_bytes,
         res->db_alloc_bytes, base);
}

int bench_ledger_main(int argc, char **argv) {
  lb_opts o = {.accounts = 10000,
               .transfers = 2000000,
               .batch = LEDGER_BATCH_MAX,
               .seed = 1,
               .segment = 500000};
  int rc = ledger_parse(argc, argv, &o);
  if (rc < 0)
    return BENCH_EXIT_OK;
  if (rc != BENCH_EXIT_OK)
    return rc;

  int status = BENCH_EXIT_FAIL;
  const char *base = bench_scratch_base(o.tmpdir);
  char *dir = NULL, *data = NULL;
  ledger *l = NULL;
  ledger_id *accounts = NULL;
  ledger_event *ev = NULL;
  ledger_result *results = NULL;
  lb_result res;
  memset(&res, 0, sizeof res);
  bench_rng rng;
  bench_rng_seed(&rng, o.seed);
  lb_ids ids = {.random = o.ids_random, .salt = (uint16_t)bench_rng_next(&rng)};

  accounts = malloc((size_t)o.accounts * sizeof *accounts);
  ev = malloc(LEDGER_BATCH_MAX * sizeof *ev);
  results = malloc(LEDGER_BATCH_MAX * sizeof *results);
  if (!accounts || !ev || !results) {
    fprintf(stderr, "tuma-bench ledger: out of memory\n");
    goto out;
  }
  if (bench_scratch_create(base, "ledger", &dir) != 0) {
    fprintf(stderr, "tuma-bench ledger: cannot create a directory in %s: %s\n", base,
            strerror(errno));
    goto out;
  }
  size_t dlen = strlen(dir) + sizeof "/data";
  data = malloc(dlen);
  if (!data) {
    fprintf(stderr, "tuma-bench ledger: out of memory\n");
    goto out;
  }
  snprintf(data, dlen, "%s/data", dir);

  ledger_options lopts;
  memset(&lopts, 0, sizeof lopts);
  lopts.flags = o.nosync ? LEDGER_OPEN_UNSAFE_NOSYNC_BENCH_ONLY : 0;
  rc = ledger_open(data, o.nosync ? &lopts : NULL, &l);
  if (rc != 0) {
    fprintf(stderr, "tuma-bench ledger: ledger_open(%s): %s\n", data, ledger_strerror(rc));
    goto out;
  }

  uint64_t t = bench_now_ns();
  if (create_accounts(l, &o, &ids, &rng, accounts, ev, results, &res) != 0)
    goto out;
  res.setup_seconds = (double)(bench_now_ns() - t) / 1e9;

  if (run_transfers(l, &o, &ids, &rng, accounts, ev, results, &res) != 0)
    goto out;

  rc = ledger_totals_of(l, &res.totals);
  if (rc != 0) {
    fprintf(stderr, "tuma-bench ledger: ledger_totals_of: %s\n", ledger_strerror(rc));
    goto out;
  }
  res.invariants_ok = res.totals.debits_posted == res.totals.credits_posted &&
                      res.totals.debits_pending == res.totals.credits_pending &&
                      res.totals.accounts == o.accounts;
  res.totals_ok = res.totals.debits_posted == res.expected_posted &&
                  (res.errors != 0 || res.totals.debits_pending == 0);
  uint8_t head_hash[32];
  rc = ledger_journal_head(l, &res.journal_seq, head_hash);
  if (rc != 0) {
    fprintf(stderr, "tuma-bench ledger: ledger_journal_head: %s\n", ledger_strerror(rc));
    goto out;
  }
  ledger_close(l);
  l = NULL;
  if (bench_scratch_size(data, &res.db_bytes, &res.db_alloc_bytes) != 0) {
    fprintf(stderr, "tuma-bench ledger: measuring %s: %s\n", data, strerror(errno));
    goto out;
  }

  bench_samples_sort(&res.batch_ns);
  if (o.json)
    print_json(&o, &res, base);
  else
    print_table(&o, &res, base);
  status = res.errors == 0 && res.invariants_ok && res.totals_ok ? BENCH_EXIT_OK : BENCH_EXIT_FAIL;

out:
  if (res.interrupted) {
    fprintf(stderr, "tuma-bench ledger: interrupted (signal %d)\n", res.interrupted);
    status = 128 + res.interrupted;
  }
  ledger_close(l);
  if (dir) {
    if (o.keep) {
      fprintf(stderr, "tuma-bench ledger: kept %s\n", data ? data : dir);
    } else if (bench_scratch_remove(dir) != 0) {
      fprintf(stderr, "tuma-bench ledger: removing %s: %s\n", dir, strerror(errno));
      status = BENCH_EXIT_FAIL;
    }
  }
  bench_samples_free(&res.batch_ns);
  free(res.segments);
  free(results);
  free(ev);
  free(accounts);
  free(data);
  free(dir);
  return status;
}
