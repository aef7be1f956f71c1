/* test_config.c — switch/config.h: a full file loads with every value, absent keys give the
 * defaults, [tls] paths resolve against the file's directory, and each kind of mistake is
 * reported as "FILE:LINE: [section] key: what is wrong" with the exact line. Each test writes
 * its files into a scratch directory. */
#include <criterion/criterion.h>
#include <errno.h>
#include <ftw.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "currency.h"

/* The [tls] section every otherwise-valid file needs (lines 1-4 when it comes first). */
#define TLS "[tls]\nca = ca.pem\ncert = tumad.pem\nkey = tumad.key\n"

static char *scratch;   /* this test's directory */
static char path[4096]; /* the file under test: scratch/tumad.ini */
static char err[1024];
static sw_config cfg;

static int rm_cb(const char *p, const struct stat *st, int flag, struct FTW *ftw) {
  (void)st;
  (void)flag;
  (void)ftw;
  return remove(p);
}

static void setup(void) {
  const char *tmp = getenv("TMPDIR");
  char tmpl[4096];
  snprintf(tmpl, sizeof tmpl, "%s/tuma-config-XXXXXX", tmp && *tmp ? tmp : "/tmp");
  cr_assert_not_null(mkdtemp(tmpl));
  scratch = strdup(tmpl);
  cr_assert_not_null(scratch);
  snprintf(path, sizeof path, "%s/tumad.ini", scratch);
  memset(&cfg, 0, sizeof cfg);
  err[0] = 0;
}

static void teardown(void) {
  sw_config_free(&cfg);
  nftw(scratch, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
  free(scratch);
}

TestSuite(config, .init = setup, .fini = teardown);

static void write_to(const char *file, const char *text) {
  FILE *f = fopen(file, "w");
  cr_assert_not_null(f, "fopen %s: %s", file, strerror(errno));
  cr_assert_eq(fputs(text, f) >= 0, 1);
  cr_assert_eq(fclose(f), 0);
}

static int load(const char *text) {
  write_to(path, text);
  return sw_config_load(path, &cfg, err, sizeof err);
}

/* Asserts that text fails to load with exactly "PATH:LINE: rest". */
static void expect_error(const char *text, int line, const char *rest) {
  char want[8192];
  int rc = load(text);
  snprintf(want, sizeof want, "%s:%d: %s", path, line, rest);
  cr_assert_eq(rc, SW_CONFIG_E_INVALID, "rc %d for:\n%s", rc, text);
  cr_assert_str_eq(err, want);
  cr_assert_null(cfg.path, "a failed load leaves the struct zeroed");
  cr_assert_null(cfg.participants);
}

static uint16_t num(const char *alpha) {
  sw_currency c;
  cr_assert_eq(sw_currency_by_code(alpha, &c), 0, "%s", alpha);
  return c.numeric;
}

/* ---- a full file ------------------------------------------------------------------------ */

Test(config, full_file_loads_every_value) {
  const char *text = "; every setting\n"
                     "[switch]\n"
                     "listen = 0.0.0.0:9400\n"
                     "admin_listen = [::1]:9401\n"
                     "metrics_listen = localhost:9402\n"
                     "data_dir = /srv/tuma/data\n"
                     "max_frame_bytes = 1048576\n"
                     "max_connections = 20000\n"
                     "max_in_flight = 128\n"
                     "read_timeout_ms = 2500\n"
                     "max_expiry_ms = 60000\n"
                     "log_level = debug\n"
                     "directory_secret_file = /srv/tuma/secret.key\n"
                     "\n"
                     "[ledger]\n"
                     "map_size_mb = 256\n"
                     "map_size_max_mb = 4096\n"
                     "queue_capacity = 100000\n"
                     "batch_max = 1000\n"
                     "\n"
                     "[tls]\n"
                     "ca = /etc/tuma/ca.pem\n"
                     "cert = /etc/tuma/tumad.pem\n"
                     "key = /etc/tuma/tumad.key\n"
                     "crl = /etc/tuma/ca.crl\n"
                     "\n"
                     "[participant mpesa-ke]\n"
                     "name = \"M-Pesa Kenya\"\n"
                     "currencies = KES, USD\n"
                     "net_debit_cap.KES = 500000000 ; inline comment\n"
                     "initial_deposit.KES = 1000\n"
                     "initial_deposit.USD = 7\n"
                     "msisdn_prefixes = 2547, 25411,\n"
                     "    25410\n"
                     "status = suspended\n"
                     "[participant airtel-ug]\n"
                     "name = Airtel Money Uganda\n"
                     "currencies = UGX\n"
                     "net_debit_cap.UGX = unlimited\n";
  cr_assert_eq(load(text), 0, "%s", err);
  cr_assert_str_eq(cfg.path, path);
  cr_assert_str_eq(cfg.listen.host, "0.0.0.0");
  cr_assert_eq(cfg.listen.port, 9400);
  cr_assert_str_eq(cfg.admin_listen.host, "::1");
  cr_assert_eq(cfg.admin_listen.port, 9401);
  cr_assert_str_eq(cfg.metrics_listen.host, "localhost");
  cr_assert_eq(cfg.metrics_listen.port, 9402);
  cr_assert_str_eq(cfg.data_dir, "/srv/tuma/data");
  cr_assert_eq(cfg.max_frame_bytes, 1048576);
  cr_assert_eq(cfg.max_connections, 20000);
  cr_assert_eq(cfg.max_in_flight, 128);
  cr_assert_eq(cfg.read_timeout_ms, 2500);
  cr_assert_eq(cfg.max_expiry_ms, 60000);
  cr_assert_eq(cfg.log_level, SW_CONFIG_LOG_DEBUG);
  cr_assert_str_eq(cfg.directory_secret_file, "/srv/tuma/secret.key");
  cr_assert_eq(cfg.map_size_mb, 256);
  cr_assert_eq(cfg.map_size_max_mb, 4096);
  cr_assert_eq(cfg.queue_capacity, 100000);
  cr_assert_eq(cfg.batch_max, 1000);
  cr_assert_str_eq(cfg.tls_ca, "/etc/tuma/ca.pem");
  cr_assert_str_eq(cfg.tls_cert, "/etc/tuma/tumad.pem");
  cr_assert_str_eq(cfg.tls_key, "/etc/tuma/tumad.key");
  cr_assert_str_eq(cfg.tls_crl, "/etc/tuma/ca.crl");

  cr_assert_eq(cfg.n_participants, 2);
  const sw_config_participant *m = &cfg.participants[0];
  cr_assert_str_eq(m->p.id, "mpesa-ke");
  cr_assert_str_eq(m->p.name, "M-Pesa Kenya");
  cr_assert_eq(m->p.number, 0);
  cr_assert_eq(m->line, 27);
  cr_assert_eq(m->p.status, SW_PARTICIPANT_SUSPENDED);
  cr_assert_eq(m->p.n_currencies, 2);
  cr_assert_eq(m->p.currencies[0], 404);
  cr_assert_eq(m->p.currencies[1], 840);
  cr_assert_eq(m->p.net_debit_cap[0], 500000000);
  cr_assert_eq(m->p.net_debit_cap[1], SW_NDC_UNLIMITED);
  cr_assert_eq(m->initial_deposit[0], 1000);
  cr_assert_eq(m->initial_deposit[1], 7);
  cr_assert_eq(m->p.n_prefixes, 3);
  cr_assert_str_eq(m->p.msisdn_prefixes[0], "2547");
  cr_assert_str_eq(m->p.msisdn_prefixes[1], "25411");
  cr_assert_str_eq(m->p.msisdn_prefixes[2], "25410");
  cr_assert_eq(sw_participant_validate(&m->p), 0);

  const sw_config_participant *a = &cfg.participants[1];
  cr_assert_str_eq(a->p.id, "airtel-ug");
  cr_assert_str_eq(a->p.name, "Airtel Money Uganda");
  cr_assert_eq(a->p.status, SW_PARTICIPANT_ACTIVE);
  cr_assert_eq(a->p.n_currencies, 1);
  cr_assert_eq(a->p.currencies[0], num("UGX"));
  cr_assert_eq(a->p.net_debit_cap[0], SW_NDC_UNLIMITED);
  cr_assert_eq(a->initial_deposit[0], 0);
  cr_assert_eq(a->p.n_prefixes, 0);
  cr_assert_eq(sw_participant_validate(&a->p), 0);
}

Test(config, defaults_when_keys_are_absent) {
  cr_assert_eq(load(TLS), 0, "%s", err);
  cr_assert_str_eq(cfg.listen.host, "127.0.0.1");
  cr_assert_eq(cfg.listen.port, 7400);
  cr_assert_str_eq(cfg.admin_listen.host, "127.0.0.1");
  cr_assert_eq(cfg.admin_listen.port, 7401);
  cr_assert_str_eq(cfg.metrics_listen.host, "127.0.0.1");
  cr_assert_eq(cfg.metrics_listen.port, 7402);
  cr_assert_str_eq(cfg.data_dir, "var/tumad");
  cr_assert_eq(cfg.max_frame_bytes, 65536);
  cr_assert_eq(cfg.max_connections, 1024);
  cr_assert_eq(cfg.max_in_flight, 4096);
  cr_assert_eq(cfg.read_timeout_ms, 10000);
  cr_assert_eq(cfg.max_expiry_ms, 300000);
  cr_assert_eq(cfg.log_level, SW_CONFIG_LOG_INFO);
  cr_assert_str_eq(cfg.directory_secret_file, "var/tumad/directory.key");
  cr_assert_eq(cfg.map_size_mb, 64);
  cr_assert_eq(cfg.map_size_max_mb, 1048576);
  cr_assert_eq(cfg.queue_capacity, 65536);
  cr_assert_eq(cfg.batch_max, 8190);
  cr_assert_null(cfg.tls_crl);
  cr_assert_eq(cfg.n_participants, 0);
  cr_assert_null(cfg.participants);
}

Test(config, secret_file_defaults_into_the_configured_data_dir) {
  cr_assert_eq(load("[switch]\ndata_dir = /data/tuma/\n" TLS), 0, "%s", err);
  cr_assert_str_eq(cfg.directory_secret_file, "/data/tuma/directory.key");
}

Test(config, participant_defaults) {
  cr_assert_eq(load(TLS "[participant mtn-gh]\nname = MTN\ncurrencies = GHS,XOF\n"), 0, "%s", err);
  const sw_config_participant *p = &cfg.participants[0];
  cr_assert_eq(p->p.status, SW_PARTICIPANT_ACTIVE);
  cr_assert_eq(p->p.n_currencies, 2);
  for (int i = 0; i < 2; i++) {
    cr_assert_eq(p->p.net_debit_cap[i], UINT64_MAX / 2);
    cr_assert_eq(p->initial_deposit[i], 0);
  }
  cr_assert_eq(p->p.n_prefixes, 0);
}

/* ---- paths ------------------------------------------------------------------------------ */

Test(config, relative_tls_paths_resolve_against_the_file_directory) {
  char sub[4096], file[4200], want[4300];
  snprintf(sub, sizeof sub, "%s/etc", scratch);
  cr_assert_eq(mkdir(sub, 0700), 0);
  snprintf(file, sizeof file, "%s/tumad.ini", sub);
  write_to(file, "[tls]\nca = pki/ca.pem\ncert = ./tumad.pem\nkey = /abs/tumad.key\n"
                 "crl = ../ca.crl\n");
  cr_assert_eq(sw_config_load(file, &cfg, err, sizeof err), 0, "%s", err);
  snprintf(want, sizeof want, "%s/pki/ca.pem", sub);
  cr_assert_str_eq(cfg.tls_ca, want);
  snprintf(want, sizeof want, "%s/tumad.pem", sub);
  cr_assert_str_eq(cfg.tls_cert, want);
  cr_assert_str_eq(cfg.tls_key, "/abs/tumad.key");
  snprintf(want, sizeof want, "%s/../ca.crl", sub);
  cr_assert_str_eq(cfg.tls_crl, want);
  cr_assert_str_eq(cfg.data_dir, "var/tumad", "data_dir stays as written");
}

Test(config, audit_checkpoint_keys) {
  cr_assert_eq(load(TLS), 0, "%s", err);
  cr_assert_null(cfg.checkpoint_key, "no checkpoints unless a key is configured");
  cr_assert_eq(cfg.checkpoint_every, 1000);
  sw_config_free(&cfg);
  cr_assert_eq(load(TLS "[audit]\ncheckpoint_key = audit/ckp.key\ncheckpoint_every = 5\n"), 0, "%s",
               err);
  char want[4300];
  snprintf(want, sizeof want, "%s/audit/ckp.key", scratch);
  cr_assert_str_eq(cfg.checkpoint_key, want, "relative to the file's directory");
  cr_assert_eq(cfg.checkpoint_every, 5);
  sw_config_free(&cfg);
  expect_error(TLS "[audit]\ncheckpoint_every = 0\n", 6,
               "[audit] checkpoint_every: out of range: 0 (allowed 1..100000000)");
}

Test(config, relative_config_path_gives_absolute_tls_paths) {
  char sub[4096], want[4200];
  snprintf(sub, sizeof sub, "%s/conf", scratch);
  cr_assert_eq(mkdir(sub, 0700), 0);
  snprintf(want, sizeof want, "%s/tumad.ini", sub);
  write_to(want, TLS);
  cr_assert_eq(chdir(scratch), 0); /* each Criterion test runs in its own process */
  cr_assert_eq(sw_config_load("conf/tumad.ini", &cfg, err, sizeof err), 0, "%s", err);
  snprintf(want, sizeof want, "%s/conf/ca.pem", scratch);
  cr_assert_str_eq(cfg.tls_ca, want);
  cr_assert_str_eq(cfg.path, "conf/tumad.ini");
  sw_config_free(&cfg);
  cr_assert_eq(chdir(sub), 0);
  cr_assert_eq(sw_config_load("tumad.ini", &cfg, err, sizeof err), 0, "%s", err);
  snprintf(want, sizeof want, "%s/conf/tumad.key", scratch);
  cr_assert_str_eq(cfg.tls_key, want);
}

/* ---- syntax ------------------------------------------------------------------------------ */

Test(config, comments_bom_colons_and_crlf) {
  cr_assert_eq(load("\xEF\xBB\xBF# hash comment\r\n"
                    "  ; indented comment\r\n"
                    "[switch]\r\n"
                    "listen: 127.0.0.1:7500 ; inline\r\n"
                    "data_dir = /x;y\r\n" TLS),
               0, "%s", err);
  cr_assert_eq(cfg.listen.port, 7500);
  cr_assert_str_eq(cfg.data_dir, "/x;y", "';' without a space before it is not a comment");
}

Test(config, list_values_continue_on_indented_lines) {
  cr_assert_eq(load(TLS "[participant a]\nname = A\ncurrencies =\n  KES,\n  UGX\n"
                        "msisdn_prefixes = 1, 2\n\n  ; comment\n   3,4\nstatus = active\n"),
               0, "%s", err);
  const sw_participant *p = &cfg.participants[0].p;
  cr_assert_eq(p->n_currencies, 2);
  cr_assert_eq(p->currencies[1], 800);
  cr_assert_eq(p->n_prefixes, 4);
  cr_assert_str_eq(p->msisdn_prefixes[3], "4");
}

Test(config, participant_ids_longer_than_inih_section_names) {
  char text[1024];
  const char *id = "a23456789-123456789-123456789-123456789-123456789-123456789-123";
  cr_assert_eq(strlen(id), 63);
  snprintf(text, sizeof text, TLS "[participant %s]\nname = Long\ncurrencies = KES\n", id);
  cr_assert_eq(load(text), 0, "%s", err);
  cr_assert_str_eq(cfg.participants[0].p.id, id);
}

Test(config, at_most_256_participants) {
  size_t cap = 256 * 64 + 256;
  char *text = malloc(cap);
  cr_assert_not_null(text);
  size_t off = (size_t)snprintf(text, cap, "%s", TLS);
  for (int i = 0; i < 256; i++)
    off += (size_t)snprintf(text + off, cap - off,
                            "[participant p%d]\nname = P\ncurrencies = KES\n", i);
  cr_assert_eq(load(text), 0, "%s", err);
  cr_assert_eq(cfg.n_participants, 256);
  cr_assert_str_eq(cfg.participants[255].p.id, "p255");
  sw_config_free(&cfg);
  snprintf(text + off, cap - off, "[participant extra]\n");
  expect_error(text, 4 + 256 * 3 + 1, "[participant extra]: too many participants (at most 256)");
  free(text);
}

/* ---- errors: exact FILE:LINE and key ---------------------------------------------------- */

Test(config, error_unknown_section) {
  expect_error(TLS "\n[swtich]\n", 6,
               "[swtich]: unknown section (expected switch, ledger, tls, audit or participant ID)");
}

Test(config, error_unknown_key) {
  expect_error(TLS "[switch]\nlisten = 127.0.0.1:1\nlisten_addr = 127.0.0.1:2\n", 7,
               "[switch] listen_addr: unknown key");
  sw_config_free(&cfg);
  expect_error(TLS "[participant a]\nname = A\nnet_debit_cap = 5\n", 7,
               "[participant a] net_debit_cap: needs a currency, e.g. net_debit_cap.KES");
  sw_config_free(&cfg);
  expect_error(TLS "[participant a]\nnick = A\n", 6, "[participant a] nick: unknown key");
}

Test(config, error_bad_number) {
  expect_error("[switch]\nmax_frame_bytes = 64k\n" TLS, 2,
               "[switch] max_frame_bytes: not a number: '64k'");
  sw_config_free(&cfg);
  expect_error("[ledger]\nqueue_capacity = -1\n" TLS, 2,
               "[ledger] queue_capacity: not a number: '-1'");
  sw_config_free(&cfg);
  expect_error("[ledger]\nbatch_max =\n" TLS, 2, "[ledger] batch_max: not a number: ''");
  sw_config_free(&cfg);
  expect_error(TLS "[participant a]\nname = A\ncurrencies = KES\ninitial_deposit.KES = 1e6\n", 8,
               "[participant a] initial_deposit.KES: not a number: '1e6'");
}

Test(config, error_out_of_range) {
  expect_error("[switch]\nmax_frame_bytes = 255\n" TLS, 2,
               "[switch] max_frame_bytes: out of range: 255 (allowed 256..16777216)");
  sw_config_free(&cfg);
  expect_error("[switch]\nmax_frame_bytes = 16777217\n" TLS, 2,
               "[switch] max_frame_bytes: out of range: 16777217 (allowed 256..16777216)");
  sw_config_free(&cfg);
  expect_error(TLS "[ledger]\nbatch_max = 8191\n", 6,
               "[ledger] batch_max: out of range: 8191 (allowed 1..8190)");
  sw_config_free(&cfg);
  expect_error(TLS "[ledger]\nbatch_max = 0\n", 6,
               "[ledger] batch_max: out of range: 0 (allowed 1..8190)");
  sw_config_free(&cfg);
  expect_error("[switch]\nmax_connections = 99999999999999999999999\n" TLS, 2,
               "[switch] max_connections: out of range: 99999999999999999999999 "
               "(allowed 1..1048576)");
  sw_config_free(&cfg);
  expect_error(TLS "[participant a]\nname = A\ncurrencies = KES\n"
                   "net_debit_cap.KES = 9223372036854775808\n",
               8,
               "[participant a] net_debit_cap.KES: out of range: 9223372036854775808 "
               "(allowed 0..9223372036854775807)");
  sw_config_free(&cfg);
  expect_error("[ledger]\nmap_size_mb = 128\nmap_size_max_mb = 100\n" TLS, 3,
               "[ledger] map_size_max_mb: smaller than map_size_mb (128)");
  sw_config_free(&cfg);
  expect_error("[ledger]\nmap_size_mb = 2000000\n" TLS, 2,
               "[ledger] map_size_mb: larger than map_size_max_mb (1048576)");
}

Test(config, error_duplicate_participant_and_key) {
  expect_error(TLS "[participant a]\nname = A\ncurrencies = KES\n\n[participant a]\n", 9,
               "[participant a]: duplicate participant (first at line 5)");
  sw_config_free(&cfg);
  expect_error("[switch]\nlog_level = warn\nlog_level = info\n" TLS, 3,
               "[switch] log_level: set twice (first at line 2)");
  sw_config_free(&cfg);
  expect_error(TLS "[participant a]\nname = A\ncurrencies = KES\nnet_debit_cap.KES = 1\n"
                   "net_debit_cap.KES = 2\n",
               9, "[participant a] net_debit_cap.KES: set twice (first at line 8)");
  sw_config_free(&cfg);
  expect_error(TLS "[tls]\n", 5, "[tls]: section appears twice (first at line 1)");
}

Test(config, error_missing_required_key) {
  expect_error("[switch]\n\n[tls]\nca = a\nkey = k\n", 3, "[tls] cert: missing required key");
  sw_config_free(&cfg);
  expect_error("[switch]\nlisten = 127.0.0.1:1\n", 2,
               "[tls] ca: missing required key (no [tls] section)");
  sw_config_free(&cfg);
  expect_error("", 1, "[tls] ca: missing required key (no [tls] section)");
  sw_config_free(&cfg);
  expect_error(TLS "[participant a]\ncurrencies = KES\n", 5,
               "[participant a] name: missing required key");
  sw_config_free(&cfg);
  expect_error(TLS "[participant a]\nname = A\n", 5,
               "[participant a] currencies: missing required key");
  sw_config_free(&cfg);
  expect_error(TLS "[participant a]\nname = A\ncurrencies = ,\n", 7,
               "[participant a] currencies: at least one currency is required");
  sw_config_free(&cfg);
  expect_error("[switch]\ndata_dir =\n" TLS, 2, "[switch] data_dir: empty value");
  sw_config_free(&cfg);
  expect_error(TLS "[participant a]\nname = \"\"\n", 6, "[participant a] name: empty value");
}

Test(config, error_unknown_currency) {
  expect_error(TLS "[participant a]\nname = A\ncurrencies = KES, XYZ\n", 7,
               "[participant a] currencies: unknown currency 'XYZ'");
  sw_config_free(&cfg);
  expect_error(TLS "[participant a]\nname = A\ncurrencies = kes\n", 7,
               "[participant a] currencies: unknown currency 'kes'");
  sw_config_free(&cfg);
  expect_error(TLS "[participant a]\nname = A\ncurrencies = KES\nnet_debit_cap.ABC = 1\n", 8,
               "[participant a] net_debit_cap.ABC: unknown currency 'ABC'");
  sw_config_free(&cfg);
  expect_error(TLS "[participant a]\nname = A\ncurrencies = KES\ninitial_deposit.UGX = 1\n", 8,
               "[participant a] initial_deposit.UGX: UGX is not one of this participant's "
               "currencies");
  sw_config_free(&cfg);
  expect_error(TLS "[participant a]\nname = A\ncurrencies = KES,UGX,KES\n", 7,
               "[participant a] currencies: currency KES listed twice");
  sw_config_free(&cfg);
  expect_error(TLS "[participant a]\nname = A\n"
                   "currencies = KES,UGX,TZS,RWF,ETB,NGN,GHS,XOF,XAF\n",
               7, "[participant a] currencies: more than 8 currencies");
}

Test(config, error_bad_host_port) {
  expect_error("[switch]\nlisten = 127.0.0.1\n" TLS, 2,
               "[switch] listen: bad host:port '127.0.0.1': missing ':PORT'");
  sw_config_free(&cfg);
  expect_error("[switch]\nlisten = 127.0.0.1:65536\n" TLS, 2,
               "[switch] listen: bad host:port '127.0.0.1:65536': bad port (0..65535)");
  sw_config_free(&cfg);
  expect_error("[switch]\nadmin_listen = ::1:7401\n" TLS, 2,
               "[switch] admin_listen: bad host:port '::1:7401': an IPv6 address goes in "
               "brackets, e.g. [::1]:7400");
  sw_config_free(&cfg);
  expect_error("[switch]\nlisten = 300.1.1.1:80\n" TLS, 2,
               "[switch] listen: bad host:port '300.1.1.1:80': bad IPv4 address");
  sw_config_free(&cfg);
  expect_error("[switch]\nlisten = [fe80::zz]:80\n" TLS, 2,
               "[switch] listen: bad host:port '[fe80::zz]:80': bad IPv6 address");
  sw_config_free(&cfg);
  expect_error("[switch]\nlisten = bad_host:80\n" TLS, 2,
               "[switch] listen: bad host:port 'bad_host:80': bad host name");
  sw_config_free(&cfg);
  expect_error("[switch]\nlisten = :80\n" TLS, 2,
               "[switch] listen: bad host:port ':80': missing host");
  sw_config_free(&cfg);
  expect_error("[switch]\nlisten = 127.0.0.1:7401\n" TLS, 2,
               "[switch] listen: same address as admin_listen (127.0.0.1:7401)");
  sw_config_free(&cfg);
  cr_assert_eq(load("[switch]\nlisten = [::]:0\nadmin_listen = 127.0.0.1:0\n"
                    "metrics_listen = 127.0.0.1:0\n" TLS),
               0, "%s", err);
  cr_assert_str_eq(cfg.listen.host, "::");
  cr_assert_eq(cfg.listen.port, 0);
}

Test(config, error_metrics_not_loopback) {
  expect_error("[switch]\nmetrics_listen = 0.0.0.0:9100\n" TLS, 2,
               "[switch] metrics_listen: '0.0.0.0:9100' is not a loopback address (metrics are "
               "served over plain HTTP: use 127.0.0.1, [::1] or localhost)");
  sw_config_free(&cfg);
  expect_error("[switch]\nmetrics_listen = [::]:9100\n" TLS, 2,
               "[switch] metrics_listen: '[::]:9100' is not a loopback address (metrics are "
               "served over plain HTTP: use 127.0.0.1, [::1] or localhost)");
  sw_config_free(&cfg);
  cr_assert_eq(load("[switch]\nmetrics_listen = 127.8.9.10:9100\n" TLS), 0, "%s", err);
  sw_config_free(&cfg);
  cr_assert_eq(load("[switch]\nmetrics_listen = [::1]:9100\n" TLS), 0, "%s", err);
}

Test(config, error_participant_values) {
  expect_error(TLS "[participant Big_Op]\n", 5,
               "[participant Big_Op]: bad participant id 'Big_Op' (1-63 characters of a-z, 0-9 "
               "and '-')");
  sw_config_free(&cfg);
  expect_error(TLS "[participant]\n", 5,
               "[participant]: missing participant id: write [participant ID]");
  sw_config_free(&cfg);
  expect_error(TLS "[participant a]\nname = A\ncurrencies = KES\nstatus = paused\n", 8,
               "[participant a] status: unknown status 'paused' (active or suspended)");
  sw_config_free(&cfg);
  expect_error(TLS "[participant a]\nname = A\ncurrencies = KES\nmsisdn_prefixes = 254, +255\n", 8,
               "[participant a] msisdn_prefixes: bad prefix '+255' (1-15 digits)");
  sw_config_free(&cfg);
  expect_error(TLS "[participant a]\nname = A\ncurrencies = KES\n"
                   "msisdn_prefixes = 1234567890123456\n",
               8, "[participant a] msisdn_prefixes: bad prefix '1234567890123456' (1-15 digits)");
  sw_config_free(&cfg);
  expect_error(TLS "[participant a]\nname = A\ncurrencies = KES\nmsisdn_prefixes = 254\n"
                   "[participant b]\nname = B\ncurrencies = KES\nmsisdn_prefixes = 2541,\n"
                   "  254\n",
               13,
               "[participant b] msisdn_prefixes: prefix 254 is already routed to participant a "
               "(line 8)");
  sw_config_free(&cfg);
  expect_error(TLS "[participant a]\nname = A\ncurrencies = KES\nmsisdn_prefixes = 1,1\n", 8,
               "[participant a] msisdn_prefixes: prefix 1 listed twice");
}

Test(config, error_syntax) {
  expect_error("[switch]\nlisten\n" TLS, 2,
               "syntax error: expected 'key = value', '[section]' or a comment");
  sw_config_free(&cfg);
  expect_error("[switch\n" TLS, 1, "syntax error: section header without ']'");
  sw_config_free(&cfg);
  expect_error("[switch]\n= 5\n" TLS, 2, "syntax error: missing key before '='");
  sw_config_free(&cfg);
  expect_error("listen = 127.0.0.1:1\n" TLS, 1,
               "listen: outside any section (put it under [switch], [ledger], [tls] or "
               "[participant ID])");
  sw_config_free(&cfg);
  expect_error("[switch]\nlog_level = info\n  max_in_flight = 5\n" TLS, 3,
               "[switch] log_level: this indented line continues its value; only currencies "
               "and msisdn_prefixes may go on over lines (remove the indentation)");
  sw_config_free(&cfg);
  char text[512];
  snprintf(text, sizeof text, "[switch]\ndata_dir = /%0198d\n" TLS, 0);
  expect_error(text, 2, "line too long (210 characters, at most 197)");
  sw_config_free(&cfg);
  snprintf(text, sizeof text, "[switch]\ndata_dir = /%0185d\n" TLS, 0);
  cr_assert_eq(load(text), 0, "a 197-character line fits: %s", err);
}

Test(config, error_nul_byte) {
  FILE *f = fopen(path, "w");
  cr_assert_not_null(f);
  fwrite("[switch]\nlog_level = info\0x\n", 1, 28, f);
  fclose(f);
  char want[4200];
  cr_assert_eq(sw_config_load(path, &cfg, err, sizeof err), SW_CONFIG_E_INVALID);
  snprintf(want, sizeof want, "%s:2: line contains a NUL byte", path);
  cr_assert_str_eq(err, want);
}

Test(config, error_unreadable_file) {
  char missing[4200], want[4300];
  snprintf(missing, sizeof missing, "%s/nope.ini", scratch);
  cr_assert_eq(sw_config_load(missing, &cfg, err, sizeof err), SW_CONFIG_E_IO);
  snprintf(want, sizeof want, "%s: cannot open: No such file or directory", missing);
  cr_assert_str_eq(err, want);
  cr_assert_null(cfg.path);
}

Test(config, small_or_absent_error_buffer) {
  write_to(path, "[nope]\n");
  char small[8];
  cr_assert_eq(sw_config_load(path, &cfg, small, sizeof small), SW_CONFIG_E_INVALID);
  cr_assert_eq(strlen(small), 7);
  cr_assert_eq(sw_config_load(path, &cfg, NULL, 0), SW_CONFIG_E_INVALID);
  cr_assert_eq(sw_config_load(NULL, &cfg, err, sizeof err), SW_CONFIG_E_INVALID);
  sw_config_free(NULL);
}

Test(config, strerror_covers_every_code) {
  for (int e = SW_CONFIG_E_OK; e <= SW_CONFIG_E_INVALID; e++)
    cr_assert_str_neq(sw_config_strerror(e), "unknown configuration error");
  cr_assert_str_eq(sw_config_strerror(99), "unknown configuration error");
}

/* ---- the shipped example ------------------------------------------------------------------ */

Test(config, example_file_loads) {
  cr_assert_eq(sw_config_load(EXAMPLE_INI, &cfg, err, sizeof err), 0, "%s", err);
  cr_assert_eq(cfg.n_participants, 2);
  cr_assert_str_eq(cfg.participants[0].p.id, "mpesa-ke");
  cr_assert_eq(cfg.participants[0].p.n_prefixes, 3);
  cr_assert_str_eq(cfg.participants[1].p.id, "airtel-ug");
  cr_assert_eq(cfg.listen.port, 7400);
  cr_assert_str_eq(cfg.directory_secret_file, "var/tumad/directory.key");
}

/* ---- currencies ----------------------------------------------------------------------------- */

Test(config, currency_table) {
  static const struct {
    const char *alpha;
    uint16_t numeric;
    uint8_t exponent;
  } want[] = {{"KES", 404, 2}, {"UGX", 800, 0}, {"TZS", 834, 2}, {"RWF", 646, 0}, {"ETB", 230, 2},
              {"NGN", 566, 2}, {"GHS", 936, 2}, {"XOF", 952, 0}, {"XAF", 950, 0}, {"ZAR", 710, 2},
              {"ZMW", 967, 2}, {"MWK", 454, 2}, {"MZN", 943, 2}, {"SOS", 706, 2}, {"SDG", 938, 2},
              {"SSP", 728, 2}, {"CDF", 976, 2}, {"USD", 840, 2}, {"EUR", 978, 2}, {"GBP", 826, 2}};
  for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
    sw_currency c;
    cr_assert_eq(sw_currency_by_code(want[i].alpha, &c), 0, "%s", want[i].alpha);
    cr_assert_eq(c.numeric, want[i].numeric, "%s", want[i].alpha);
    cr_assert_eq(c.exponent, want[i].exponent, "%s", want[i].alpha);
    cr_assert_not_null(c.name);
    cr_assert_eq(sw_currency_by_number(want[i].numeric, &c), 0);
    cr_assert_str_eq(c.alpha, want[i].alpha);
  }
  sw_currency c;
  cr_assert_eq(sw_currency_by_code("XYZ", &c), SW_CURRENCY_E_NOTFOUND);
  cr_assert_eq(sw_currency_by_code("KE", &c), SW_CURRENCY_E_NOTFOUND);
  cr_assert_eq(sw_currency_by_code(NULL, &c), SW_CURRENCY_E_INVAL);
  cr_assert_eq(sw_currency_by_number(0, &c), SW_CURRENCY_E_NOTFOUND);
  cr_assert_eq(sw_currency_by_number(404, NULL), SW_CURRENCY_E_INVAL);
  /* the table has no duplicate codes or numbers */
  size_t n = sw_currency_count();
  for (size_t i = 0; i < n; i++) {
    sw_currency a, b;
    cr_assert_eq(sw_currency_at(i, &a), 0);
    for (size_t j = i + 1; j < n; j++) {
      cr_assert_eq(sw_currency_at(j, &b), 0);
      cr_assert_str_neq(a.alpha, b.alpha);
      cr_assert_neq(a.numeric, b.numeric);
    }
  }
  cr_assert_eq(sw_currency_at(n, &c), SW_CURRENCY_E_NOTFOUND);
  cr_assert_str_eq(sw_currency_strerror(SW_CURRENCY_E_NOTFOUND), "unknown currency");
}
