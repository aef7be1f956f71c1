/* disburse_fixture.h — the disbursement test fixture shared by tests/test_disburse.c and
 * tests/test_disburse_crash.c: a real tumad (tests/switch_harness.h, 64 KiB frames), tuma-opsim
 * alpha and beta as the payee operators (TUMA_OPSIM), the `tuma disburse` CLI (TUMA_CLI) run with
 * the certificate of a role, and readers for what they print (status, CSV report, opsim credits).
 *
 * Beneficiary k has national id 3000000k, is on alpha (k even) or beta (k odd) with wallet k/2,
 * whose MSISDN is the operator's prefix (25470 / 25471) and the index zero-padded to 7 digits.
 *
 * Every function fails the running Criterion test (cr_assert) instead of returning an error. The
 * strings a function returns are static or in the fixture unless said otherwise. Not thread-safe:
 * one fixture per test process.
 */
#ifndef TUMA_TESTS_DISBURSE_FIXTURE_H
#define TUMA_TESTS_DISBURSE_FIXTURE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "switch_harness.h"

enum {
  DZ_OUT = 1 << 21,      /* a command's output or a file read back, NUL included */
  DZ_FILE = 1 << 21,     /* a list or registration file written */
  DZ_ARGS = 64,          /* a command's arguments, connection options included */
  DZ_INVALID = 1 << 17,  /* a report's "# excluded at validation" block */
  DZ_MAX_WALLETS = 8192, /* per operator */
  DZ_MAX_ROWS = 4096,    /* report rows read back */
};

#define DZ_EXIT_MS 30000 /* an opsim stopping after SIGTERM */

extern const char *const DZ_PROG;      /* the programme every test uses: "relief" */
extern const char *const DZ_OPS[2];    /* "alpha", "beta" */
extern const char *const DZ_PREFIX[2]; /* their MSISDN prefixes */
extern const char *const DZ_ITEM[6];   /* item states at 1..5: pending … cancelled */

/* ---------------------------------------------------------------- time and processes */

int64_t dz_mono_ms(void);
void dz_sleep_ms(int ms);

typedef struct dz_proc {
  pid_t pid; /* 0 once reaped */
  char out[SH_PATH_MAX + 64], err[SH_PATH_MAX + 64];
} dz_proc;

/* Forks argv (argv[0] = the program's path; borrowed only for the call) with stdin from
 * /dev/null, stdout to DIR/TAG.out and stderr to DIR/TAG.err; it dies with the test. */
void dz_proc_start(dz_proc *p, const char *dir, const char *tag, const char *const *argv);

/* 1 if it ended (*status: its exit status, or -1 for a signal); 0 if still running. */
int dz_proc_poll(dz_proc *p, int *status);

/* Waits at most timeout_ms (polling every 10 ms); the exit status, or -1 if a signal ended it or
 * it had to be killed (SIGKILL) at the timeout. */
int dz_proc_wait(dz_proc *p, int timeout_ms);

/* The whole file into buf[DZ_OUT] (NUL-terminated, truncated; "" if unreadable); returns buf. */
char *dz_read_file(const char *path, char *buf);

/* 1 once the file contains needle (re-read every 25 ms), 0 after timeout_ms. */
int dz_wait_for_text(const char *path, const char *needle, int timeout_ms);

void dz_write_file(const char *path, const char *text);

/* ---------------------------------------------------------------- the fixture */

/* What differs between the suites. */
typedef struct dz_config {
  int start_ms;        /* tumad start-up */
  int ready_ms;        /* an opsim connected and its wallets registered */
  int cmd_ms;          /* a command that should finish promptly */
  int read_timeout_ms; /* tumad's partial-frame (and handshake) timeout; 0: the harness's */
  int opsim_pki;       /* 1: the opsims get --pki (they renew what the PKI directory holds) */
  int amount_wrap;     /* beneficiary k's amount uses k mod amount_wrap; 0: k itself */
} dz_config;

typedef struct dz_fixture {
  dz_config cfg;
  sh_switch *h;
  dz_proc op[2]; /* tuma-opsim alpha (0) and beta (1) */
  char data[2][SH_PATH_MAX + 32];
  int wallets;   /* per operator */
  int ncli;      /* commands run so far (their output files are numbered) */
  int starts[2]; /* each opsim's starts (their output files are numbered) */
  int kills;     /* kill -9s of tumad, for the crash suite */
} dz_fixture;

/* A started tumad and, if wallets > 0, both operators with that many wallets each (cfg is
 * copied). The harness is remembered for dz_suite_fini until dz_destroy. */
void dz_start(dz_fixture *z, const dz_config *cfg, int wallets);

/* Stops the operators and tumad (each must exit 0 on SIGTERM); the scratch directory stays until
 * dz_destroy, so the ledger can be read in between. */
void dz_stop(dz_fixture *z);

/* Removes the scratch directory (kept if TUMA_TEST_KEEP is set). */
void dz_destroy(dz_fixture *z);

/* dz_stop, then dz_destroy. */
void dz_done(dz_fixture *z);

typedef void (*dz_dump_cb)(const sh_switch *h);

/* A suite's .fini: if a test ended without dz_destroy, prints the last log_lines of tumad.log,
 * then dump_cb's (may be NULL), keeps the scratch directory and names it. */
void dz_suite_fini(int log_lines, dz_dump_cb dump_cb);

const char *dz_opsim_bin(void);

/* The MSISDN of wallet i of operator op. */
void dz_wallet_msisdn(int op, int i, char *out, size_t cap);

/* Starts (or restarts, on the same data directory) operator op as a payee only and waits until
 * it is ready; extra: more options (NULL-terminated, may be NULL), e.g. --reject-percent 100. */
void dz_opsim_start_with(dz_fixture *z, int op, const char *const *extra);
void dz_opsim_start(dz_fixture *z, int op);

/* SIGTERM, which it must exit 0 on; nothing if it is not running. */
void dz_opsim_stop(dz_fixture *z, int op);

/* ---------------------------------------------------------------- running the CLI */

typedef struct dz_result {
  int status; /* exit status, -1 for a signal or a timeout */
  char out[DZ_OUT], err[DZ_OUT];
} dz_result;

/* A heap dz_result (4 MiB: never on the stack); the caller frees it. */
dz_result *dz_result_new(void);

/* Starts `tuma ARGS… --connect … --ca … --cert AS.crt --key AS.key` (args NULL-terminated,
 * borrowed for the call). as is a certificate name in DIR/certs, or a path without ".crt"/".key"
 * when it holds a '/'. The output goes to DIR/cli-N.{out,err}; DIR/commands.log lists what ran. */
void dz_cli_spawn(dz_fixture *z, dz_proc *p, const char *as, const char *const *args);

/* Runs the command to completion (at most timeout_ms) and reads its output into r. */
void dz_cli_runv(dz_fixture *z, dz_result *r, int timeout_ms, const char *as,
                 const char *const *args);

/* The same with the arguments as a variable list ending in NULL (at most cfg.cmd_ms). */
void dz_cli_run(dz_fixture *z, dz_result *r, const char *as, ...);

#define DZ_CLI_OK(z, r, as, ...)                                                                   \
  do {                                                                                             \
    dz_cli_run((z), (r), (as), __VA_ARGS__, (const char *)NULL);                                   \
    cr_assert_eq((r)->status, 0, "tuma exits 0 (%d)\nstdout: %.2000s\nstderr: %.2000s",            \
                 (r)->status, (r)->out, (r)->err);                                                 \
  } while (0)

#define DZ_CLI_REFUSED(z, r, as, ...)                                                              \
  do {                                                                                             \
    dz_cli_run((z), (r), (as), __VA_ARGS__, (const char *)NULL);                                   \
    cr_assert_eq((r)->status, 1, "tuma exits 1 (%d)\nstdout: %.2000s\nstderr: %.2000s",            \
                 (r)->status, (r)->out, (r)->err);                                                 \
  } while (0)

/* ---------------------------------------------------------------- reading what it printed */

/* Major units "1234.50" (two decimals, KES) at p → minor units. */
uint64_t dz_kes_minor(const char *p);

/* The unsigned number after `key` in text (which must contain it). */
uint64_t dz_num_after(const char *text, const char *key);

/* "12345" minor → "123.45"; v → "v". Each from a ring of 8 static buffers. */
const char *dz_kes(uint64_t minor);
const char *dz_u64s(uint64_t v);

typedef struct dz_prog_info {
  uint64_t budget, reserved, available;
} dz_prog_info;

/* `tuma disburse programme show` (as admin) of DZ_PROG. */
dz_prog_info dz_programme_show(dz_fixture *z);

/* "batch N submitted" / "batch N already submitted" → N. */
uint64_t dz_batch_of(const dz_result *r);

typedef struct dz_status {
  char state[32];
  uint32_t cycle;
  uint64_t n[6]; /* pending, in_flight, paid, failed, cancelled at 1..5 */
  uint64_t amount[6];
} dz_status;

/* `tuma disburse status BATCH` as manager; 0 if it answered (s filled), -1 if not (tumad being
 * restarted). */
int dz_batch_status_try(dz_fixture *z, uint64_t batch, dz_status *s);

/* The same; it must answer. */
dz_status dz_batch_status(dz_fixture *z, uint64_t batch);

/* Polls the batch's status (every 250 ms, at most timeout_ms) until done(s, arg) holds; what
 * names the awaited condition in the failure message. */
dz_status dz_wait_status(dz_fixture *z, uint64_t batch, int (*done)(const dz_status *, void *),
                         void *arg, int timeout_ms, const char *what);

/* Conditions for dz_wait_status: the state is arg (a string); at least *(uint64_t *)arg paid. */
int dz_state_is(const dz_status *s, void *arg);
int dz_paid_at_least(const dz_status *s, void *arg);

typedef struct dz_row {
  uint32_t cycle;
  uint64_t line;
  char beneficiary[80], reference[80], currency[8], status[16], reason[128], transfer_id[40],
      completed[40], op[64];
  uint64_t amount;
  uint32_t reason_code;
} dz_row;

typedef struct dz_report {
  dz_row *rows; /* DZ_MAX_ROWS of them, heap; the caller frees */
  size_t n;
  uint64_t paid_total;      /* the rows with status paid */
  char invalid[DZ_INVALID]; /* the "# excluded at validation" block, as printed */
} dz_report;

/* Splits one CSV line into at most max fields (quotes honoured) in place. */
size_t dz_csv_split(char *line, char **fields, size_t max);

/* `tuma disburse report BATCH --csv` as approver, read back. r: where the command's output goes
 * (may be NULL: a temporary one). */
dz_report dz_get_report(dz_fixture *z, uint64_t batch, dz_result *r);

/* ---------------------------------------------------------------- tuma-opsim's side */

/* The unsigned number of "key": in from (which must contain it); the object "key":{…} in from. */
uint64_t dz_json_u64(const char *from, const char *key);
const char *dz_json_obj(const char *from, const char *key);

/* Runs `tuma-opsim WHAT --data DIR` (it may run beside the operator) into out[DZ_OUT]. */
void dz_opsim_print(dz_fixture *z, int op, const char *what, char *out);

typedef struct dz_credits {
  uint64_t in_count, in_amount, pending;
  uint32_t per_wallet[DZ_MAX_WALLETS]; /* committed credits per wallet index */
  uint64_t amount_wallet[DZ_MAX_WALLETS];
  char (*ids)[33]; /* with_ids: the committed credits' transfer ids (32 hex digits), in_count */
} dz_credits;

/* The operator's committed credits (from `totals` and `history`, which must agree and
 * reconcile). with_ids: also their transfer ids, in c->ids, which the caller frees; otherwise
 * c->ids is NULL. */
void dz_opsim_credits(dz_fixture *z, int op, dz_credits *c, int with_ids);

/* An id as 32 lower-case hex digits without dashes (opsim prints UUIDs, the report plain hex). */
void dz_id_norm(const char *in, char out[33]);

/* How many credits the operator committed (dz_opsim_credits's checks included). */
uint64_t dz_opsim_credit_count(dz_fixture *z, int op);

/* ---------------------------------------------------------------- beneficiaries and lists */

typedef struct dz_ben {
  int op;     /* 0 alpha, 1 beta */
  int wallet; /* its index */
  char id[16];
  uint64_t amount; /* minor units, in a list: 100.00 + 1.25 × k (k mod cfg.amount_wrap) */
} dz_ben;

dz_ben dz_ben_make(const dz_fixture *z, int k);

/* Registers beneficiaries 0..n-1 (and extra_rows, CSV text after the header, may be NULL, with
 * `extra` rows) with one upload as manager; the registration must take every row. */
void dz_register_beneficiaries(dz_fixture *z, int n, const char *extra_rows, int extra);

/* Writes a list file NAME (in DIR) with beneficiaries first..first+n-1 (their amounts; with
 * profile, the sex, age_band and region columns too) and any extra rows (may be NULL); *total
 * (may be NULL) gets the sum of the beneficiaries' amounts. Returns the path (static until the
 * next call). */
const char *dz_write_list(dz_fixture *z, const char *name, int first, int n, const char *extra_rows,
                          uint64_t *total, int profile);

/* The programme: funded by gamma's programme account, cap 5000.00 per beneficiary and cycle,
 * budget `fund` (minor units; 0 = none). */
void dz_make_programme(dz_fixture *z, uint64_t fund);

/* The arguments of a submit of path for cycle into args[DZ_ARGS], extra (NULL-ended, may be
 * NULL) appended; the numbers' strings are static until the next call. */
void dz_submit_args(const char **args, const char *path, uint32_t cycle, uint64_t count,
                    uint64_t total, const char *const *extra);

/* Submits as manager; the result is in r. */
void dz_submit(dz_fixture *z, dz_result *r, const char *path, uint32_t cycle, uint64_t count,
               uint64_t total, const char *const *extra);

#endif
