/* report.c — what tuma-opsim prints (sim.h): the totals of a data directory, its settled
 * transfers and wallets (JSON, for reconciliation against the switch's positions), and the
 * end-of-run report.
 *
 * Reconciliation: every amount taken from a wallet is either still pending (a debit in
 * flight) or settled as committed out, and every amount added is a committed credit, so
 *   wallets_total + pending_debits.amount = initial_total + committed_in.amount
 *                                                        - committed_out.amount
 * ("reconciled"), and once nothing is pending, net_change = committed_in - committed_out is
 * the change of the participant's position at the switch: received - sent.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "sim.h"

typedef struct pending_sums {
  uint64_t credits, credit_amount, debits, debit_amount;
} pending_sums;

static int sum_pending_cb(const opsim_pending *p, void *arg) {
  pending_sums *t = arg;
  if (p->kind == OPSIM_CREDIT) {
    t->credits++;
    t->credit_amount += p->amount;
  } else {
    t->debits++;
    t->debit_amount += p->amount;
  }
  return 0;
}

static void print_pair(FILE *f, const char *name, uint64_t count, uint64_t amount) {
  fprintf(f, "\"%s\":{\"count\":%" PRIu64 ",\"amount\":%" PRIu64 "}", name, count, amount);
}

int opsim_report_totals(opsim_store *store, FILE *f) {
  opsim_meta m;
  uint64_t c[OPSIM_COUNTERS];
  int rc = opsim_store_get_meta(store, &m, c);
  if (rc)
    return rc;
  opsim_wallet *w = calloc(m.wallets ? m.wallets : 1, sizeof *w);
  if (!w)
    return OPSIM_STORE_E_NOMEM;
  pending_sums p = {0, 0, 0, 0};
  rc = opsim_store_load_wallets(store, w, m.wallets);
  if (!rc)
    rc = opsim_store_each_pending(store, sum_pending_cb, &p);
  if (rc) {
    free(w);
    return rc;
  }
  uint64_t total = 0, frozen = 0;
  for (uint32_t i = 0; i < m.wallets; i++) {
    total += w[i].balance;
    frozen += w[i].status == OPSIM_WALLET_FROZEN;
  }
  free(w);
  uint64_t in = c[OPSIM_C_IN_COMMITTED_AMOUNT], out = c[OPSIM_C_OUT_COMMITTED_AMOUNT];
  int reconciled = total + p.debit_amount + out == m.initial_total + in;
  fprintf(f,
          "{\"participant\":\"%s\",\"currency\":\"%s\",\"wallets\":%" PRIu32
          ",\"frozen_wallets\":%" PRIu64 ",\"msisdn_prefix\":\"%s\",\"msisdn_digits\":%" PRIu32
          ",\"initial_total\":%" PRIu64 ",\"wallets_total\":%" PRIu64 ",",
          m.participant, m.currency, m.wallets, frozen, m.prefix, m.digits, m.initial_total, total);
  print_pair(f, "pending_credits", p.credits, p.credit_amount);
  fputc(',', f);
  print_pair(f, "pending_debits", p.debits, p.debit_amount);
  fputc(',', f);
  print_pair(f, "committed_in", c[OPSIM_C_IN_COMMITTED], in);
  fputc(',', f);
  print_pair(f, "committed_out", c[OPSIM_C_OUT_COMMITTED], out);
  fprintf(f,
          ",\"aborted_in\":%" PRIu64 ",\"expired_in\":%" PRIu64 ",\"not_found_in\":%" PRIu64
          ",\"rejected_in\":%" PRIu64 ",\"aborted_out\":%" PRIu64 ",\"expired_out\":%" PRIu64
          ",\"unsent_out\":%" PRIu64 ",\"not_found_out\":%" PRIu64 ",\"net_change\":%s%" PRIu64
          ",\"reconciled\":%s}",
          c[OPSIM_C_IN_ABORTED], c[OPSIM_C_IN_EXPIRED], c[OPSIM_C_IN_NOT_FOUND],
          c[OPSIM_C_IN_REJECTED], c[OPSIM_C_OUT_ABORTED], c[OPSIM_C_OUT_EXPIRED],
          c[OPSIM_C_OUT_UNSENT], c[OPSIM_C_OUT_NOT_FOUND], in >= out ? "" : "-",
          in >= out ? in - out : out - in, reconciled ? "true" : "false");
  return 0;
}

static int print_settled_cb(const opsim_settled *r, void *arg) {
  FILE *f = arg;
  char id[ADP_ID_STR_LEN];
  fprintf(f,
          "{\"id\":\"%s\",\"kind\":\"%s\",\"wallet\":%" PRIu32 ",\"amount\":%" PRIu64
          ",\"outcome\":\"%s\",\"code\":%" PRIu32 ",\"settled_ms\":%" PRIu64 "}\n",
          adp_id_format(r->id, id), r->kind == OPSIM_CREDIT ? "credit" : "debit", r->wallet,
          r->amount, opsim_outcome_name((int)r->outcome), r->code, r->settled_ms);
  return ferror(f) ? OPSIM_STORE_E_IO : 0;
}

int opsim_report_history(opsim_store *store, FILE *f) {
  return opsim_store_each_settled(store, print_settled_cb, f);
}

int opsim_report_wallets(opsim_store *store, FILE *f) {
  opsim_meta m;
  int rc = opsim_store_get_meta(store, &m, NULL);
  if (rc)
    return rc;
  opsim_wallet *w = calloc(m.wallets ? m.wallets : 1, sizeof *w);
  if (!w)
    return OPSIM_STORE_E_NOMEM;
  rc = opsim_store_load_wallets(store, w, m.wallets);
  for (uint32_t i = 0; !rc && i < m.wallets; i++) {
    char msisdn[OPSIM_MSISDN_LEN], masked[OPSIM_MSISDN_LEN];
    if (opsim_msisdn_format(m.prefix, m.digits, i, msisdn)) {
      rc = OPSIM_STORE_E_CORRUPT; /* a prefix that cannot hold its wallets */
      break;
    }
    fprintf(f, "{\"index\":%" PRIu32 ",\"msisdn\":\"%s\",\"balance\":%" PRIu64 ",\"limit\":", i,
            opsim_msisdn_mask(msisdn, masked, sizeof masked), w[i].balance);
    if (w[i].limit == UINT64_MAX)
      fputs("null", f);
    else
      fprintf(f, "%" PRIu64, w[i].limit);
    fprintf(f, ",\"status\":\"%s\"}\n", w[i].status == OPSIM_WALLET_FROZEN ? "frozen" : "active");
  }
  free(w);
  return rc;
}

/* ---------------------------------------------------------------- the run */

static void print_codes(FILE *f, const opsim_codes *c, int json) {
  const char *sep = "";
  if (json)
    fputc('{', f);
  for (int i = 0; i < OPSIM_CODES && c->n[i]; i++) {
    fprintf(f, json ? "%s\"%" PRIu32 "\":%" PRIu64 : "%s%" PRIu32 "×%" PRIu64, sep, c->code[i],
            c->n[i]);
    sep = json ? "," : " ";
  }
  if (c->other)
    fprintf(f, json ? "%s\"other\":%" PRIu64 : "%sother×%" PRIu64, sep, c->other);
  if (json)
    fputc('}', f);
}

/* The ms below which share (per ten thousand) of the committed payments completed. */
static uint64_t percentile(const opsim_runstats *st, uint64_t share) {
  uint64_t n = 0;
  for (int i = 0; i < OPSIM_LATENCY_BUCKETS; i++)
    n += st->latency[i];
  if (n == 0)
    return 0;
  uint64_t want = (n * share + 9999) / 10000, seen = 0;
  for (int i = 0; i < OPSIM_LATENCY_BUCKETS; i++) {
    seen += st->latency[i];
    if (seen >= want)
      return (uint64_t)i + 1;
  }
  return OPSIM_LATENCY_BUCKETS;
}

void opsim_report_run(opsim_sim *s, FILE *f) {
  const opsim_runstats *st = &s->st;
  double secs = (double)(s->stop_us - s->start_us) / 1e6;
  adp_stats cs;
  memset(&cs, 0, sizeof cs);
  size_t credits = s->items ? opsim_inflight_count(s->items, OPSIM_CREDIT) : 0;
  size_t debits = s->items ? opsim_inflight_count(s->items, OPSIM_DEBIT) : 0;
  if (s->opt->json) {
    fprintf(f,
            "{\"participant\":\"%s\",\"seconds\":%.3f,\"status\":\"%s\","
            "\"payer\":{\"sent\":%" PRIu64 ",\"committed\":%" PRIu64 ",\"aborted\":%" PRIu64
            ",\"expired\":%" PRIu64 ",\"unsent\":%" PRIu64 ",\"not_found\":%" PRIu64
            ",\"no_funds\":%" PRIu64 ",\"unknown_msisdn\":%" PRIu64 ",\"short_expiry\":%" PRIu64
            ",\"behind\":%" PRIu64 ",\"pending_at_exit\":%zu,\"recovered\":%" PRIu64 ",\"codes\":",
            s->meta.participant, secs, s->fatal ? "failed" : "done", st->sent, st->committed,
            st->aborted, st->expired, st->unsent, st->not_found, st->no_funds, st->unknown_sent,
            st->short_sent, st->behind, debits, st->recovered_debits);
    print_codes(f, &st->out_codes, 1);
    fprintf(f,
            ",\"latency_ms\":{\"p50\":%" PRIu64 ",\"p99\":%" PRIu64 "}},"
            "\"payee\":{\"forwards\":%" PRIu64 ",\"accepted\":%" PRIu64 ",\"committed\":%" PRIu64
            ",\"aborted\":%" PRIu64 ",\"expired\":%" PRIu64 ",\"not_found\":%" PRIu64
            ",\"rejected\":%" PRIu64 ",\"late\":%" PRIu64 ",\"unanswered\":%" PRIu64
            ",\"pending_at_exit\":%zu,\"recovered\":%" PRIu64 ",\"codes\":",
            percentile(st, 5000), percentile(st, 9900), st->forwards, st->accepted,
            st->in_committed, st->in_aborted, st->in_expired, st->in_not_found, st->rejected,
            st->late, st->unanswered, credits, st->recovered_credits);
    print_codes(f, &st->rejected_codes, 1);
    fputc('}', f);
    if (s->opt->print_totals) {
      fputs(",\"totals\":", f);
      if (opsim_report_totals(s->store, f))
        fputs("null", f);
    }
    fputs("}\n", f);
  } else {
    fprintf(f, "%s: %.1f s%s\n", s->meta.participant, secs, s->fatal ? " (failed)" : "");
    if (s->opt->payer) {
      fprintf(f,
              "  paid:     %" PRIu64 " sent, %" PRIu64 " committed, %" PRIu64 " aborted, %" PRIu64
              " expired, %" PRIu64 " not sent, %" PRIu64 " unknown to the switch; %zu pending; "
              "latency p50 %" PRIu64 " ms, p99 %" PRIu64 " ms\n",
              st->sent, st->committed, st->aborted, st->expired, st->unsent, st->not_found, debits,
              percentile(st, 5000), percentile(st, 9900));
      fputs("            refusals by code: ", f);
      print_codes(f, &st->out_codes, 0);
      fputc('\n', f);
    }
    fprintf(f,
            "  received: %" PRIu64 " forwards, %" PRIu64 " accepted, %" PRIu64 " credited, %" PRIu64
            " refused, %" PRIu64 " expired, %zu pending\n",
            st->forwards, st->accepted, st->in_committed, st->rejected, st->in_expired, credits);
    fputs("            refused by code: ", f);
    print_codes(f, &st->rejected_codes, 0);
    fputc('\n', f);
    if (s->opt->print_totals) {
      if (opsim_report_totals(s->store, f))
        fputs("null", f);
      fputc('\n', f);
    }
  }
  fflush(f);
}
