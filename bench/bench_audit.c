/* bench_audit.c — `tuma-bench audit`: how fast `tuma audit verify` checks a ledger.
 *
 * Builds a ledger of N events (accounts first, then batches of transfers of which a share are
 * two-phase: pending in one batch, posted or voided in the next), with a signed checkpoint
 * every 100 batches and at the end, then runs the whole audit (ledger_audit_verify: hash
 * chain, checkpoint signatures, replay, byte-for-byte comparison of every account) a few
 * times and reports events per second. The build uses LEDGER_OPEN_UNSAFE_NOSYNC_BENCH_ONLY and
 * one fdatasync at its end: only the verify is measured, and it reads what the page cache holds.
 */
#include "audit.h"
#include "bench.h"
#include "ledger.h"

#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct audit_opts {
  uint64_t events, accounts, batch, pending_pct, runs;
  int json, keep;
  const char *tmpdir;
} audit_opts;

static void usage(FILE *out) {
  fputs("usage: tuma-bench audit [--events N] [--accounts N] [--batch N] [--pending-pct P]\n"
        "                        [--runs N] [--tmpdir DIR] [--keep] [--json]\n"
        "  --events N       events in the ledger, accounts included (default 1000000)\n"
        "  --accounts N     accounts (default 10000)\n"
        "  --batch N        events per batch (default 8190)\n"
        "  --pending-pct P  share of transfers that are two-phase, posted or voided in the\n"
        "                   next batch (default 10)\n"
        "  --runs N         verify runs; the median is reported (default 3)\n"
        "  --keep           keep the scratch directory (printed)\n",
        out);
}

static int parse(int argc, char **argv, audit_opts *o) {
  *o = (audit_opts){1000000, 10000, LEDGER_BATCH_MAX, 10, 3, 0, 0, NULL};
  for (int i = 1; i < argc; i++) {
    const char *v;
    int m;
    struct {
      const char *name;
      uint64_t *out, min, max;
    } nums[] = {
        {"--events", &o->events, 1, 1000000000},
        {"--accounts", &o->accounts, 2, 10000000},
        {"--batch", &o->batch, 2, LEDGER_BATCH_MAX},
        {"--pending-pct", &o->pending_pct, 0, 50},
        {"--runs", &o->runs, 1, 100},
    };
    int matched = 0;
    for (size_t k = 0; k < sizeof nums / sizeof nums[0] && !matched; k++) {
      m = bench_opt(argc, argv, &i, "audit", nums[k].name, &v);
      if (m < 0)
        return -1;
      if (m > 0) {
        matched = 1;
        if (bench_parse_u64("audit", nums[k].name, v, nums[k].min, nums[k].max, nums[k].out))
          return -1;
      }
    }
    if (matched)
      continue;
    if ((m = bench_opt(argc, argv, &i, "audit", "--tmpdir", &v)) != 0) {
      if (m < 0)
        return -1;
      o->tmpdir = v;
    } else if (!strcmp(argv[i], "--json")) {
      o->json = 1;
    } else if (!strcmp(argv[i], "--keep")) {
      o->keep = 1;
    } else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
      usage(stdout);
      return 1;
    } else {
      fprintf(stderr, "tuma-bench audit: unknown option '%s'\n", argv[i]);
      usage(stderr);
      return -1;
    }
  }
  if (o->accounts > o->events)
    o->accounts = o->events;
  return 0;
}

static ledger_id account_id(uint64_t k) {
  return ledger_id_make(0x0100000000000000ull, k + 1);
}

/* Builds the ledger; 0 or -1 after a message. */
static int build(const char *dir, const audit_opts *o, ledger_audit_key *key) {
  ledger_options lo = {0};
  lo.flags = LEDGER_OPEN_UNSAFE_NOSYNC_BENCH_ONLY;
  lo.map_size = 1ull << 30;
  ledger *l = NULL;
  int rc = ledger_open(dir, &lo, &l);
  if (rc) {
    fprintf(stderr, "tuma-bench audit: %s: %s\n", dir, ledger_strerror(rc));
    return -1;
  }
  size_t cap = (size_t)o->batch;
  ledger_event *ev = calloc(cap, sizeof *ev);
  ledger_result *res = calloc(cap, sizeof *res);
  ledger_id *pend = calloc(cap, sizeof *pend), *next_pend = calloc(cap, sizeof *next_pend);
  if (!ev || !res || !pend || !next_pend) {
    fputs("tuma-bench audit: out of memory\n", stderr);
    rc = -1;
    goto out;
  }
  bench_rng rng;
  bench_rng_seed(&rng, 42);
  uint64_t done = 0, made_accounts = 0, next_id = 1, batches = 0;
  size_t n_pend = 0;
  while (done < o->events && !rc) {
    if (bench_interrupted()) {
      rc = -1;
      break;
    }
    size_t n = 0, n_next = 0;
    size_t want = o->events - done < cap ? (size_t)(o->events - done) : cap;
    for (; n < want && made_accounts < o->accounts; n++, made_accounts++) {
      memset(&ev[n], 0, sizeof ev[n]);
      ev[n].kind = LEDGER_EVENT_CREATE_ACCOUNT;
      ev[n].account.id = account_id(made_accounts);
      ev[n].account.ledger = 840;
      ev[n].account.code = 1;
    }
    /* First resolve last batch's pending transfers, then new transfers. */
    for (size_t k = 0; k < n_pend && n < want; k++, n++) {
      memset(&ev[n], 0, sizeof ev[n]);
      ev[n].kind = LEDGER_EVENT_CREATE_TRANSFER;
      ledger_transfer *t = &ev[n].transfer;
      t->id = ledger_id_make(1, next_id++);
      t->pending_id = pend[k];
      t->flags =
          bench_rng_below(&rng, 4) ? LEDGER_TRANSFER_POST_PENDING : LEDGER_TRANSFER_VOID_PENDING;
    }
    n_pend = 0;
    for (; n < want; n++) {
      memset(&ev[n], 0, sizeof ev[n]);
      ev[n].kind = LEDGER_EVENT_CREATE_TRANSFER;
      ledger_transfer *t = &ev[n].transfer;
      uint64_t d = bench_rng_below(&rng, made_accounts);
      uint64_t c = bench_rng_below(&rng, made_accounts - 1);
      if (c >= d)
        c++;
      t->id = ledger_id_make(1, next_id++);
      t->debit_account_id = account_id(d);
      t->credit_account_id = account_id(c);
      t->amount = 1 + bench_rng_below(&rng, 1000);
      t->ledger = 840;
      t->code = 1;
      if (bench_rng_below(&rng, 100) < o->pending_pct && n + 1 < want) {
        t->flags = LEDGER_TRANSFER_PENDING;
        next_pend[n_next++] = t->id;
      }
    }
    rc = ledger_apply(l, ev, res, n);
    if (rc) {
      fprintf(stderr, "tuma-bench audit: apply: %s\n", ledger_strerror(rc));
      rc = -1;
      break;
    }
    memcpy(pend, next_pend, n_next * sizeof *pend);
    n_pend = n_next;
    done += n;
    if (++batches % 100 == 0 && ledger_checkpoint(l, ledger_audit_key_fingerprint(key),
                                                  ledger_audit_key_sign_cb, key, NULL)) {
      fputs("tuma-bench audit: checkpoint failed\n", stderr);
      rc = -1;
    }
  }
  if (!rc && ledger_checkpoint(l, ledger_audit_key_fingerprint(key), ledger_audit_key_sign_cb, key,
                               NULL)) {
    fputs("tuma-bench audit: checkpoint failed\n", stderr);
    rc = -1;
  }
out:
  free(ev);
  free(res);
  free(pend);
  free(next_pend);
  ledger_close(l);
  return rc;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

int bench_audit_main(int argc, char **argv) {
  audit_opts o;
  int p = parse(argc, argv, &o);
  if (p)
    return p > 0 ? BENCH_EXIT_OK : BENCH_EXIT_USAGE;
  char *dir = NULL;
  int status = BENCH_EXIT_FAIL;
  ledger_audit_key *key = NULL, *pub = NULL;
  double *eps = calloc(o.runs, sizeof *eps);
  if (!eps || bench_scratch_create(bench_scratch_base(o.tmpdir), "audit", &dir) != 0) {
    perror("tuma-bench audit: scratch directory");
    free(eps);
    return BENCH_EXIT_FAIL;
  }
  char priv_path[4200], pub_path[4200], ldir[4200], err[512] = "";
  snprintf(priv_path, sizeof priv_path, "%s/checkpoint.key", dir);
  snprintf(pub_path, sizeof pub_path, "%s/checkpoint.pub", dir);
  snprintf(ldir, sizeof ldir, "%s/ledger", dir);
  if (ledger_audit_keygen(priv_path, pub_path, err, sizeof err) ||
      ledger_audit_key_load(priv_path, 1, &key, err, sizeof err) ||
      ledger_audit_key_load(pub_path, 0, &pub, err, sizeof err)) {
    fprintf(stderr, "tuma-bench audit: %s\n", err);
    goto out;
  }
  uint64_t t0 = bench_now_ns();
  if (build(ldir, &o, key))
    goto out;
  double build_s = (double)(bench_now_ns() - t0) / 1e9;
  /* The build did not sync: write its pages out now, so that the kernel's writeback does not
   * run during the timed verifies (the ledger is measured at rest, as an auditor finds it). */
  char data_path[4300];
  snprintf(data_path, sizeof data_path, "%s/data.mdb", ldir);
  int dfd = open(data_path, O_RDONLY | O_CLOEXEC);
  if (dfd >= 0) {
    fdatasync(dfd);
    close(dfd);
  }
  ledger_audit_report r;
  ledger_audit_options ao = {0};
  ao.pubkey = pub;
  ao.require_signed_head = 1;
  bench_cpu c0, c1;
  bench_cpu_sample(&c0);
  for (uint64_t k = 0; k < o.runs; k++) {
    double secs = 0;
    int rc = ledger_audit_verify(ldir, &ao, &r, &secs, err, sizeof err);
    if (rc) {
      fprintf(stderr, "tuma-bench audit: verify failed at record %" PRIu64 ": %s: %s %s\n",
              r.bad_seq, ledger_audit_problem_name(r.problem), r.detail, err);
      goto out;
    }
    eps[k] = secs > 0 ? (double)r.events / secs : 0;
  }
  bench_cpu_sample(&c1);
  qsort(eps, o.runs, sizeof *eps, cmp_double);
  double median = eps[o.runs / 2];
  /* CPU time of both threads over all runs: less sensitive to a shared machine than wall time. */
  double cpu_s = bench_cpu_self_s(&c0, &c1);
  double per_cpu_s = cpu_s > 0 ? (double)r.events * (double)o.runs / cpu_s : 0;
  uint64_t apparent = 0, allocated = 0;
  bench_scratch_size(ldir, &apparent, &allocated);
  if (o.json) {
    printf("{\"benchmark\":\"audit\",\"events\":%" PRIu64 ",\"accounts\":%" PRIu64
           ",\"batches\":%" PRIu64 ",\"checkpoints\":%" PRIu64 ",\"runs\":%" PRIu64
           ",\"events_per_sec\":%.0f,\"events_per_sec_min\":%.0f,\"events_per_sec_max\":%.0f,"
           "\"seconds_median\":%.3f,\"events_per_cpu_sec\":%.0f,\"build_seconds\":%.1f,"
           "\"db_bytes\":%" PRIu64 ",\"other_cpu_pct\":%.0f}\n",
           r.events, r.accounts, r.batches, r.checkpoints, o.runs, median, eps[0], eps[o.runs - 1],
           median > 0 ? (double)r.events / median : 0, per_cpu_s, build_s, apparent,
           bench_cpu_other_pct(&c0, &c1));
  } else {
    printf("tuma-bench audit: verify (chain + %" PRIu64 " signed checkpoints + replay + compare)\n"
           "  events          %" PRIu64 " (%" PRIu64 " accounts, %" PRIu64 " batches)\n"
           "  journal + db    %.1f MB (built in %.1f s, nosync)\n"
           "  events/s        %.0f median of %" PRIu64 " (min %.0f, max %.0f)\n"
           "  seconds         %.3f\n"
           "  per CPU second  %.0f events (both threads)\n"
           "  other CPU       %.0f%% of one core during the runs\n",
           r.checkpoints, r.events, r.accounts, r.batches, (double)apparent / 1e6, build_s, median,
           o.runs, eps[0], eps[o.runs - 1], median > 0 ? (double)r.events / median : 0, per_cpu_s,
           bench_cpu_other_pct(&c0, &c1));
  }
  status = BENCH_EXIT_OK;
out:
  ledger_audit_key_free(key);
  ledger_audit_key_free(pub);
  free(eps);
  if (o.keep)
    fprintf(stderr, "tuma-bench audit: kept %s\n", dir);
  else
    bench_scratch_remove(dir);
  free(dir);
  return status;
}
