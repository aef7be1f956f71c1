/* test_ledger_property.c — the ledger against a small in-memory model, over thousands of
 * random batches.
 *
 * The model below is written from ledger.h alone, not from ledger/: accounts with their four
 * balances and balance constraints; single-phase and pending transfers (with and without a
 * timeout), posts (full, partial, amount 0), voids, expiry when the fake clock passes a
 * pending transfer's timeout; duplicates of earlier ids with the same and with different
 * fields; ids burned by transient failures; linked pairs; and a handful of invalid events with
 * exactly one defect each, so that the result precedence is never in doubt. Every result code
 * is compared, and after every batch every account's balances and the double-entry totals.
 *
 * Reproducible: the seed is printed; TUMA_PROPERTY_SEED overrides the default seed and
 * TUMA_PROPERTY_BATCHES the number of batches. */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ledger_fixture.h"

#define DEFAULT_SEED UINT64_C(0x54756d61)
#define DEFAULT_BATCHES 2000
#define BATCH_EVENTS_MAX 64
#define NACC 30                /* accounts 1..NACC on ledger 1 */
#define ACC_L2 (NACC + 1)      /* one account on ledger 2 */
#define ACC_MISSING 500        /* never created */
#define TID0 UINT64_C(1000000) /* transfer ids: TID0, TID0 + 1, … */
#define BOGUS_HI 7             /* ids with this high half are never created */
#define T0 UINT64_C(1700000000000000000)
#define SEC UINT64_C(1000000000)
#define GUARD UINT64_C(100000) /* ns kept clear between the clock and any expiry */

/* ---- random numbers (splitmix64) --------------------------------------------------------- */

typedef struct rng {
  uint64_t s;
} rng;

static uint64_t rnd(rng *r) {
  uint64_t z = (r->s += UINT64_C(0x9e3779b97f4a7c15));
  z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
  z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
  return z ^ (z >> 31);
}
static uint64_t below(rng *r, uint64_t n) {
  return rnd(r) % n;
}
static int chance(rng *r, unsigned pct) {
  return below(r, 100) < pct;
}

/* ---- the model --------------------------------------------------------------------------- */

typedef struct m_account {
  uint64_t dp, dpo, cp, cpo;
  uint16_t flags;
  uint32_t ledger;
  ledger_event ev; /* as created */
} m_account;

enum { T_UNUSED, T_STORED, T_FAILED }; /* T_FAILED: burned by a transient result */
enum { K_SINGLE, K_PENDING, K_POST, K_VOID };

typedef struct m_transfer {
  uint8_t status;
  uint8_t kind;
  uint8_t pstate;          /* pending transfers: ledger_pending_state */
  uint8_t noreuse;         /* sent in a linked chain: never sent again */
  uint8_t in_sent;         /* listed in model.sent */
  ledger_event ev;         /* as first sent */
  uint64_t dr, cr, amount; /* as stored: a post's accounts and the amount it moved */
  uint64_t expires_at;     /* pending with a timeout, once its timestamp is known */
} m_transfer;

typedef struct model {
  m_account acc[ACC_L2 + 1];
  m_transfer *t; /* indexed by id - TID0 */
  size_t tcap;
  uint64_t next_tid;
  uint64_t *pendings; /* stored pending transfers, any state */
  size_t npend;
  uint64_t *open; /* stored pending transfers still open */
  size_t nopen;
  uint64_t *singles; /* stored single-phase transfers */
  size_t nsingle;
  uint64_t *sent; /* ids that may be sent again, any outcome */
  size_t nsent;
} model;

static m_transfer *m_get(model *m, ledger_id id) {
  if (id.hi != 0 || id.lo < TID0 || id.lo >= m->next_tid)
    return NULL;
  return &m->t[id.lo - TID0];
}

static uint64_t m_new_id(model *m) {
  cr_assert(m->next_tid - TID0 < m->tcap);
  return m->next_tid++;
}

static m_account *m_acc(model *m, ledger_id id) {
  if (id.hi != 0 || id.lo == 0 || id.lo > ACC_L2)
    return NULL;
  return &m->acc[id.lo];
}

static int is_transient(ledger_result r) {
  switch (r) {
  case LEDGER_PENDING_TRANSFER_NOT_FOUND:
  case LEDGER_DEBIT_ACCOUNT_NOT_FOUND:
  case LEDGER_CREDIT_ACCOUNT_NOT_FOUND:
  case LEDGER_DEBIT_ACCOUNT_ALREADY_CLOSED:
  case LEDGER_CREDIT_ACCOUNT_ALREADY_CLOSED:
  case LEDGER_OVERFLOWS_DEBITS_PENDING:
  case LEDGER_OVERFLOWS_CREDITS_PENDING:
  case LEDGER_OVERFLOWS_DEBITS_POSTED:
  case LEDGER_OVERFLOWS_CREDITS_POSTED:
  case LEDGER_OVERFLOWS_DEBITS:
  case LEDGER_OVERFLOWS_CREDITS:
  case LEDGER_EXCEEDS_CREDITS:
  case LEDGER_EXCEEDS_DEBITS:
    return 1;
  default:
    return 0;
  }
}

/* A duplicate of a stored transfer. Posts and voids are only ever sent again unchanged. */
static ledger_result m_exists(const m_transfer *s, const ledger_transfer *t) {
  const ledger_transfer *e = &s->ev.transfer;
  if (s->kind == K_POST || s->kind == K_VOID) {
    cr_assert_eq(memcmp(t, e, sizeof *t), 0, "model: a changed post/void was generated");
    return LEDGER_EXISTS;
  }
  if (t->flags != e->flags)
    return LEDGER_EXISTS_WITH_DIFFERENT_FLAGS;
  if (!ledger_id_eq(t->pending_id, e->pending_id))
    return LEDGER_EXISTS_WITH_DIFFERENT_PENDING_ID;
  if (t->timeout != e->timeout)
    return LEDGER_EXISTS_WITH_DIFFERENT_TIMEOUT;
  if (!ledger_id_eq(t->debit_account_id, e->debit_account_id))
    return LEDGER_EXISTS_WITH_DIFFERENT_DEBIT_ACCOUNT_ID;
  if (!ledger_id_eq(t->credit_account_id, e->credit_account_id))
    return LEDGER_EXISTS_WITH_DIFFERENT_CREDIT_ACCOUNT_ID;
  if (t->amount != e->amount)
    return LEDGER_EXISTS_WITH_DIFFERENT_AMOUNT;
  if (!ledger_id_eq(t->user_data_128, e->user_data_128))
    return LEDGER_EXISTS_WITH_DIFFERENT_USER_DATA_128;
  if (t->user_data_64 != e->user_data_64)
    return LEDGER_EXISTS_WITH_DIFFERENT_USER_DATA_64;
  if (t->user_data_32 != e->user_data_32)
    return LEDGER_EXISTS_WITH_DIFFERENT_USER_DATA_32;
  if (t->ledger != e->ledger)
    return LEDGER_EXISTS_WITH_DIFFERENT_LEDGER;
  if (t->code != e->code)
    return LEDGER_EXISTS_WITH_DIFFERENT_CODE;
  return LEDGER_EXISTS;
}

static void remove_open(model *m, uint64_t id) {
  for (size_t i = 0; i < m->nopen; i++)
    if (m->open[i] == id) {
      m->open[i] = m->open[--m->nopen];
      return;
    }
  cr_assert_fail("model: pending %" PRIu64 " not open", id);
}

/* A post or a void; applies it when it succeeds. */
static ledger_result m_resolve(model *m, const ledger_transfer *t, m_transfer *self) {
  int is_post = (t->flags & LEDGER_TRANSFER_POST_PENDING) != 0;
  m_transfer *p = m_get(m, t->pending_id);
  if (!p || p->status != T_STORED)
    return LEDGER_PENDING_TRANSFER_NOT_FOUND;
  if (p->kind != K_PENDING)
    return LEDGER_PENDING_TRANSFER_NOT_PENDING;
  if (!ledger_id_is_zero(t->debit_account_id) && t->debit_account_id.lo != p->dr)
    return LEDGER_PENDING_TRANSFER_HAS_DIFFERENT_DEBIT_ACCOUNT_ID;
  if (!ledger_id_is_zero(t->credit_account_id) && t->credit_account_id.lo != p->cr)
    return LEDGER_PENDING_TRANSFER_HAS_DIFFERENT_CREDIT_ACCOUNT_ID;
  if (t->ledger && t->ledger != p->ev.transfer.ledger)
    return LEDGER_PENDING_TRANSFER_HAS_DIFFERENT_LEDGER;
  if (t->code && t->code != p->ev.transfer.code)
    return LEDGER_PENDING_TRANSFER_HAS_DIFFERENT_CODE;
  if (is_post && t->amount > p->amount)
    return LEDGER_EXCEEDS_PENDING_TRANSFER_AMOUNT;
  if (!is_post && t->amount && t->amount != p->amount)
    return LEDGER_PENDING_TRANSFER_HAS_DIFFERENT_AMOUNT;
  if (p->pstate == LEDGER_PENDING_POSTED)
    return LEDGER_PENDING_TRANSFER_ALREADY_POSTED;
  if (p->pstate == LEDGER_PENDING_VOIDED)
    return LEDGER_PENDING_TRANSFER_ALREADY_VOIDED;
  if (p->pstate == LEDGER_PENDING_EXPIRED)
    return LEDGER_PENDING_TRANSFER_EXPIRED;
  cr_assert_eq(p->pstate, LEDGER_PENDING_OPEN);
  m_account *d = &m->acc[p->dr], *c = &m->acc[p->cr];
  uint64_t amount = is_post ? (t->amount ? t->amount : p->amount) : p->amount;
  d->dp -= p->amount;
  c->cp -= p->amount;
  if (is_post) {
    d->dpo += amount;
    c->cpo += amount;
  }
  p->pstate = is_post ? LEDGER_PENDING_POSTED : LEDGER_PENDING_VOIDED;
  remove_open(m, p->ev.transfer.id.lo);
  self->kind = is_post ? K_POST : K_VOID;
  self->dr = p->dr;
  self->cr = p->cr;
  self->amount = amount;
  return LEDGER_OK;
}

/* Any other transfer; applies it when it succeeds. */
static ledger_result m_create(model *m, const ledger_transfer *t, m_transfer *self) {
  int pending = (t->flags & LEDGER_TRANSFER_PENDING) != 0;
  if (!ledger_id_is_zero(t->pending_id))
    return LEDGER_PENDING_ID_MUST_BE_ZERO;
  if (ledger_id_eq(t->debit_account_id, t->credit_account_id))
    return LEDGER_ACCOUNTS_MUST_BE_DIFFERENT;
  if (t->timeout && !pending)
    return LEDGER_TIMEOUT_RESERVED_FOR_PENDING_TRANSFER;
  if (!t->amount)
    return LEDGER_AMOUNT_MUST_NOT_BE_ZERO;
  m_account *d = m_acc(m, t->debit_account_id), *c = m_acc(m, t->credit_account_id);
  if (!d)
    return LEDGER_DEBIT_ACCOUNT_NOT_FOUND;
  if (!c)
    return LEDGER_CREDIT_ACCOUNT_NOT_FOUND;
  if (d->ledger != c->ledger)
    return LEDGER_ACCOUNTS_MUST_HAVE_THE_SAME_LEDGER;
  if (t->ledger != d->ledger)
    return LEDGER_TRANSFER_MUST_HAVE_THE_SAME_LEDGER_AS_ACCOUNTS;
  /* amounts stay far below 2^64 here: no overflow */
  if ((d->flags & LEDGER_ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS) &&
      d->dp + d->dpo + t->amount > d->cpo)
    return LEDGER_EXCEEDS_CREDITS;
  if ((c->flags & LEDGER_ACCOUNT_CREDITS_MUST_NOT_EXCEED_DEBITS) &&
      c->cp + c->cpo + t->amount > c->dpo)
    return LEDGER_EXCEEDS_DEBITS;
  if (pending) {
    d->dp += t->amount;
    c->cp += t->amount;
  } else {
    d->dpo += t->amount;
    c->cpo += t->amount;
  }
  self->kind = pending ? K_PENDING : K_SINGLE;
  self->dr = t->debit_account_id.lo;
  self->cr = t->credit_account_id.lo;
  self->amount = t->amount;
  self->pstate = pending ? LEDGER_PENDING_OPEN : LEDGER_PENDING_NONE;
  self->expires_at = 0;
  return LEDGER_OK;
}

/* Evaluates one transfer event against the model and applies it if it succeeds. `in_chain`:
 * part of a linked pair (the caller handles the rollback; failures burn nothing the model
 * relies on, since chain ids are never sent again). */
static ledger_result m_transfer_event(model *m, const ledger_event *ev, int in_chain) {
  const ledger_transfer *t = &ev->transfer;
  if (ledger_id_is_zero(t->id))
    return LEDGER_ID_MUST_NOT_BE_ZERO;
  m_transfer *s = m_get(m, t->id);
  cr_assert_not_null(s, "model: transfer id outside the model's range");
  if (s->status == T_STORED)
    return m_exists(s, t);
  if (s->status == T_FAILED)
    return LEDGER_ID_ALREADY_FAILED;
  uint16_t f = t->flags & (uint16_t)~LEDGER_TRANSFER_LINKED;
  int kinds = !!(f & LEDGER_TRANSFER_PENDING) + !!(f & LEDGER_TRANSFER_POST_PENDING) +
              !!(f & LEDGER_TRANSFER_VOID_PENDING);
  ledger_result r;
  if (kinds > 1)
    r = LEDGER_FLAGS_ARE_MUTUALLY_EXCLUSIVE;
  else if (f & (LEDGER_TRANSFER_POST_PENDING | LEDGER_TRANSFER_VOID_PENDING))
    r = m_resolve(m, t, s);
  else
    r = m_create(m, t, s);
  if (r == LEDGER_OK) {
    s->status = T_STORED;
    s->ev = *ev;
    if (s->kind == K_PENDING) {
      m->pendings[m->npend++] = t->id.lo;
      m->open[m->nopen++] = t->id.lo;
    } else if (s->kind == K_SINGLE && !in_chain) {
      m->singles[m->nsingle++] = t->id.lo;
    }
  } else if (is_transient(r) && !in_chain) {
    s->status = T_FAILED;
  }
  return r;
}

/* Takes back a single-phase transfer of a linked pair whose other event failed. */
static void m_rollback_single(model *m, const ledger_event *ev) {
  m_transfer *s = m_get(m, ev->transfer.id);
  cr_assert(s && s->status == T_STORED && s->kind == K_SINGLE);
  m->acc[s->dr].dpo -= s->amount;
  m->acc[s->cr].cpo -= s->amount;
  s->status = T_UNUSED;
}

static ledger_result m_account_event(model *m, const ledger_event *ev) {
  const ledger_account *a = &ev->account;
  m_account *s = m_acc(m, a->id);
  cr_assert(s && s->ledger, "model: only duplicates of existing accounts are generated");
  const ledger_account *e = &s->ev.account;
  if (a->flags != e->flags)
    return LEDGER_EXISTS_WITH_DIFFERENT_FLAGS;
  if (!ledger_id_eq(a->user_data_128, e->user_data_128))
    return LEDGER_EXISTS_WITH_DIFFERENT_USER_DATA_128;
  if (a->user_data_64 != e->user_data_64)
    return LEDGER_EXISTS_WITH_DIFFERENT_USER_DATA_64;
  if (a->user_data_32 != e->user_data_32)
    return LEDGER_EXISTS_WITH_DIFFERENT_USER_DATA_32;
  if (a->ledger != e->ledger)
    return LEDGER_EXISTS_WITH_DIFFERENT_LEDGER;
  if (a->code != e->code)
    return LEDGER_EXISTS_WITH_DIFFERENT_CODE;
  return LEDGER_EXISTS;
}

/* Expires what is due at `now`, as the ledger does at the start of a batch. */
static void m_expire(model *m, uint64_t now) {
  for (size_t i = 0; i < m->nopen;) {
    m_transfer *p = &m->t[m->open[i] - TID0];
    if (p->expires_at && p->expires_at <= now) {
      m->acc[p->dr].dp -= p->amount;
      m->acc[p->cr].cp -= p->amount;
      p->pstate = LEDGER_PENDING_EXPIRED;
      m->open[i] = m->open[--m->nopen];
    } else {
      i++;
    }
  }
}

/* ---- the generator ----------------------------------------------------------------------- */

typedef struct gen {
  rng r;
  model *m;
  ledger_event evs[BATCH_EVENTS_MAX];
  ledger_result want[BATCH_EVENTS_MAX];
  const char *what[BATCH_EVENTS_MAX];
  size_t n;
} gen;

static uint64_t any_account(gen *g) {
  return 1 + below(&g->r, NACC);
}

static void two_accounts(gen *g, uint64_t *dr, uint64_t *cr) {
  *dr = any_account(g);
  do
    *cr = any_account(g);
  while (*cr == *dr);
}

static uint64_t an_amount(gen *g) {
  return chance(&g->r, 85) ? 1 + below(&g->r, 1000) : 1 + below(&g->r, 100000);
}

static ledger_event new_transfer(gen *g, uint16_t flags) {
  uint64_t dr, cr;
  two_accounts(g, &dr, &cr);
  uint64_t amount = an_amount(g);
  /* now and then, exactly what a balance constraint allows, or one more */
  const m_account *d = &g->m->acc[dr], *c = &g->m->acc[cr];
  if (chance(&g->r, 15)) {
    uint64_t room = 0;
    if ((d->flags & LEDGER_ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS) && d->cpo > d->dp + d->dpo)
      room = d->cpo - d->dp - d->dpo;
    else if ((c->flags & LEDGER_ACCOUNT_CREDITS_MUST_NOT_EXCEED_DEBITS) && c->dpo > c->cp + c->cpo)
      room = c->dpo - c->cp - c->cpo;
    if (room)
      amount = room + below(&g->r, 2);
  }
  ledger_event ev = fixture_transfer(m_new_id(g->m), dr, cr, amount, flags);
  ev.transfer.user_data_64 = below(&g->r, 3);
  ev.transfer.code = (uint16_t)(1 + below(&g->r, 2));
  if ((flags & LEDGER_TRANSFER_PENDING) && chance(&g->r, 50))
    ev.transfer.timeout = (uint32_t)(1 + below(&g->r, 4));
  return ev;
}

/* A pending transfer to post or void: mostly open ones; none yet gives a missing one. */
static ledger_id a_pending(gen *g) {
  model *m = g->m;
  if (m->nopen && chance(&g->r, 75))
    return ledger_id_make(0, m->open[below(&g->r, m->nopen)]);
  if (m->npend)
    return ledger_id_make(0, m->pendings[below(&g->r, m->npend)]);
  return ledger_id_make(BOGUS_HI, rnd(&g->r));
}

static ledger_event new_resolve(gen *g, uint16_t flag) {
  ledger_id pid = a_pending(g);
  ledger_event ev = fixture_transfer(m_new_id(g->m), 0, 0, 0, flag);
  ledger_transfer *t = &ev.transfer;
  t->pending_id = pid;
  t->ledger = 0;
  t->code = 0;
  m_transfer *p = m_get(g->m, pid);
  uint64_t pa = p && p->status == T_STORED ? p->amount : 10;
  unsigned k = (unsigned)below(&g->r, 100);
  if (flag == LEDGER_TRANSFER_POST_PENDING) {
    if (k < 40)
      t->amount = 0;
    else if (k < 60)
      t->amount = pa;
    else if (k < 92)
      t->amount = pa > 1 ? 1 + below(&g->r, pa - 1) : pa;
    else
      t->amount = pa + 1 + below(&g->r, 10);
  } else {
    t->amount = k < 60 ? 0 : k < 92 ? pa : pa + 1 + below(&g->r, 10);
  }
  if (p && p->status == T_STORED) {
    k = (unsigned)below(&g->r, 100);
    if (k < 25) {
      t->debit_account_id = ledger_id_make(0, p->dr);
      t->credit_account_id = ledger_id_make(0, p->cr);
      t->ledger = p->ev.transfer.ledger;
      t->code = p->ev.transfer.code;
    } else if (k < 28) {
      t->debit_account_id = ledger_id_make(0, p->dr % NACC + 1); /* another account */
    }
  }
  return ev;
}

/* An event sent before, unchanged or with one field changed. */
static int dup_transfer(gen *g, ledger_event *out) {
  model *m = g->m;
  if (!m->nsent)
    return 0;
  m_transfer *s = &m->t[m->sent[below(&g->r, m->nsent)] - TID0];
  ledger_event ev = s->ev;
  ledger_transfer *t = &ev.transfer;
  unsigned k = (unsigned)below(&g->r, 100);
  int changeable = s->status == T_FAILED ||
                   (s->status == T_STORED && (s->kind == K_SINGLE || s->kind == K_PENDING));
  if (changeable && k >= 40) {
    if (k < 55)
      t->amount += 1;
    else if (k < 70)
      t->user_data_64 += 1;
    else if (k < 80)
      t->code = t->code == 1 ? 2 : 1;
    else if (k < 90)
      t->flags ^= LEDGER_TRANSFER_PENDING;
    else
      t->timeout = t->timeout ? t->timeout + 1 : 3;
  }
  *out = ev;
  return 1;
}

/* One event with exactly one defect. */
static ledger_event bad_event(gen *g, const char **what) {
  model *m = g->m;
  ledger_event ev = new_transfer(g, 0);
  ledger_transfer *t = &ev.transfer;
  switch (below(&g->r, 12)) {
  case 0:
    *what = "post of a missing pending transfer";
    t->flags = LEDGER_TRANSFER_POST_PENDING;
    t->pending_id = ledger_id_make(BOGUS_HI, rnd(&g->r));
    t->debit_account_id = t->credit_account_id = ledger_id_make(0, 0);
    t->amount = 0;
    break;
  case 1:
    *what = "missing debit account";
    t->debit_account_id = ledger_id_make(0, ACC_MISSING);
    break;
  case 2:
    *what = "missing credit account";
    t->credit_account_id = ledger_id_make(0, ACC_MISSING + 1);
    break;
  case 3:
    *what = "amount 0";
    t->amount = 0;
    break;
  case 4:
    *what = "same accounts";
    t->credit_account_id = t->debit_account_id;
    break;
  case 5:
    *what = "timeout on a single-phase transfer";
    t->timeout = 3;
    break;
  case 6:
    *what = "pending and post";
    t->flags = LEDGER_TRANSFER_PENDING | LEDGER_TRANSFER_POST_PENDING;
    t->pending_id = a_pending(g);
    break;
  case 7:
    *what = "pending id on a single-phase transfer";
    t->pending_id = a_pending(g);
    break;
  case 8:
    *what = "accounts on different ledgers";
    t->credit_account_id = ledger_id_make(0, ACC_L2);
    break;
  case 9:
    *what = "transfer on another ledger";
    t->ledger = 2;
    break;
  case 10:
    *what = "id zero";
    m->next_tid--; /* give the id back */
    t->id = ledger_id_make(0, 0);
    break;
  default:
    if (m->nsingle) {
      *what = "post of a single-phase transfer";
      t->flags = LEDGER_TRANSFER_POST_PENDING;
      t->pending_id = ledger_id_make(0, m->singles[below(&g->r, m->nsingle)]);
      t->debit_account_id = t->credit_account_id = ledger_id_make(0, 0);
      t->amount = 0;
    } else {
      *what = "amount 0";
      t->amount = 0;
    }
    break;
  }
  return ev;
}

static void push(gen *g, ledger_event ev, ledger_result want, const char *what) {
  g->evs[g->n] = ev;
  g->want[g->n] = want;
  g->what[g->n] = what;
  g->n++;
}

/* A sent transfer that may be sent again later. */
static void remember(model *m, const ledger_event *ev) {
  m_transfer *s = m_get(m, ev->transfer.id);
  if (s && !s->noreuse && !s->in_sent) {
    if (s->status != T_STORED)
      s->ev = *ev; /* a stored one keeps it already */
    s->in_sent = 1;
    m->sent[m->nsent++] = ev->transfer.id.lo;
  }
}

static void fresh(gen *g, ledger_event ev, const char *what) {
  ledger_result r = m_transfer_event(g->m, &ev, 0);
  remember(g->m, &ev);
  push(g, ev, r, what);
}

/* Builds one batch of n events with the model's expected results. */
static void gen_batch(gen *g, size_t n) {
  model *m = g->m;
  g->n = 0;
  int open_chain = n >= 1 && chance(&g->r, 4);
  size_t body = open_chain ? n - 1 : n;
  while (g->n < body) {
    unsigned k = (unsigned)below(&g->r, 100);
    ledger_event ev;
    if (k < 28) {
      fresh(g, new_transfer(g, 0), "single-phase");
    } else if (k < 46) {
      fresh(g, new_transfer(g, LEDGER_TRANSFER_PENDING), "pending");
    } else if (k < 61) {
      fresh(g, new_resolve(g, LEDGER_TRANSFER_POST_PENDING), "post");
    } else if (k < 70) {
      fresh(g, new_resolve(g, LEDGER_TRANSFER_VOID_PENDING), "void");
    } else if (k < 82) {
      if (dup_transfer(g, &ev))
        push(g, ev, m_transfer_event(m, &ev, 0), "duplicate transfer");
    } else if (k < 85) {
      uint64_t id = any_account(g);
      ev = m->acc[id].ev;
      unsigned v = (unsigned)below(&g->r, 4);
      if (v == 2)
        ev.account.user_data_64 += 1;
      else if (v == 3)
        ev.account.flags ^= LEDGER_ACCOUNT_HISTORY;
      push(g, ev, m_account_event(m, &ev), "duplicate account");
    } else if (k < 92) {
      if (g->n + 2 > body)
        continue;
      ledger_event a = new_transfer(g, LEDGER_TRANSFER_LINKED);
      ledger_event b = new_transfer(g, 0);
      if (chance(&g->r, 15))
        b.transfer.amount = 0;
      m_get(m, a.transfer.id)->noreuse = 1;
      m_get(m, b.transfer.id)->noreuse = 1;
      ledger_result ra = m_transfer_event(m, &a, 1), rb;
      if (ra != LEDGER_OK) {
        rb = LEDGER_LINKED_EVENT_FAILED;
      } else {
        rb = m_transfer_event(m, &b, 1);
        if (rb != LEDGER_OK) {
          m_rollback_single(m, &a);
          ra = LEDGER_LINKED_EVENT_FAILED;
        }
      }
      push(g, a, ra, "linked pair, first");
      push(g, b, rb, "linked pair, second");
    } else {
      const char *what = "bad";
      ev = bad_event(g, &what);
      if (ledger_id_is_zero(ev.transfer.id))
        push(g, ev, m_transfer_event(m, &ev, 0), what);
      else
        fresh(g, ev, what);
    }
  }
  if (open_chain) {
    ledger_event ev = new_transfer(g, LEDGER_TRANSFER_LINKED);
    m_get(m, ev.transfer.id)->noreuse = 1;
    push(g, ev, LEDGER_LINKED_EVENT_CHAIN_OPEN, "linked, open at the end of the batch");
  }
}

/* ---- the test ---------------------------------------------------------------------------- */

static void describe(const ledger_event *ev, char *buf, size_t cap) {
  if (ev->kind == LEDGER_EVENT_CREATE_ACCOUNT) {
    const ledger_account *a = &ev->account;
    snprintf(buf, cap, "account id=%" PRIu64 " flags=%#x ledger=%u code=%u ud64=%" PRIu64, a->id.lo,
             a->flags, a->ledger, a->code, a->user_data_64);
    return;
  }
  const ledger_transfer *t = &ev->transfer;
  snprintf(buf, cap,
           "transfer id=%" PRIu64 ":%" PRIu64 " dr=%" PRIu64 " cr=%" PRIu64 " amount=%" PRIu64
           " pending_id=%" PRIu64 ":%" PRIu64 " timeout=%u flags=%#x ledger=%u code=%u "
           "ud64=%" PRIu64,
           t->id.hi, t->id.lo, t->debit_account_id.lo, t->credit_account_id.lo, t->amount,
           t->pending_id.hi, t->pending_id.lo, t->timeout, t->flags, t->ledger, t->code,
           t->user_data_64);
}

static uint64_t env_u64(const char *name, uint64_t dflt) {
  const char *s = getenv(name);
  if (!s || !*s)
    return dflt;
  char *end = NULL;
  uint64_t v = strtoull(s, &end, 0);
  cr_assert(end && !*end, "%s=%s is not a number", name, s);
  return v;
}

/* Picks the next clock reading: later than the last, and never within GUARD of an expiry, so
 * that no pending transfer falls due inside a batch and "due" is never a matter of ≤ vs <. */
static uint64_t next_clock(rng *r, const model *m, uint64_t now) {
  now += SEC / 1000 + below(r, 5 * SEC / 2);
  for (int moved = 1; moved;) {
    moved = 0;
    for (size_t i = 0; i < m->nopen; i++) {
      uint64_t x = m->t[m->open[i] - TID0].expires_at;
      if (x && x + GUARD >= now && x <= now + GUARD) {
        now = x + 2 * GUARD;
        moved = 1;
      }
    }
  }
  return now;
}

Test(ledger_property, random_batches_match_the_model, .timeout = 300) {
  uint64_t seed = env_u64("TUMA_PROPERTY_SEED", DEFAULT_SEED);
  uint64_t batches = env_u64("TUMA_PROPERTY_BATCHES", DEFAULT_BATCHES);
  fprintf(stderr,
          "ledger_property: seed=%#" PRIx64 " batches=%" PRIu64
          " (rerun with TUMA_PROPERTY_SEED=%#" PRIx64 ")\n",
          seed, batches, seed);

  model *m = calloc(1, sizeof *m);
  gen *g = calloc(1, sizeof *g);
  cr_assert(m && g);
  m->tcap = (size_t)batches * BATCH_EVENTS_MAX * 2 + 16;
  m->t = calloc(m->tcap, sizeof *m->t);
  m->pendings = calloc(m->tcap, sizeof *m->pendings);
  m->open = calloc(m->tcap, sizeof *m->open);
  m->singles = calloc(m->tcap, sizeof *m->singles);
  m->sent = calloc(m->tcap, sizeof *m->sent);
  cr_assert(m->t && m->pendings && m->open && m->singles && m->sent);
  m->next_tid = TID0;
  g->m = m;
  g->r.s = seed;

  char *dir = fixture_tmpdir();
  uint64_t now = T0;
  ledger *l = fixture_open(dir, &now);

  /* the accounts: every fifth must not go overdrawn, every fifth must not go in credit */
  ledger_event accs[ACC_L2];
  for (uint64_t id = 1; id <= ACC_L2; id++) {
    uint16_t flags = id % 5 == 1   ? LEDGER_ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS
                     : id % 5 == 2 ? LEDGER_ACCOUNT_CREDITS_MUST_NOT_EXCEED_DEBITS
                                   : 0;
    if (id % 7 == 0)
      flags |= LEDGER_ACCOUNT_HISTORY;
    ledger_event ev = fixture_account(id, flags);
    ev.account.user_data_64 = id * 31;
    if (id == ACC_L2)
      ev.account.ledger = 2;
    accs[id - 1] = ev;
    m->acc[id].flags = flags;
    m->acc[id].ledger = ev.account.ledger;
    m->acc[id].ev = ev;
  }
  fixture_apply(l, accs, NULL, ACC_L2);

  static uint64_t counts[LEDGER_RESULT_COUNT_];
  ledger_result got[BATCH_EVENTS_MAX];
  uint64_t last_ts = 0, events = 0;
  char desc[512];

  for (uint64_t b = 0; b < batches; b++) {
    if (b == batches / 2) { /* everything must survive a reopen */
      ledger_close(l);
      l = fixture_open(dir, &now);
    }
    now = next_clock(&g->r, m, now);
    m_expire(m, now);
    gen_batch(g, 1 + below(&g->r, BATCH_EVENTS_MAX));
    int rc = ledger_apply(l, g->evs, got, g->n);
    cr_assert_eq(rc, 0, "seed %#" PRIx64 " batch %" PRIu64 ": ledger_apply: %s", seed, b,
                 ledger_strerror(rc));
    events += g->n;
    for (size_t i = 0; i < g->n; i++) {
      counts[g->want[i]]++;
      if (got[i] != g->want[i]) {
        describe(&g->evs[i], desc, sizeof desc);
        for (size_t j = 0; j < g->n; j++) {
          char d2[512];
          describe(&g->evs[j], d2, sizeof d2);
          fprintf(stderr, "  [%zu] %-40s want %-40s got %s\n      %s\n", j, g->what[j],
                  ledger_result_name(g->want[j]), ledger_result_name(got[j]), d2);
        }
        cr_assert_fail("seed %#" PRIx64 " batch %" PRIu64 " event %zu (%s): expected %s, got "
                       "%s\n  %s",
                       seed, b, i, g->what[i], ledger_result_name(g->want[i]),
                       ledger_result_name(got[i]), desc);
      }
    }
    /* created transfers: stored as sent, timestamps increasing; note pending expiries */
    for (size_t i = 0; i < g->n; i++) {
      if (got[i] != LEDGER_OK || g->evs[i].kind != LEDGER_EVENT_CREATE_TRANSFER)
        continue;
      ledger_transfer t;
      cr_assert_eq(ledger_lookup_transfer(l, g->evs[i].transfer.id, &t), 0,
                   "seed %#" PRIx64 " batch %" PRIu64 ": created transfer not found", seed, b);
      cr_assert_gt(t.timestamp, last_ts,
                   "seed %#" PRIx64 " batch %" PRIu64 ": timestamps not increasing", seed, b);
      last_ts = t.timestamp;
      m_transfer *s = m_get(m, t.id);
      if (s->kind != K_VOID) /* the header leaves a void's stored amount open */
        cr_assert_eq(t.amount, s->amount,
                     "seed %#" PRIx64 " batch %" PRIu64 ": transfer %" PRIu64
                     " stored amount %" PRIu64 ", expected %" PRIu64,
                     seed, b, t.id.lo, t.amount, s->amount);
      if (s->kind == K_SINGLE || s->kind == K_PENDING) {
        ledger_transfer e = g->evs[i].transfer;
        e.timestamp = t.timestamp;
        cr_assert_eq(memcmp(&e, &t, sizeof t), 0,
                     "seed %#" PRIx64 " batch %" PRIu64 ": transfer %" PRIu64 " not stored as sent",
                     seed, b, t.id.lo);
      }
      if (s->kind == K_PENDING && t.timeout)
        s->expires_at = t.timestamp + (uint64_t)t.timeout * SEC;
    }
    /* every account's balances, and the double-entry totals */
    for (uint64_t id = 1; id <= ACC_L2; id++) {
      ledger_account a;
      cr_assert_eq(ledger_lookup_account(l, ledger_id_make(0, id), &a), 0);
      const m_account *x = &m->acc[id];
      cr_assert(a.debits_pending == x->dp && a.debits_posted == x->dpo &&
                    a.credits_pending == x->cp && a.credits_posted == x->cpo && a.flags == x->flags,
                "seed %#" PRIx64 " batch %" PRIu64 ": account %" PRIu64 " is dp=%" PRIu64
                " dpo=%" PRIu64 " cp=%" PRIu64 " cpo=%" PRIu64 " flags=%#x, model dp=%" PRIu64
                " dpo=%" PRIu64 " cp=%" PRIu64 " cpo=%" PRIu64 " flags=%#x",
                seed, b, id, a.debits_pending, a.debits_posted, a.credits_pending, a.credits_posted,
                a.flags, x->dp, x->dpo, x->cp, x->cpo, x->flags);
    }
    fixture_assert_invariants(l);
    /* now and then, the state of every pending transfer */
    if (b % 100 == 99 || b + 1 == batches) {
      for (size_t i = 0; i < m->npend; i++) {
        ledger_pending_state st;
        uint64_t rts = 0;
        m_transfer *p = &m->t[m->pendings[i] - TID0];
        cr_assert_eq(ledger_pending_state_of(l, ledger_id_make(0, m->pendings[i]), &st, &rts), 0);
        cr_assert_eq(st, p->pstate,
                     "seed %#" PRIx64 " batch %" PRIu64 ": pending %" PRIu64
                     " in state %d, model %d",
                     seed, b, m->pendings[i], (int)st, (int)p->pstate);
      }
    }
  }

  /* the totals match the model's */
  ledger_totals tot;
  cr_assert_eq(ledger_totals_of(l, &tot), 0);
  cr_assert_eq(tot.accounts, ACC_L2);
  unsigned __int128 dp = 0, dpo = 0;
  for (uint64_t id = 1; id <= ACC_L2; id++) {
    dp += m->acc[id].dp;
    dpo += m->acc[id].dpo;
  }
  cr_assert(tot.debits_pending == dp && tot.debits_posted == dpo);

  fprintf(stderr, "ledger_property: %" PRIu64 " events in %" PRIu64 " batches; results:\n", events,
          batches);
  for (int r = 0; r < LEDGER_RESULT_COUNT_; r++)
    if (counts[r])
      fprintf(stderr, "  %-45s %" PRIu64 "\n", ledger_result_name((ledger_result)r), counts[r]);
  /* the generator really reached what the test is about */
  if (batches >= DEFAULT_BATCHES) {
    static const ledger_result needed[] = {
        LEDGER_OK,
        LEDGER_EXISTS,
        LEDGER_EXISTS_WITH_DIFFERENT_AMOUNT,
        LEDGER_EXISTS_WITH_DIFFERENT_FLAGS,
        LEDGER_EXISTS_WITH_DIFFERENT_TIMEOUT,
        LEDGER_EXISTS_WITH_DIFFERENT_USER_DATA_64,
        LEDGER_EXISTS_WITH_DIFFERENT_CODE,
        LEDGER_ID_ALREADY_FAILED,
        LEDGER_EXCEEDS_CREDITS,
        LEDGER_EXCEEDS_DEBITS,
        LEDGER_PENDING_TRANSFER_NOT_FOUND,
        LEDGER_PENDING_TRANSFER_NOT_PENDING,
        LEDGER_PENDING_TRANSFER_ALREADY_POSTED,
        LEDGER_PENDING_TRANSFER_ALREADY_VOIDED,
        LEDGER_PENDING_TRANSFER_EXPIRED,
        LEDGER_PENDING_TRANSFER_HAS_DIFFERENT_DEBIT_ACCOUNT_ID,
        LEDGER_EXCEEDS_PENDING_TRANSFER_AMOUNT,
        LEDGER_PENDING_TRANSFER_HAS_DIFFERENT_AMOUNT,
        LEDGER_LINKED_EVENT_FAILED,
        LEDGER_LINKED_EVENT_CHAIN_OPEN,
        LEDGER_DEBIT_ACCOUNT_NOT_FOUND,
        LEDGER_AMOUNT_MUST_NOT_BE_ZERO,
        LEDGER_FLAGS_ARE_MUTUALLY_EXCLUSIVE,
        LEDGER_ACCOUNTS_MUST_HAVE_THE_SAME_LEDGER,
    };
    for (size_t i = 0; i < sizeof needed / sizeof needed[0]; i++)
      cr_assert_gt(counts[needed[i]], 0, "the generator never produced %s",
                   ledger_result_name(needed[i]));
  }

  ledger_close(l);
  fixture_rmtree(dir);
  free(dir);
  free(m->t);
  free(m->pendings);
  free(m->open);
  free(m->singles);
  free(m->sent);
  free(m);
  free(g);
}
