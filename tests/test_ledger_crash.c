/* test_ledger_crash.c — kill -9 under load loses nothing acknowledged (DESIGN §2, §6).
 *
 * A forked child opens a ledger in a scratch directory and applies deterministic batches
 * (content derived from the batch number), writing each batch number to a pipe once
 * ledger_apply() returned 0: that is the acknowledgment. The parent SIGKILLs the child at a
 * random moment (seeded; the seed is printed and TUMA_CRASH_SEED replays it), reopens the
 * ledger and checks that every acknowledged batch is there in full, that no batch is partly
 * there, that balances equal a model of the committed batches, that the invariants hold, that
 * the journal verifies and that its head counts the committed batches. The directory
 * accumulates across rounds: each child continues after the last committed batch.
 *
 * Batch 1 creates the accounts and funds the prefunded ones. Batch k ≥ 2 holds m transfers
 * with ids (k, i + 1): single-phase transfers, pending transfers posted in the same batch,
 * pending transfers voided by the next batch, debits of prefunded accounts, and at its end a
 * linked chain that fails (exceeds_credits) followed by one more successful transfer.
 */
#include "ledger_fixture.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum {
  CRASH_ACCOUNTS = 8, /* ids 1..8 */
  CRASH_SETUP_EVENTS = CRASH_ACCOUNTS + 2,
};

#define CRASH_FUND 1000000000000000ull /* what accounts 5 and 6 get from account 8 */
#define CRASH_START_TAG (1ull << 63)   /* pipe message: the child starts after this seq */
#define CRASH_FAIL_TAG (1ull << 62)    /* pipe message: the child found something wrong */

/* ---- deterministic batch content ---------------------------------------------------- */

static uint64_t crash_amount(uint64_t k, uint32_t i) {
  return 1 + (k * 2654435761u + (uint64_t)i * 40503u) % 997;
}

static ledger_id crash_tid(uint64_t k, uint32_t i) {
  return ledger_id_make(k, (uint64_t)i + 1);
}

static ledger_event crash_xfer(uint64_t k, uint32_t i, uint64_t debit, uint64_t credit,
                               uint64_t amount, uint16_t flags) {
  ledger_event ev = fixture_transfer(0, debit, credit, amount, flags);
  ev.transfer.id = crash_tid(k, i);
  ev.transfer.user_data_64 = k;
  ev.transfer.user_data_32 = i;
  return ev;
}

/* Number of events of batch k. */
static uint32_t crash_batch_len(uint64_t k, uint32_t m) {
  return k == 1 ? CRASH_SETUP_EVENTS : m;
}

/* Writes batch k (m events when k ≥ 2, m ≥ 16) into ev[] and the results it must get into
 * want[]. */
static void crash_build(uint64_t k, uint32_t m, ledger_event *ev, ledger_result *want) {
  if (k == 1) {
    for (uint32_t a = 1; a <= CRASH_ACCOUNTS; a++) {
      uint16_t flags = 0;
      if (a == 5 || a == 6 || a == 7)
        flags = LEDGER_ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS;
      if (a == 4)
        flags = LEDGER_ACCOUNT_HISTORY;
      ev[a - 1] = fixture_account(a, flags);
      want[a - 1] = LEDGER_OK;
    }
    ev[CRASH_ACCOUNTS] = crash_xfer(1, 0, 8, 5, CRASH_FUND, 0);
    ev[CRASH_ACCOUNTS + 1] = crash_xfer(1, 1, 8, 6, CRASH_FUND, 0);
    want[CRASH_ACCOUNTS] = want[CRASH_ACCOUNTS + 1] = LEDGER_OK;
    return;
  }
  for (uint32_t i = 0; i < m; i++) {
    uint64_t amt = crash_amount(k, i);
    want[i] = LEDGER_OK;
    if (i == m - 3) { /* a linked chain whose second event fails */
      ev[i] = crash_xfer(k, i, 1, 2, 5, LEDGER_TRANSFER_LINKED);
      want[i] = LEDGER_LINKED_EVENT_FAILED;
      continue;
    }
    if (i == m - 2) { /* account 7 is prefunded-only and never funded */
      ev[i] = crash_xfer(k, i, 7, 1, 1, 0);
      want[i] = LEDGER_EXCEEDS_CREDITS;
      continue;
    }
    if (i == m - 1) {
      ev[i] = crash_xfer(k, i, 2, 3, amt, 0);
      continue;
    }
    switch (i % 10) {
    case 5: /* pending 5 → 2, posted by the next event */
      ev[i] = crash_xfer(k, i, 5, 2, amt, LEDGER_TRANSFER_PENDING);
      break;
    case 6:
      ev[i] = crash_xfer(k, i, 5, 2, crash_amount(k, i - 1), LEDGER_TRANSFER_POST_PENDING);
      ev[i].transfer.pending_id = crash_tid(k, i - 1);
      break;
    case 7: /* pending 6 → 3, voided by batch k + 1 */
      ev[i] = crash_xfer(k, i, 6, 3, amt, LEDGER_TRANSFER_PENDING);
      break;
    case 8:
      if (k > 2) {
        ev[i] = crash_xfer(k, i, 6, 3, crash_amount(k - 1, i - 1), LEDGER_TRANSFER_VOID_PENDING);
        ev[i].transfer.pending_id = crash_tid(k - 1, i - 1);
      } else {
        ev[i] = crash_xfer(k, i, 3, 4, amt, 0);
      }
      break;
    case 9:
      ev[i] = crash_xfer(k, i, 6, 4, amt, 0);
      break;
    default: {
      uint64_t a = 1 + (i + k) % 4, b = 1 + (i + k + 1) % 4;
      ev[i] = crash_xfer(k, i, a, b, amt, 0);
      break;
    }
    }
  }
}

/* ---- the model of balances ------------------------------------------------------------ */

typedef struct crash_model {
  uint64_t batches; /* batches folded in so far */
  uint64_t dp[CRASH_ACCOUNTS + 1], dpo[CRASH_ACCOUNTS + 1];
  uint64_t cp[CRASH_ACCOUNTS + 1], cpo[CRASH_ACCOUNTS + 1];
} crash_model;

static void crash_model_fold(crash_model *md, uint64_t k, uint32_t m, ledger_event *ev,
                             ledger_result *want) {
  uint32_t n = crash_batch_len(k, m);
  crash_build(k, m, ev, want);
  for (uint32_t i = 0; i < n; i++) {
    if (want[i] != LEDGER_OK || ev[i].kind != LEDGER_EVENT_CREATE_TRANSFER)
      continue;
    const ledger_transfer *t = &ev[i].transfer;
    uint64_t d = t->debit_account_id.lo, c = t->credit_account_id.lo, a = t->amount;
    if (t->flags & LEDGER_TRANSFER_PENDING) {
      md->dp[d] += a;
      md->cp[c] += a;
    } else if (t->flags & LEDGER_TRANSFER_POST_PENDING) {
      md->dp[d] -= a;
      md->cp[c] -= a;
      md->dpo[d] += a;
      md->cpo[c] += a;
    } else if (t->flags & LEDGER_TRANSFER_VOID_PENDING) {
      md->dp[d] -= a;
      md->cp[c] -= a;
    } else {
      md->dpo[d] += a;
      md->cpo[c] += a;
    }
  }
  md->batches = k;
}

/* ---- the child ------------------------------------------------------------------------ */

static int crash_send(int fd, uint64_t v) {
  ssize_t w;
  do
    w = write(fd, &v, sizeof v);
  while (w < 0 && errno == EINTR);
  return w == (ssize_t)sizeof v ? 0 : -1;
}

/* Never returns: applies batches after the journal head until max_batches, then waits to be
 * killed. Uses no Criterion call (it is not a test worker). */
static void crash_child(const char *dir, uint32_t m, uint64_t max_batches, int fd) {
  ledger *l = NULL;
  if (ledger_open(dir, NULL, &l) != 0)
    _exit(10);
  uint64_t seq = 0;
  uint8_t hash[32];
  if (ledger_journal_head(l, &seq, hash) != 0)
    _exit(11);
  if (crash_send(fd, CRASH_START_TAG | seq) != 0)
    _exit(12);
  size_t cap = m > CRASH_SETUP_EVENTS ? m : CRASH_SETUP_EVENTS;
  ledger_event *ev = calloc(cap, sizeof *ev);
  ledger_result *want = calloc(cap, sizeof *want);
  ledger_result *got = calloc(cap, sizeof *got);
  if (!ev || !want || !got)
    _exit(13);
  for (uint64_t k = seq + 1; k <= max_batches; k++) {
    uint32_t n = crash_batch_len(k, m);
    crash_build(k, m, ev, want);
    if (ledger_apply(l, ev, got, n) != 0)
      _exit(14);
    for (uint32_t i = 0; i < n; i++)
      if (got[i] != want[i]) {
        crash_send(fd, CRASH_FAIL_TAG | ((uint64_t)i << 32) | got[i]);
        _exit(15);
      }
    if (crash_send(fd, k) != 0)
      _exit(16);
  }
  for (;;)
    pause();
}

/* ---- the parent ----------------------------------------------------------------------- */

typedef struct crash_rng {
  uint64_t s;
} crash_rng;

static uint64_t crash_rand(crash_rng *r) { /* splitmix64 */
  uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

static uint64_t crash_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t crash_seed(void) {
  const char *s = getenv("TUMA_CRASH_SEED");
  if (s && *s)
    return strtoull(s, NULL, 0);
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 20) ^ (uint64_t)getpid();
}

/* What the parent learned from one child's pipe. */
typedef struct crash_pipe {
  int fd;
  unsigned char buf[8];
  size_t have;
  int started;
  uint64_t start_seq;
  uint64_t last_ack; /* 0 = none this round */
  uint64_t acks;     /* this round */
  uint64_t last_ack_at, ack_interval;
  int eof;
} crash_pipe;

static void crash_take(crash_pipe *p, uint64_t v) {
  cr_assert(!(v & CRASH_FAIL_TAG), "child: event %u got result %s", (unsigned)((v >> 32) & 0xffff),
            ledger_result_name((ledger_result)(v & 0xffffffffu)));
  if (v & CRASH_START_TAG) {
    cr_assert(!p->started, "two start messages");
    p->started = 1;
    p->start_seq = v & ~CRASH_START_TAG;
    return;
  }
  cr_assert(p->started, "ack before start");
  uint64_t want = p->acks ? p->last_ack + 1 : p->start_seq + 1;
  cr_assert_eq(v, want, "ack %" PRIu64 ", expected %" PRIu64, v, want);
  uint64_t now = crash_now_ns();
  if (p->acks)
    p->ack_interval = now - p->last_ack_at;
  p->last_ack_at = now;
  p->last_ack = v;
  p->acks++;
}

/* Reads what is available within timeout_ms (-1 = until EOF). */
static void crash_read(crash_pipe *p, int timeout_ms) {
  uint64_t end = crash_now_ns() + (uint64_t)(timeout_ms < 0 ? 0 : timeout_ms) * 1000000ull;
  while (!p->eof) {
    int wait_ms = -1;
    if (timeout_ms >= 0) {
      uint64_t now = crash_now_ns();
      if (now >= end)
        return;
      wait_ms = (int)((end - now + 999999) / 1000000);
    }
    struct pollfd pfd = {.fd = p->fd, .events = POLLIN};
    int r = poll(&pfd, 1, wait_ms);
    if (r < 0 && errno == EINTR)
      continue;
    cr_assert(r >= 0, "poll: %s", strerror(errno));
    if (r == 0)
      return;
    ssize_t got = read(p->fd, p->buf + p->have, sizeof p->buf - p->have);
    if (got < 0 && errno == EINTR)
      continue;
    cr_assert(got >= 0, "read: %s", strerror(errno));
    if (got == 0) {
      p->eof = 1;
      cr_assert_eq(p->have, 0, "torn message on the pipe");
      return;
    }
    p->have += (size_t)got;
    if (p->have == sizeof p->buf) {
      uint64_t v;
      memcpy(&v, p->buf, sizeof v);
      p->have = 0;
      crash_take(p, v);
    }
  }
}

typedef struct crash_check {
  uint32_t m;
  ledger_event *ev;
  ledger_result *want;
  crash_model model;
  uint64_t checked; /* batches whose every event was checked present */
} crash_check;

/* Asserts that batch k is entirely present (present = 1) or entirely absent. */
static void crash_check_batch(ledger *l, crash_check *c, uint64_t k, int present) {
  uint32_t n = crash_batch_len(k, c->m);
  crash_build(k, c->m, c->ev, c->want);
  uint32_t found = 0, expected = 0;
  for (uint32_t i = 0; i < n; i++) {
    int should = present && c->want[i] == LEDGER_OK;
    expected += (uint32_t)should;
    if (c->ev[i].kind == LEDGER_EVENT_CREATE_ACCOUNT) {
      ledger_account a;
      int rc = ledger_lookup_account(l, c->ev[i].account.id, &a);
      if (!should) {
        cr_assert_eq(rc, LEDGER_E_NOTFOUND, "batch %" PRIu64 " account %u: %s", k, i,
                     ledger_strerror(rc));
        continue;
      }
      cr_assert_eq(rc, 0, "batch %" PRIu64 " account %u lost: %s", k, i, ledger_strerror(rc));
      cr_assert_eq(a.flags, c->ev[i].account.flags);
      cr_assert_neq(a.timestamp, 0);
      found++;
      continue;
    }
    ledger_transfer t;
    int rc = ledger_lookup_transfer(l, c->ev[i].transfer.id, &t);
    if (!should) {
      cr_assert_eq(rc, LEDGER_E_NOTFOUND,
                   "batch %" PRIu64 " event %u should be absent (%s) but lookup says %s", k, i,
                   present ? "its result is a failure" : "batch not committed",
                   ledger_strerror(rc));
      continue;
    }
    cr_assert_eq(rc, 0, "batch %" PRIu64 " transfer %u lost: %s (%u of %u found so far)", k, i,
                 ledger_strerror(rc), found, expected);
    cr_assert_neq(t.timestamp, 0);
    t.timestamp = 0;
    cr_assert(memcmp(&t, &c->ev[i].transfer, sizeof t) == 0,
              "batch %" PRIu64 " transfer %u stored with different fields (amount %" PRIu64
              ", want %" PRIu64 ")",
              k, i, t.amount, c->ev[i].transfer.amount);
    found++;
  }
  cr_assert_eq(found, expected);
}

/* Pending states: batch k's pending-then-posted transfers are posted, its pending transfers
 * for the next batch are open if k is the last batch and voided otherwise. */
static void crash_check_pending(ledger *l, crash_check *c, uint64_t k, uint64_t last) {
  if (k < 2)
    return;
  for (uint32_t i = 0; i + 3 < c->m; i++) {
    uint32_t r = i % 10;
    if (r != 5 && r != 7)
      continue;
    ledger_pending_state st = LEDGER_PENDING_NONE;
    uint64_t resolved = 1;
    cr_assert_eq(ledger_pending_state_of(l, crash_tid(k, i), &st, &resolved), 0);
    ledger_pending_state want =
        r == 5 ? LEDGER_PENDING_POSTED : (k == last ? LEDGER_PENDING_OPEN : LEDGER_PENDING_VOIDED);
    cr_assert_eq(st, want, "batch %" PRIu64 " pending %u: state %d, want %d", k, i, (int)st,
                 (int)want);
    if (want == LEDGER_PENDING_OPEN)
      cr_assert_eq(resolved, 0);
    else
      cr_assert_neq(resolved, 0);
  }
}

/* Reopens the ledger after a kill and checks everything; returns the committed batch count.
 * `known` batches are known durable (acknowledged, or found committed after an earlier kill);
 * `may_add` is 1 if the child may have committed one more before dying (it had started). */
static uint64_t crash_verify(const char *dir, crash_check *c, uint64_t known, int may_add) {
  ledger *l = fixture_open(dir, NULL);
  uint64_t bad = 0;
  int rc = ledger_journal_verify(l, &bad);
  cr_assert_eq(rc, 0, "journal_verify: %s at seq %" PRIu64, ledger_strerror(rc), bad);
  uint64_t seq = 0;
  uint8_t hash[32];
  cr_assert_eq(ledger_journal_head(l, &seq, hash), 0);
  cr_assert(seq == known || (may_add && seq == known + 1),
            "journal head %" PRIu64 " but %" PRIu64 " batches known durable (acknowledged or "
            "committed before)%s",
            seq, known, may_add ? ", and at most one more in flight" : "");
  /* Every batch up to the head is there in full, the next one not at all: the number of
   * committed batches is the head's seq. */
  uint64_t from = c->checked ? c->checked : 1;
  for (uint64_t k = from; k <= seq; k++)
    crash_check_batch(l, c, k, 1);
  crash_check_batch(l, c, seq + 1, 0);
  c->checked = seq;
  if (seq >= 2) {
    crash_check_pending(l, c, seq, seq);
    crash_check_pending(l, c, seq - 1, seq);
  }
  /* Balances equal the model of batches 1..seq. */
  cr_assert_geq(seq, c->model.batches, "the journal head went back");
  for (uint64_t k = c->model.batches + 1; k <= seq; k++)
    crash_model_fold(&c->model, k, c->m, c->ev, c->want);
  if (seq >= 1)
    for (uint64_t a = 1; a <= CRASH_ACCOUNTS; a++) {
      ledger_account acc;
      cr_assert_eq(ledger_lookup_account(l, ledger_id_make(0, a), &acc), 0);
      cr_assert(acc.debits_pending == c->model.dp[a] && acc.debits_posted == c->model.dpo[a] &&
                    acc.credits_pending == c->model.cp[a] && acc.credits_posted == c->model.cpo[a],
                "account %" PRIu64 " after %" PRIu64 " batches: dp %" PRIu64 "/%" PRIu64
                " dpo %" PRIu64 "/%" PRIu64 " cp %" PRIu64 "/%" PRIu64 " cpo %" PRIu64 "/%" PRIu64
                " (got/model)",
                a, seq, acc.debits_pending, c->model.dp[a], acc.debits_posted, c->model.dpo[a],
                acc.credits_pending, c->model.cp[a], acc.credits_posted, c->model.cpo[a]);
    }
  fixture_assert_invariants(l);
  ledger_totals t;
  cr_assert_eq(ledger_totals_of(l, &t), 0);
  cr_assert_eq(t.accounts, seq >= 1 ? CRASH_ACCOUNTS : 0);
  ledger_close(l);
  return seq;
}

typedef enum crash_mode {
  CRASH_RANDOM_DELAY, /* kill at a uniformly random time after the fork */
  CRASH_AFTER_ACK,    /* kill a random fraction of a batch's duration after some ack */
} crash_mode;

static void crash_run(const char *name, uint32_t m, unsigned rounds, crash_mode mode,
                      uint64_t max_delay_ms, uint64_t max_batches, uint64_t budget_ms) {
  uint64_t seed = crash_seed();
  crash_rng rng = {seed};
  cr_log_info("%s: seed %" PRIu64 " (TUMA_CRASH_SEED=%" PRIu64 " replays it)", name, seed, seed);
  fprintf(stderr, "%s: seed %" PRIu64 "\n", name, seed);
  char *dir = fixture_tmpdir();
  crash_check c = {.m = m};
  size_t cap = m > CRASH_SETUP_EVENTS ? m : CRASH_SETUP_EVENTS;
  c.ev = calloc(cap, sizeof *c.ev);
  c.want = calloc(cap, sizeof *c.want);
  cr_assert(c.ev && c.want);

  uint64_t committed = 0, last_ack = 0, t0 = crash_now_ns();
  uint64_t last_interval = max_delay_ms * 1000000ull; /* between two acks, last measured */
  unsigned done = 0, unacked_commits = 0, progress_rounds = 0;
  for (; done < rounds; done++) {
    if (done >= 3 && (crash_now_ns() - t0) / 1000000 > budget_ms)
      break;
    int fds[2];
    cr_assert_eq(pipe(fds), 0);
    pid_t parent = getpid();
    pid_t pid = fork();
    cr_assert_geq(pid, 0, "fork: %s", strerror(errno));
    if (pid == 0) {
      /* Die with the test process if an assertion ends it early. */
      if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent)
        _exit(20);
      close(fds[0]);
      crash_child(dir, m, max_batches, fds[1]);
    }
    close(fds[1]);
    crash_pipe p = {.fd = fds[0]};
    if (mode == CRASH_RANDOM_DELAY) {
      crash_read(&p, (int)(crash_rand(&rng) % (max_delay_ms + 1)));
    } else {
      /* Wait for an ack (at most 20 s), then kill within the next batch. */
      uint64_t want = 1, deadline = crash_now_ns() + 20000000000ull;
      while (p.acks < want && !p.eof && crash_now_ns() < deadline &&
             !(p.started && p.start_seq + p.acks >= max_batches))
        crash_read(&p, 50);
      cr_assert(p.acks >= want || (p.started && p.start_seq + p.acks >= max_batches),
                "round %u: no ack within 20 s", done);
      uint64_t interval = p.ack_interval ? p.ack_interval : last_interval;
      if (p.ack_interval)
        last_interval = p.ack_interval;
      uint64_t delay_ms = (crash_rand(&rng) % (interval + interval / 4 + 1)) / 1000000;
      crash_read(&p, (int)delay_ms);
    }
    cr_assert_eq(kill(pid, SIGKILL), 0);
    int status = 0;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    crash_read(&p, -1); /* everything the child wrote before dying */
    close(fds[0]);
    cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
              "round %u: the child ended by itself (exit %d)", done,
              WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    if (p.started)
      cr_assert_eq(p.start_seq, committed,
                   "round %u: child started after %" PRIu64 ", the parent saw %" PRIu64
                   " committed",
                   done, p.start_seq, committed);
    /* Durable for sure: what earlier rounds left and what this child acknowledged; the
     * child applies one batch at a time, so at most the next one can be there unacked. */
    uint64_t known = committed;
    if (p.acks) {
      last_ack = p.last_ack;
      known = p.last_ack;
    }
    if (p.ack_interval)
      last_interval = p.ack_interval;
    uint64_t seq = crash_verify(dir, &c, known, p.started);
    if (seq == known + 1)
      unacked_commits++;
    if (seq > committed)
      progress_rounds++;
    committed = seq;
  }
  cr_log_info("%s: %u rounds, %" PRIu64 " batches committed (%" PRIu64
              " acknowledged), %u kills after a commit but before its ack, %u rounds with "
              "progress, %" PRIu64 " ms",
              name, done, committed, last_ack, unacked_commits, progress_rounds,
              (crash_now_ns() - t0) / 1000000);
  fprintf(stderr,
          "%s: %u rounds, %" PRIu64 " batches committed, %u kills between commit and ack, "
          "%u rounds with progress, last batch interval %" PRIu64 " ms\n",
          name, done, committed, unacked_commits, progress_rounds, last_interval / 1000000);
  cr_assert_geq(done, 3);
  cr_assert_geq(committed, 2, "the children never got past the setup batch");
  /* A last full pass over every batch, now that the directory holds all rounds' work. */
  c.checked = 0;
  cr_assert_geq(committed, last_ack);
  crash_verify(dir, &c, committed, 0);
  free(c.ev);
  free(c.want);
  fixture_rmtree(dir);
  free(dir);
}

Test(ledger_crash, kill_at_random_moments, .timeout = 90) {
  /* Small batches, many rounds; some kills land in ledger_open() or the setup batch. */
  crash_run("kill_at_random_moments", 64, 36, CRASH_RANDOM_DELAY, 150, 4000, 30000);
}

Test(ledger_crash, kill_inside_big_commits, .timeout = 90) {
  /* Batches of LEDGER_BATCH_MAX events: most of the child's time is spent inside
   * ledger_apply(), so most kills land inside a batch or its commit. */
  crash_run("kill_inside_big_commits", LEDGER_BATCH_MAX, 40, CRASH_AFTER_ACK, 300, 150, 35000);
}
