/* audit_cmd.c — `tuma audit verify|export|balances|transfer|checkpoint|keygen` and
 * `tuma backup`: the auditor's commands around ledger/audit.h. Everything reads a data
 * directory read-only (one LMDB read transaction, never blocking a running tumad) or a raw
 * journal export (ledger/JOURNAL.md); nothing here trusts the switch.
 */
#include "audit.h"
#include "cli.h"
#include "journal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static const char audit_usage_text[] =
    "usage: tuma audit <command> PATH [options]\n"
    "\n"
    "Checks the ledger without trusting the switch. PATH is a tumad data directory (live or\n"
    "stopped; opened read-only), a ledger directory, or a raw journal export.\n"
    "\n"
    "commands:\n"
    "  verify PATH [--pubkey FILE] [--checkpoint FILE] [--require-signed-head] [--chain-only]\n"
    "              [--json]\n"
    "      check the hash chain from genesis and every checkpoint (with --pubkey), replay\n"
    "      every record into a scratch ledger and compare every stored account with it byte\n"
    "      for byte. --checkpoint: a checkpoint you kept (from 'tuma audit checkpoint'); the\n"
    "      journal must still contain it. --require-signed-head: the last record must be a\n"
    "      checkpoint (a stopped switch signs its head at shutdown).\n"
    "  export PATH [--from SEQ] [--to SEQ] [--format raw|jsonl|csv] [--output FILE]\n"
    "      raw: the records as stored, each preceded by its length (u32 little endian);\n"
    "      jsonl, csv: one line per event, expiry or checkpoint, user data masked.\n"
    "  balances PATH --at SEQ|TIME [--format text|csv]\n"
    "      every account's balances after record SEQ, or after the last record at or before\n"
    "      TIME (UTC, 2026-11-28T03:00:00Z), by replay.\n"
    "  transfer PATH ID\n"
    "      the history of transfer ID (32 hex digits, dashes allowed): its creation, post,\n"
    "      void or expiry, with record sequence numbers and hashes.\n"
    "  checkpoint PATH --output FILE\n"
    "      keep the last checkpoint of PATH (a one-record raw export) for later verifies.\n"
    "  keygen PRIVATE_KEY PUBLIC_KEY\n"
    "      make the Ed25519 key pair of signed checkpoints (PEM; the private key mode 0600).\n"
    "\n"
    "Exit status: 0 all holds, 1 a problem was found or PATH cannot be read, 2 usage error.\n";

static const char backup_usage_text[] =
    "usage: tuma backup PATH DEST [--compact]\n"
    "\n"
    "Hot, consistent backup of a tumad data directory (or of a ledger directory) into DEST,\n"
    "which must not hold a backup already: the ledger through one LMDB read transaction\n"
    "(mdb_env_copy2; a running tumad is not blocked), the registry the same way, and\n"
    "directory.key. --compact leaves out free pages. Restore: stop tumad, move DEST in place of\n"
    "the data directory, start tumad; check first with 'tuma audit verify DEST'.\n";

/* ---------------------------------------------------------------- helpers */

static void hex_of(const uint8_t *b, size_t n, char *out) {
  static const char digits[] = "0123456789abcdef";
  for (size_t i = 0; i < n; i++) {
    out[2 * i] = digits[b[i] >> 4];
    out[2 * i + 1] = digits[b[i] & 15];
  }
  out[2 * n] = 0;
}

static void id_hex(ledger_id id, char out[33]) {
  snprintf(out, 33, "%016" PRIx64 "%016" PRIx64, id.hi, id.lo);
}

/* 32 hex digits, dashes ignored (a UUID), into an id (hi = the first 16 digits). */
static int parse_id(const char *text, ledger_id *out) {
  char digits[33];
  size_t n = 0;
  for (const char *p = text; *p; p++) {
    if (*p == '-')
      continue;
    if (n == 32)
      return -1;
    digits[n++] = *p;
  }
  digits[n] = 0;
  uint8_t b[16];
  if (n != 32 || cli_parse_hex(digits, b, 16))
    return -1;
  uint64_t hi = 0, lo = 0;
  for (int i = 0; i < 8; i++) {
    hi = hi << 8 | b[i];
    lo = lo << 8 | b[8 + i];
  }
  *out = ledger_id_make(hi, lo);
  return 0;
}

/* "2026-11-28T03:00:00Z" or with a fraction of a second, UTC, into ns since the epoch. */
static int parse_time(const char *text, uint64_t *ns) {
  struct tm tm;
  memset(&tm, 0, sizeof tm);
  const char *rest = strptime(text, "%Y-%m-%dT%H:%M:%S", &tm);
  if (!rest)
    return -1;
  uint64_t frac = 0, scale = 1000000000ull;
  if (*rest == '.') {
    rest++;
    int digits = 0;
    while (*rest >= '0' && *rest <= '9') {
      if (digits < 9) {
        scale /= 10;
        frac += (uint64_t)(*rest - '0') * scale;
      }
      digits++;
      rest++;
    }
    if (!digits)
      return -1;
  }
  if (strcmp(rest, "Z") != 0)
    return -1;
  time_t t = timegm(&tm);
  if (t < 0)
    return -1;
  *ns = (uint64_t)t * 1000000000ull + frac;
  return 0;
}

static void format_time(uint64_t ns, char *out, size_t cap) {
  time_t t = (time_t)(ns / 1000000000ull);
  struct tm tm;
  if (!gmtime_r(&t, &tm)) {
    snprintf(out, cap, "?");
    return;
  }
  char base[32];
  strftime(base, sizeof base, "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(out, cap, "%s.%09" PRIu64 "Z", base, (uint64_t)(ns % 1000000000u));
}

/* Reads the last checkpoint record of a raw export file into a malloc'ed buffer. */
static int read_kept_checkpoint(const char *path, uint8_t **out, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    fprintf(stderr, "tuma audit verify: %s: %s\n", path, strerror(errno));
    return -1;
  }
  uint8_t *best = NULL;
  for (int n = 0; n < 1000000; n++) { /* bounded: a kept-checkpoint file is small */
    uint8_t lb[4];
    if (fread(lb, 1, 4, f) != 4)
      break;
    uint32_t rl =
        (uint32_t)lb[0] | (uint32_t)lb[1] << 8 | (uint32_t)lb[2] << 16 | (uint32_t)lb[3] << 24;
    if (rl > 64u << 20)
      break;
    uint8_t *rec = malloc(rl ? rl : 1);
    if (!rec || fread(rec, 1, rl, f) != rl) {
      free(rec);
      break;
    }
    journal_view v;
    if (!journal_parse(rec, rl, &v) && v.kind == JOURNAL_KIND_CHECKPOINT) {
      free(best);
      best = rec;
    } else {
      free(rec);
    }
  }
  fclose(f);
  if (!best) {
    fprintf(stderr, "tuma audit verify: %s: no valid checkpoint record in it\n", path);
    return -1;
  }
  *out = best;
  *len = JOURNAL_CHECKPOINT_SIZE;
  return 0;
}

/* ---------------------------------------------------------------- verify */

static int audit_verify(int argc, char **argv) {
  const char *path = NULL, *pubkey_path = NULL, *kept_path = NULL, *v;
  int json = 0;
  ledger_audit_options o = {0};
  for (int i = 1; i < argc; i++) {
    int m;
    if ((m = cli_opt(argc, argv, &i, "audit verify", "--pubkey", &v)) != 0) {
      if (m < 0)
        return CLI_EXIT_USAGE;
      pubkey_path = v;
    } else if ((m = cli_opt(argc, argv, &i, "audit verify", "--checkpoint", &v)) != 0) {
      if (m < 0)
        return CLI_EXIT_USAGE;
      kept_path = v;
    } else if (cli_flag(argv, i, "--require-signed-head")) {
      o.require_signed_head = 1;
    } else if (cli_flag(argv, i, "--chain-only")) {
      o.chain_only = 1;
    } else if (cli_flag(argv, i, "--json")) {
      json = 1;
    } else if (cli_is_help(argv[i])) {
      fputs(audit_usage_text, stdout);
      return CLI_EXIT_OK;
    } else if (argv[i][0] == '-' || path) {
      fprintf(stderr, "tuma audit verify: unexpected argument '%s'\n", argv[i]);
      return CLI_EXIT_USAGE;
    } else {
      path = argv[i];
    }
  }
  if (!path) {
    fputs("tuma audit verify: PATH is required\n", stderr);
    return CLI_EXIT_USAGE;
  }
  ledger_audit_key *key = NULL;
  uint8_t *kept = NULL;
  char err[512] = "";
  if (pubkey_path) {
    if (ledger_audit_key_load(pubkey_path, 0, &key, err, sizeof err)) {
      fprintf(stderr, "tuma audit verify: %s\n", err);
      return CLI_EXIT_FAIL;
    }
    o.pubkey = key;
  }
  if (kept_path) {
    if (read_kept_checkpoint(kept_path, &kept, &o.kept_checkpoint_len)) {
      ledger_audit_key_free(key);
      return CLI_EXIT_FAIL;
    }
    o.kept_checkpoint = kept;
  }
  ledger_audit_report r;
  double secs = 0;
  int rc = ledger_audit_verify(path, &o, &r, &secs, err, sizeof err);
  ledger_audit_key_free(key);
  free(kept);
  if (rc && rc != LEDGER_E_CORRUPT) {
    fprintf(stderr, "tuma audit verify: %s\n", err[0] ? err : ledger_strerror(rc));
    return CLI_EXIT_FAIL;
  }
  char head[65];
  hex_of(r.head_hash, 32, head);
  double eps = secs > 0 ? (double)r.events / secs : 0;
  if (json) {
    printf("{\"ok\":%s,\"records\":%" PRIu64 ",\"batches\":%" PRIu64 ",\"checkpoints\":%" PRIu64
           ",\"events\":%" PRIu64 ",\"expiries\":%" PRIu64 ",\"accounts\":%" PRIu64
           ",\"seconds\":%.6f,\"events_per_sec\":%.0f,\"head_seq\":%" PRIu64
           ",\"head_hash\":\"%s\",\"replayed\":%d,\"compared\":%d,\"checkpoints_verified\":%d,"
           "\"unsigned_tail\":%" PRIu64 ",\"problem\":\"%s\",\"bad_seq\":%" PRIu64 "}\n",
           rc ? "false" : "true", r.records, r.batches, r.checkpoints, r.events, r.expiries,
           r.accounts, secs, eps, r.head_seq, head, r.replayed, r.compared, r.checkpoints_verified,
           r.unsigned_tail, ledger_audit_problem_name(r.problem), r.bad_seq);
  } else {
    printf("path         %s\n"
           "records      %" PRIu64 " (batches %" PRIu64 ", checkpoints %" PRIu64 ")\n"
           "events       %" PRIu64 " (expiries %" PRIu64 ")\n"
           "seconds      %.3f\n"
           "events/s     %.0f\n"
           "chain head   seq %" PRIu64 " hash %s\n",
           path, r.records, r.batches, r.checkpoints, r.events, r.expiries, secs, eps, r.head_seq,
           head);
    if (r.checkpoints_verified)
      printf("checkpoints  %" PRIu64 " verified; last at seq %" PRIu64 "; %" PRIu64
             " records after it\n",
             r.checkpoints, r.last_checkpoint_seq, r.unsigned_tail);
    else
      printf("checkpoints  %" PRIu64 " not checked (no --pubkey)\n", r.checkpoints);
    if (!rc)
      printf("replay       %s\n",
             !r.replayed  ? "skipped (chain only, or an export that does not start at genesis)"
             : r.compared ? "every stored account, transfer and pending transfer matches byte "
                            "for byte; debits = credits"
                          : "debits = credits (no stored accounts to compare: an export)");
    if (!rc && r.replayed)
      printf("accounts     %" PRIu64 " (open pending transfers %" PRIu64 ")\n", r.accounts,
             r.open_pendings);
  }
  if (rc) {
    fprintf(stderr, "tuma audit verify: FAILED at record %" PRIu64 ": %s: %s\n", r.bad_seq,
            ledger_audit_problem_name(r.problem), r.detail);
    return CLI_EXIT_FAIL;
  }
  if (!json)
    puts("OK");
  return CLI_EXIT_OK;
}

/* ---------------------------------------------------------------- export */

enum { FMT_RAW, FMT_JSONL, FMT_CSV };

typedef struct export_ctx {
  FILE *out;
  int format;
  uint64_t records;
  int error;
} export_ctx;

static const char csv_header[] =
    "seq,timestamp,record_hash,index,kind,result,id,debit_account_id,credit_account_id,amount,"
    "pending_id,flags,ledger,code,timeout,user_data_128,user_data_64,user_data_32\n";

static void print_event(export_ctx *c, const journal_view *v, const char *rh, uint32_t i) {
  ledger_event ev = journal_event_at(v, i);
  ledger_result res = journal_result_at(v, i);
  uint64_t ts = v->timestamp + v->expired_count + i;
  char id[33], dr[33] = "", cr[33] = "", pid[33] = "", ud[33], udm[33];
  const char *kind = ev.kind == LEDGER_EVENT_CREATE_ACCOUNT    ? "account"
                     : ev.kind == LEDGER_EVENT_CREATE_TRANSFER ? "transfer"
                                                               : "unknown";
  uint64_t amount = 0, ud64;
  uint32_t flags, led, code, timeout = 0, ud32;
  if (ev.kind == LEDGER_EVENT_CREATE_TRANSFER) {
    const ledger_transfer *t = &ev.transfer;
    id_hex(t->id, id);
    id_hex(t->debit_account_id, dr);
    id_hex(t->credit_account_id, cr);
    id_hex(t->pending_id, pid);
    id_hex(t->user_data_128, ud);
    amount = t->amount;
    flags = t->flags;
    led = t->ledger;
    code = t->code;
    timeout = t->timeout;
    ud64 = t->user_data_64;
    ud32 = t->user_data_32;
  } else {
    const ledger_account *a = &ev.account;
    id_hex(a->id, id);
    id_hex(a->user_data_128, ud);
    flags = a->flags;
    led = a->ledger;
    code = a->code;
    ud64 = a->user_data_64;
    ud32 = a->user_data_32;
  }
  /* User data may carry what a client chose to put there (digests, references): masked. */
  cli_mask(ud, udm, sizeof udm);
  if (c->format == FMT_JSONL)
    fprintf(c->out,
            "{\"seq\":%" PRIu64 ",\"timestamp\":%" PRIu64 ",\"record_hash\":\"%s\",\"index\":%u,"
            "\"kind\":\"%s\",\"result\":\"%s\",\"id\":\"%s\",\"debit_account_id\":\"%s\","
            "\"credit_account_id\":\"%s\",\"amount\":%" PRIu64 ",\"pending_id\":\"%s\","
            "\"flags\":%u,\"ledger\":%u,\"code\":%u,\"timeout\":%u,\"user_data_128\":\"%s\","
            "\"user_data_64\":\"%s\",\"user_data_32\":%u}\n",
            v->seq, ts, rh, i, kind, ledger_result_name(res), id, dr, cr, amount, pid, flags, led,
            code, timeout, udm, ud64 ? "***" : "0", ud32);
  else
    fprintf(c->out,
            "%" PRIu64 ",%" PRIu64 ",%s,%u,%s,%s,%s,%s,%s,%" PRIu64 ",%s,%u,%u,%u,%u,%s,%s,%u\n",
            v->seq, ts, rh, i, kind, ledger_result_name(res), id, dr, cr, amount, pid, flags, led,
            code, timeout, udm, ud64 ? "***" : "0", ud32);
}

static int export_cb(uint64_t seq, const void *record, size_t len, void *arg) {
  export_ctx *c = arg;
  (void)seq;
  if (c->format == FMT_RAW) {
    uint8_t lb[4] = {(uint8_t)len, (uint8_t)(len >> 8), (uint8_t)(len >> 16), (uint8_t)(len >> 24)};
    if (fwrite(lb, 1, 4, c->out) != 4 || fwrite(record, 1, len, c->out) != len)
      return c->error = -1;
    c->records++;
    return 0;
  }
  journal_view v;
  if (journal_parse(record, len, &v)) {
    fprintf(stderr,
            "tuma audit export: record %" PRIu64 " does not verify; stopping (run "
            "'tuma audit verify')\n",
            seq);
    return c->error = -2;
  }
  char rh[65];
  hex_of(v.hash, 32, rh);
  if (v.kind == JOURNAL_KIND_CHECKPOINT) {
    char fp[65];
    hex_of(v.fingerprint, 32, fp);
    if (c->format == FMT_JSONL)
      fprintf(c->out,
              "{\"seq\":%" PRIu64 ",\"timestamp\":%" PRIu64 ",\"record_hash\":\"%s\","
              "\"kind\":\"checkpoint\",\"key_fingerprint\":\"%s\"}\n",
              v.seq, v.timestamp, rh, fp);
    else
      fprintf(c->out, "%" PRIu64 ",%" PRIu64 ",%s,,checkpoint,,%s,,,,,,,,,,,\n", v.seq, v.timestamp,
              rh, fp);
  }
  for (uint32_t k = 0; k < v.expired_count; k++) {
    char id[33];
    id_hex(journal_expired_at(&v, k), id);
    if (c->format == FMT_JSONL)
      fprintf(c->out,
              "{\"seq\":%" PRIu64 ",\"timestamp\":%" PRIu64 ",\"record_hash\":\"%s\","
              "\"index\":%u,\"kind\":\"expiry\",\"id\":\"%s\"}\n",
              v.seq, v.timestamp + k, rh, k, id);
    else
      fprintf(c->out, "%" PRIu64 ",%" PRIu64 ",%s,%u,expiry,,%s,,,,,,,,,,,\n", v.seq,
              v.timestamp + k, rh, k, id);
  }
  for (uint32_t i = 0; i < v.event_count; i++)
    print_event(c, &v, rh, i);
  c->records++;
  return ferror(c->out) ? (c->error = -1) : 0;
}

static int audit_export(int argc, char **argv) {
  const char *path = NULL, *output = NULL, *v;
  uint64_t from = 1, to = 0;
  export_ctx c = {0};
  c.format = FMT_RAW;
  for (int i = 1; i < argc; i++) {
    int m;
    if ((m = cli_opt(argc, argv, &i, "audit export", "--from", &v)) != 0) {
      if (m < 0 || cli_parse_u64("audit export", "--from", v, 1, UINT64_MAX, &from))
        return CLI_EXIT_USAGE;
    } else if ((m = cli_opt(argc, argv, &i, "audit export", "--to", &v)) != 0) {
      if (m < 0 || cli_parse_u64("audit export", "--to", v, 1, UINT64_MAX, &to))
        return CLI_EXIT_USAGE;
    } else if ((m = cli_opt(argc, argv, &i, "audit export", "--format", &v)) != 0) {
      if (m < 0)
        return CLI_EXIT_USAGE;
      if (!strcmp(v, "raw"))
        c.format = FMT_RAW;
      else if (!strcmp(v, "jsonl"))
        c.format = FMT_JSONL;
      else if (!strcmp(v, "csv"))
        c.format = FMT_CSV;
      else {
        fprintf(stderr, "tuma audit export: --format: '%s' is not raw, jsonl or csv\n", v);
        return CLI_EXIT_USAGE;
      }
    } else if ((m = cli_opt(argc, argv, &i, "audit export", "--output", &v)) != 0) {
      if (m < 0)
        return CLI_EXIT_USAGE;
      output = v;
    } else if (cli_is_help(argv[i])) {
      fputs(audit_usage_text, stdout);
      return CLI_EXIT_OK;
    } else if (argv[i][0] == '-' || path) {
      fprintf(stderr, "tuma audit export: unexpected argument '%s'\n", argv[i]);
      return CLI_EXIT_USAGE;
    } else {
      path = argv[i];
    }
  }
  if (!path) {
    fputs("tuma audit export: PATH is required\n", stderr);
    return CLI_EXIT_USAGE;
  }
  if (to && to < from) {
    fputs("tuma audit export: --to is before --from\n", stderr);
    return CLI_EXIT_USAGE;
  }
  if (c.format == FMT_RAW && !output && isatty(STDOUT_FILENO)) {
    fputs("tuma audit export: raw is binary: give --output FILE or redirect stdout\n", stderr);
    return CLI_EXIT_USAGE;
  }
  char err[512] = "";
  ledger_audit_source *src = NULL;
  int rc = ledger_audit_source_open(path, &src, err, sizeof err);
  if (rc) {
    fprintf(stderr, "tuma audit export: %s\n", err);
    return CLI_EXIT_FAIL;
  }
  c.out = output ? fopen(output, c.format == FMT_RAW ? "wb" : "w") : stdout;
  if (!c.out) {
    fprintf(stderr, "tuma audit export: %s: %s\n", output, strerror(errno));
    ledger_audit_source_close(src);
    return CLI_EXIT_FAIL;
  }
  if (c.format == FMT_CSV)
    fputs(csv_header, c.out);
  rc = ledger_audit_source_scan(src, from, to, export_cb, &c);
  ledger_audit_source_close(src);
  int close_failed = output ? fclose(c.out) != 0 : fflush(c.out) != 0;
  if (rc || c.error || close_failed) {
    if (c.error == -1 || close_failed || (rc && !c.error))
      fprintf(stderr, "tuma audit export: %s\n",
              rc && !c.error ? ledger_strerror(rc) : "write failed");
    return CLI_EXIT_FAIL;
  }
  fprintf(stderr, "tuma audit export: %" PRIu64 " records\n", c.records);
  return CLI_EXIT_OK;
}

/* ---------------------------------------------------------------- balances */

typedef struct balances_ctx {
  int csv;
} balances_ctx;

static int balance_cb(const ledger_account *a, void *arg) {
  balances_ctx *c = arg;
  char id[33];
  id_hex(a->id, id);
  printf(c->csv ? "%s,%u,%u,%u,%" PRIu64 ",%" PRIu64 ",%" PRIu64 ",%" PRIu64 "\n"
                : "%s %6u %5u %5u %20" PRIu64 " %20" PRIu64 " %20" PRIu64 " %20" PRIu64 "\n",
         id, a->ledger, a->code, a->flags, a->debits_pending, a->debits_posted, a->credits_pending,
         a->credits_posted);
  return 0;
}

static int audit_balances(int argc, char **argv) {
  const char *path = NULL, *at = NULL, *v;
  balances_ctx bc = {0};
  for (int i = 1; i < argc; i++) {
    int m;
    if ((m = cli_opt(argc, argv, &i, "audit balances", "--at", &v)) != 0) {
      if (m < 0)
        return CLI_EXIT_USAGE;
      at = v;
    } else if ((m = cli_opt(argc, argv, &i, "audit balances", "--format", &v)) != 0) {
      if (m < 0 || (strcmp(v, "text") && strcmp(v, "csv"))) {
        if (m >= 0)
          fprintf(stderr, "tuma audit balances: --format: '%s' is not text or csv\n", v);
        return CLI_EXIT_USAGE;
      }
      bc.csv = !strcmp(v, "csv");
    } else if (cli_is_help(argv[i])) {
      fputs(audit_usage_text, stdout);
      return CLI_EXIT_OK;
    } else if (argv[i][0] == '-' || path) {
      fprintf(stderr, "tuma audit balances: unexpected argument '%s'\n", argv[i]);
      return CLI_EXIT_USAGE;
    } else {
      path = argv[i];
    }
  }
  if (!path || !at) {
    fputs("tuma audit balances: PATH and --at SEQ|TIME are required\n", stderr);
    return CLI_EXIT_USAGE;
  }
  ledger_audit_options o = {0};
  o.require_genesis = 1;
  if (strspn(at, "0123456789") == strlen(at)) {
    if (cli_parse_u64("audit balances", "--at", at, 1, UINT64_MAX, &o.stop_seq))
      return CLI_EXIT_USAGE;
  } else if (parse_time(at, &o.stop_time) || o.stop_time == 0) {
    fprintf(stderr,
            "tuma audit balances: --at: '%s' is neither a sequence number nor a UTC "
            "time like 2026-11-28T03:00:00Z\n",
            at);
    return CLI_EXIT_USAGE;
  }
  char err[512] = "";
  ledger_audit_source *src = NULL;
  ledger_audit *a = NULL;
  int status = CLI_EXIT_FAIL;
  if (ledger_audit_source_open(path, &src, err, sizeof err)) {
    fprintf(stderr, "tuma audit balances: %s\n", err);
    return CLI_EXIT_FAIL;
  }
  if (ledger_audit_new(&o, &a)) {
    fputs("tuma audit balances: out of memory\n", stderr);
    goto out;
  }
  int rc = ledger_audit_source_scan(src, 1, 0, ledger_audit_feed_cb, a);
  if (rc == 1)
    rc = 0;
  if (!rc || rc == LEDGER_E_CORRUPT)
    rc = ledger_audit_finish(a, NULL);
  const ledger_audit_report *r = ledger_audit_report_of(a);
  if (rc) {
    fprintf(stderr, "tuma audit balances: record %" PRIu64 ": %s: %s\n", r->bad_seq,
            r->problem ? ledger_audit_problem_name(r->problem) : ledger_strerror(rc), r->detail);
    goto out;
  }
  if (!r->replayed) {
    fputs("tuma audit balances: the journal does not start at genesis: cannot replay\n", stderr);
    goto out;
  }
  if (o.stop_seq && r->head_seq < o.stop_seq)
    fprintf(stderr, "tuma audit balances: the journal ends at record %" PRIu64 "\n", r->head_seq);
  char when[48];
  format_time(r->head_timestamp, when, sizeof when);
  if (bc.csv)
    puts("account_id,ledger,code,flags,debits_pending,debits_posted,credits_pending,"
         "credits_posted");
  else
    printf("balances after record %" PRIu64 " (%s), %" PRIu64 " accounts\n"
           "%-32s %6s %5s %5s %20s %20s %20s %20s\n",
           r->head_seq, when, r->accounts, "account", "ledger", "code", "flags", "debits_pending",
           "debits_posted", "credits_pending", "credits_posted");
  ledger_audit_accounts(a, balance_cb, &bc);
  status = CLI_EXIT_OK;
out:
  ledger_audit_free(a);
  ledger_audit_source_close(src);
  return status;
}

/* ---------------------------------------------------------------- transfer */

typedef struct transfer_ctx {
  ledger_id id;
  uint64_t found;
  int bad;
} transfer_ctx;

static int transfer_cb(uint64_t seq, const void *record, size_t len, void *arg) {
  transfer_ctx *c = arg;
  journal_view v;
  if (journal_parse(record, len, &v)) {
    fprintf(stderr, "tuma audit transfer: record %" PRIu64 " does not verify\n", seq);
    c->bad = 1;
    return 1;
  }
  char rh[65], when[48];
  hex_of(v.hash, 32, rh);
  for (uint32_t k = 0; k < v.expired_count; k++) {
    if (!ledger_id_eq(journal_expired_at(&v, k), c->id))
      continue;
    format_time(v.timestamp + k, when, sizeof when);
    printf("record %" PRIu64 "  %s  expired by the ledger\n  record hash %s\n", v.seq, when, rh);
    c->found++;
  }
  for (uint32_t i = 0; i < v.event_count; i++) {
    ledger_event ev = journal_event_at(&v, i);
    if (ev.kind != LEDGER_EVENT_CREATE_TRANSFER)
      continue;
    const ledger_transfer *t = &ev.transfer;
    int self = ledger_id_eq(t->id, c->id);
    int resolves = ledger_id_eq(t->pending_id, c->id) &&
                   (t->flags & (LEDGER_TRANSFER_POST_PENDING | LEDGER_TRANSFER_VOID_PENDING));
    if (!self && !resolves)
      continue;
    const char *what = t->flags & LEDGER_TRANSFER_POST_PENDING   ? "post"
                       : t->flags & LEDGER_TRANSFER_VOID_PENDING ? "void"
                       : t->flags & LEDGER_TRANSFER_PENDING      ? "prepare (pending)"
                                                                 : "transfer";
    char id[33], dr[33], cr[33];
    id_hex(t->id, id);
    id_hex(t->debit_account_id, dr);
    id_hex(t->credit_account_id, cr);
    format_time(v.timestamp + v.expired_count + i, when, sizeof when);
    printf("record %" PRIu64 " event %u  %s  %s%s  result %s\n"
           "  id %s  debit %s  credit %s\n"
           "  amount %" PRIu64 "  ledger %u  code %u  flags %u  timeout %u s\n"
           "  record hash %s\n",
           v.seq, i, when, what, resolves ? " of it" : "",
           ledger_result_name(journal_result_at(&v, i)), id, dr, cr, t->amount, t->ledger, t->code,
           t->flags, t->timeout, rh);
    c->found++;
  }
  return 0;
}

static int audit_transfer(int argc, char **argv) {
  const char *path = NULL, *idtext = NULL;
  for (int i = 1; i < argc; i++) {
    if (cli_is_help(argv[i])) {
      fputs(audit_usage_text, stdout);
      return CLI_EXIT_OK;
    } else if (argv[i][0] == '-' || (path && idtext)) {
      fprintf(stderr, "tuma audit transfer: unexpected argument '%s'\n", argv[i]);
      return CLI_EXIT_USAGE;
    } else if (!path) {
      path = argv[i];
    } else {
      idtext = argv[i];
    }
  }
  transfer_ctx c = {0};
  if (!path || !idtext) {
    fputs("tuma audit transfer: PATH and ID are required\n", stderr);
    return CLI_EXIT_USAGE;
  }
  if (parse_id(idtext, &c.id) || ledger_id_is_zero(c.id)) {
    fprintf(stderr, "tuma audit transfer: ID: '%s' is not 32 hex digits\n", idtext);
    return CLI_EXIT_USAGE;
  }
  char err[512] = "";
  ledger_audit_source *src = NULL;
  if (ledger_audit_source_open(path, &src, err, sizeof err)) {
    fprintf(stderr, "tuma audit transfer: %s\n", err);
    return CLI_EXIT_FAIL;
  }
  int rc = ledger_audit_source_scan(src, 1, 0, transfer_cb, &c);
  ledger_audit_source_close(src);
  if (c.bad || (rc && rc != 1)) {
    if (!c.bad)
      fprintf(stderr, "tuma audit transfer: %s\n", ledger_strerror(rc));
    return CLI_EXIT_FAIL;
  }
  if (!c.found) {
    fprintf(stderr, "tuma audit transfer: no record mentions transfer %s\n", idtext);
    return CLI_EXIT_FAIL;
  }
  return CLI_EXIT_OK;
}

/* ---------------------------------------------------------------- checkpoint, keygen */

typedef struct last_ckp {
  uint8_t rec[JOURNAL_CHECKPOINT_SIZE];
  uint64_t seq;
} last_ckp;

static int last_ckp_cb(uint64_t seq, const void *record, size_t len, void *arg) {
  last_ckp *c = arg;
  journal_view v;
  if (len == JOURNAL_CHECKPOINT_SIZE && !journal_parse(record, len, &v) &&
      v.kind == JOURNAL_KIND_CHECKPOINT) {
    memcpy(c->rec, record, len);
    c->seq = seq;
  }
  return 0;
}

static int audit_checkpoint(int argc, char **argv) {
  const char *path = NULL, *output = NULL, *v;
  for (int i = 1; i < argc; i++) {
    int m;
    if ((m = cli_opt(argc, argv, &i, "audit checkpoint", "--output", &v)) != 0) {
      if (m < 0)
        return CLI_EXIT_USAGE;
      output = v;
    } else if (cli_is_help(argv[i])) {
      fputs(audit_usage_text, stdout);
      return CLI_EXIT_OK;
    } else if (argv[i][0] == '-' || path) {
      fprintf(stderr, "tuma audit checkpoint: unexpected argument '%s'\n", argv[i]);
      return CLI_EXIT_USAGE;
    } else {
      path = argv[i];
    }
  }
  if (!path || !output) {
    fputs("tuma audit checkpoint: PATH and --output FILE are required\n", stderr);
    return CLI_EXIT_USAGE;
  }
  char err[512] = "";
  ledger_audit_source *src = NULL;
  if (ledger_audit_source_open(path, &src, err, sizeof err)) {
    fprintf(stderr, "tuma audit checkpoint: %s\n", err);
    return CLI_EXIT_FAIL;
  }
  last_ckp c = {{0}, 0};
  int rc = ledger_audit_source_scan(src, 1, 0, last_ckp_cb, &c);
  ledger_audit_source_close(src);
  if (rc || !c.seq) {
    fprintf(stderr, "tuma audit checkpoint: %s\n",
            rc ? ledger_strerror(rc) : "no checkpoint in the journal");
    return CLI_EXIT_FAIL;
  }
  FILE *f = fopen(output, "wb");
  uint8_t lb[4] = {(uint8_t)JOURNAL_CHECKPOINT_SIZE, 0, 0, 0};
  if (!f || fwrite(lb, 1, 4, f) != 4 || fwrite(c.rec, 1, sizeof c.rec, f) != sizeof c.rec ||
      fclose(f)) {
    fprintf(stderr, "tuma audit checkpoint: %s: cannot write\n", output);
    return CLI_EXIT_FAIL;
  }
  printf("kept checkpoint %" PRIu64 " in %s\n", c.seq, output);
  return CLI_EXIT_OK;
}

static int audit_keygen(int argc, char **argv) {
  if (argc == 2 && cli_is_help(argv[1])) {
    fputs(audit_usage_text, stdout);
    return CLI_EXIT_OK;
  }
  if (argc != 3 || argv[1][0] == '-' || argv[2][0] == '-') {
    fputs("usage: tuma audit keygen PRIVATE_KEY PUBLIC_KEY\n", stderr);
    return CLI_EXIT_USAGE;
  }
  char err[512] = "";
  if (ledger_audit_keygen(argv[1], argv[2], err, sizeof err)) {
    fprintf(stderr, "tuma audit keygen: %s\n", err);
    return CLI_EXIT_FAIL;
  }
  ledger_audit_key *k = NULL;
  if (ledger_audit_key_load(argv[2], 0, &k, err, sizeof err) == 0) {
    char fp[65];
    hex_of(ledger_audit_key_fingerprint(k), 32, fp);
    printf("key fingerprint %s\n", fp);
    ledger_audit_key_free(k);
  }
  return CLI_EXIT_OK;
}

int cli_audit_main(int argc, char **argv) {
  if (argc < 2 || cli_is_help(argv[1])) {
    fputs(audit_usage_text, argc < 2 ? stderr : stdout);
    return argc < 2 ? CLI_EXIT_USAGE : CLI_EXIT_OK;
  }
  static const struct {
    const char *name;
    int (*run)(int, char **);
  } cmds[] = {
      {"verify", audit_verify},     {"export", audit_export},         {"balances", audit_balances},
      {"transfer", audit_transfer}, {"checkpoint", audit_checkpoint}, {"keygen", audit_keygen},
  };
  for (size_t k = 0; k < sizeof cmds / sizeof cmds[0]; k++)
    if (!strcmp(argv[1], cmds[k].name))
      return cmds[k].run(argc - 1, argv + 1);
  fprintf(stderr, "tuma audit: unknown command '%s'\n", argv[1]);
  fputs(audit_usage_text, stderr);
  return CLI_EXIT_USAGE;
}

/* ---------------------------------------------------------------- backup */

static int copy_small_file(const char *from, const char *to) {
  FILE *in = fopen(from, "rb");
  if (!in)
    return -1;
  struct stat st;
  int rc = fstat(fileno(in), &st);
  FILE *out = rc ? NULL : fopen(to, "wbx");
  if (!out) {
    fclose(in);
    return -1;
  }
  chmod(to, st.st_mode & 0777);
  char buf[4096];
  size_t n;
  rc = 0;
  while ((n = fread(buf, 1, sizeof buf, in)) > 0)
    if (fwrite(buf, 1, n, out) != n)
      rc = -1;
  if (ferror(in))
    rc = -1;
  fclose(in);
  if (fclose(out))
    rc = -1;
  return rc;
}

int cli_backup_main(int argc, char **argv) {
  const char *path = NULL, *dest = NULL;
  int compact = 0;
  for (int i = 1; i < argc; i++) {
    if (cli_is_help(argv[i])) {
      fputs(backup_usage_text, stdout);
      return CLI_EXIT_OK;
    } else if (cli_flag(argv, i, "--compact")) {
      compact = 1;
    } else if (argv[i][0] == '-' || (path && dest)) {
      fprintf(stderr, "tuma backup: unexpected argument '%s'\n", argv[i]);
      return CLI_EXIT_USAGE;
    } else if (!path) {
      path = argv[i];
    } else {
      dest = argv[i];
    }
  }
  if (!path || !dest) {
    fputs(backup_usage_text, stderr);
    return CLI_EXIT_USAGE;
  }
  char src_env[4200], dst_env[4200], probe[4300], err[512] = "";
  snprintf(probe, sizeof probe, "%s/data.mdb", path);
  int is_ledger_dir = access(probe, F_OK) == 0;
  if (is_ledger_dir) {
    if (ledger_audit_backup(path, dest, compact, err, sizeof err)) {
      fprintf(stderr, "tuma backup: %s\n", err);
      return CLI_EXIT_FAIL;
    }
    printf("backed up %s to %s\n", path, dest);
    return CLI_EXIT_OK;
  }
  if (mkdir(dest, 0750) && errno != EEXIST) {
    fprintf(stderr, "tuma backup: %s: %s\n", dest, strerror(errno));
    return CLI_EXIT_FAIL;
  }
  snprintf(src_env, sizeof src_env, "%s/ledger", path);
  snprintf(dst_env, sizeof dst_env, "%s/ledger", dest);
  if (ledger_audit_backup(src_env, dst_env, compact, err, sizeof err)) {
    fprintf(stderr, "tuma backup: %s\n", err);
    return CLI_EXIT_FAIL;
  }
  snprintf(src_env, sizeof src_env, "%s/registry", path);
  snprintf(probe, sizeof probe, "%s/data.mdb", src_env);
  if (access(probe, F_OK) == 0) {
    snprintf(dst_env, sizeof dst_env, "%s/registry", dest);
    if (ledger_audit_backup(src_env, dst_env, compact, err, sizeof err)) {
      fprintf(stderr, "tuma backup: %s\n", err);
      return CLI_EXIT_FAIL;
    }
  }
  snprintf(probe, sizeof probe, "%s/directory.key", path);
  if (access(probe, F_OK) == 0) {
    snprintf(dst_env, sizeof dst_env, "%s/directory.key", dest);
    if (copy_small_file(probe, dst_env)) {
      fprintf(stderr, "tuma backup: %s: cannot copy to %s\n", probe, dst_env);
      return CLI_EXIT_FAIL;
    }
  }
  printf("backed up %s to %s%s\n", path, dest, compact ? " (compacted)" : "");
  return CLI_EXIT_OK;
}
