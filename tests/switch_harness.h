/* switch_harness.h — runs a real tumad for the integration tests: a scratch directory with a
 * scheme PKI (made with the `tuma pki` CLI), client certificates, a configuration file with
 * three participants and free loopback ports; start (wait until /healthz answers), stop
 * (SIGTERM, then SIGKILL), kill -9 and restart on the same data directory. Test code only.
 *
 * Programs: the paths come from the environment, TUMAD (the daemon) and TUMA_CLI (the CLI);
 * tests/meson.build sets both. The daemon runs as a child of the calling process with
 * PR_SET_PDEATHSIG = SIGKILL, so a test that dies takes its tumad with it.
 *
 * Layout of the scratch directory DIR (kept when a test fails, for its log):
 *   DIR/pki/       ca.crt, ca.key, tumad.crt, tumad.key (tuma pki init)
 *   DIR/certs/     NAME.crt, NAME.key: operators alpha, beta, gamma; "admin" (role admin);
 *                  "manager" and "manager2" (role programme-manager), "approver" (role
 *                  approver)
 *   DIR/data/      tumad's data_dir (DATA_DIR/ledger, DATA_DIR/registry)
 *   DIR/tumad.ini  the configuration
 *   DIR/tumad.log  tumad's stdout and stderr, appended across restarts
 *   DIR/cli.log    the CLI's output
 *
 * Participants (currency KES, minor units): alpha and beta with SH_DEPOSIT each and no cap;
 * gamma with SH_DEPOSIT and net_debit_cap SH_GAMMA_CAP. MSISDN prefixes: alpha 25470, beta
 * 25471, gamma 25472.
 */
#ifndef TUMA_TESTS_SWITCH_HARNESS_H
#define TUMA_TESTS_SWITCH_HARNESS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define SH_DEPOSIT 1000000ull
#define SH_GAMMA_CAP 5000ull

enum { SH_PATH_MAX = 512 };

typedef struct sh_options {
  uint32_t max_frame_bytes; /* 0 = 4096 */
  uint32_t read_timeout_ms; /* 0 = 500 (the partial-frame timeout) */
  uint32_t max_expiry_ms;   /* 0 = 60000 */
  const char *log_level;    /* NULL = "debug" */
  uint32_t max_connections; /* 0 = 64 */
  uint32_t max_in_flight;   /* 0 = 256 */
  uint32_t map_size_mb;     /* [ledger] map_size_mb; 0 = not written (tumad's default) */
  uint32_t map_size_max_mb; /* [ledger] map_size_max_mb; 0 = not written */
  int tls_crl;              /* 1: [tls] crl = DIR/pki/crl.pem (tuma pki init writes it) */
} sh_options;

typedef struct sh_switch {
  char dir[SH_PATH_MAX];
  char pki[SH_PATH_MAX];
  char certs[SH_PATH_MAX];
  char data_dir[SH_PATH_MAX];
  char ledger_dir[SH_PATH_MAX];
  char config[SH_PATH_MAX];
  char log[SH_PATH_MAX];
  char ca[SH_PATH_MAX]; /* DIR/pki/ca.crt */
  uint16_t port, admin_port, metrics_port;
  pid_t pid;       /* the running tumad, or 0 */
  sh_options opts; /* as given to sh_create (the configuration is rewritten from it) */
  char log_level[16];
  char tumad[SH_PATH_MAX], tuma[SH_PATH_MAX];
} sh_switch;

/* Makes the scratch directory, the PKI and the certificates of alpha, beta, gamma, admin,
 * manager, manager2 and approver,
 * picks ports and writes the configuration. opts may be NULL. Returns 0, or -1 with a reason
 * in err[errlen] (then *out is NULL and nothing is left behind but the directory). The
 * caller frees *out with sh_destroy(). Cost: one CA and eight key pairs (tens of ms). */
int sh_create(const sh_options *opts, sh_switch **out, char *err, size_t errlen);

/* Rewrites DIR/tumad.ini from h->opts (after a test changed them; takes effect at the next
 * sh_start). Returns 0, or -1 if the file cannot be written. */
int sh_write_config(sh_switch *h);

/* Runs the CLI: tuma pki issue --dir DIR/pki --name NAME --role ROLE --out OUTDIR (OUTDIR NULL
 * = DIR/certs), plus extra arguments (NULL-terminated list, may be NULL). 0 on exit status 0. */
int sh_issue(sh_switch *h, const char *name, const char *role, const char *outdir,
             const char *const *extra);

/* Runs the CLI with argv (argv[0] is not the program; NULL-terminated), output to DIR/cli.log,
 * at most timeout_ms. Returns the exit status, or -1 if it could not run or was killed. */
int sh_run_cli(sh_switch *h, const char *const *argv, int timeout_ms);

/* Paths of a client certificate and key issued into DIR/certs (static buffers of h: valid
 * until the next call of the same function). */
const char *sh_cert(sh_switch *h, const char *name);
const char *sh_key(sh_switch *h, const char *name);

/* Starts tumad with DIR/tumad.ini and waits (at most timeout_ms) until GET /healthz on the
 * metrics port answers 200. If it cannot listen because a port was taken meanwhile (tests run
 * in parallel), new ports are picked, the configuration rewritten and tumad started again (at
 * most 3 times): read h->port etc. after this call. Returns 0; -1 if it exited or did not
 * become ready (then it is killed), with a reason in err. */
int sh_start(sh_switch *h, int timeout_ms, char *err, size_t errlen);

/* SIGTERM and wait at most timeout_ms; if still running, SIGKILL. *status (may be NULL) gets
 * the wait status. Returns 0 if it exited by itself within the time, -1 if it had to be
 * killed or was not running. */
int sh_stop(sh_switch *h, int timeout_ms, int *status);

/* SIGKILL and reap. Returns 0, or -1 if it was not running. */
int sh_kill(sh_switch *h);

/* GET path on the metrics port (HTTP/1.0, at most ~2 s). Writes the body (NUL-terminated,
 * truncated to fit) into body[bodylen] and returns the HTTP status, or -1. */
int sh_http_get(sh_switch *h, const char *path, char *body, size_t bodylen);

/* 1 if DIR/tumad.log contains s. */
int sh_log_contains(sh_switch *h, const char *s);

/* Writes the last `lines` lines of DIR/tumad.log to stderr, prefixed with the test's name. */
void sh_dump_log(sh_switch *h, const char *label, int lines);

/* Kills tumad if it runs, removes the scratch directory when remove_dir, frees h. Accepts
 * NULL. */
void sh_destroy(sh_switch *h, int remove_dir);

/* Milliseconds since the Unix epoch (the clock expiration_ms is measured against). */
uint64_t sh_now_ms(void);

#endif
