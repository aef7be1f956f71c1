/* test_pki.c — `tuma pki` (cli/pki.c) and the `tuma` binary: the CA and certificates it makes
 * (names, key usages, validity, file modes), verification against the right CA and failure
 * against another or once expired, revocation through the CRL, a real in-process TLS 1.3
 * handshake with mutual authentication over a socketpair, the CLI's usage errors (exit 2,
 * nothing attempted), and the admin commands end to end against a small fake admin listener
 * (a TLS server thread in this process that decodes one AdminEnvelope and answers it).
 *
 * The binary is found through $TUMA_BIN (set by tests/meson.build); every test works in its own
 * scratch directory.
 */
#include "pki.h"
#include "tuma/v1/admin.pb-c.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

extern char **environ;

enum { T_PATH = 4096, T_OUT = 65536 };

/* snprintf into a T_PATH buffer, asserting nothing was cut off. */
#define T_FMT(buf, ...) cr_assert_lt(snprintf((buf), T_PATH, __VA_ARGS__), T_PATH)

/* ---- scratch directories and files ---- */

static char t_dir[T_PATH]; /* this test's scratch directory (each test runs in its own process) */
static char t_pki[T_PATH]; /* t_dir/pki, the CA made by t_setup */

static int t_rm_cb(const char *path, const struct stat *st, int type, struct FTW *ftw) {
  (void)st;
  (void)type;
  (void)ftw;
  return remove(path);
}

/* t_dir/rel into buf. */
static const char *t_path(char *buf, const char *rel) {
  T_FMT(buf, "%s/%s", t_dir, rel);
  return buf;
}

static void t_make_dir(void) {
  const char *base = getenv("TMPDIR");
  snprintf(t_dir, sizeof t_dir, "%s/tuma-pki-XXXXXX", base != NULL && *base ? base : "/tmp");
  cr_assert_not_null(mkdtemp(t_dir), "mkdtemp: %s", strerror(errno));
  t_path(t_pki, "pki");
}

static void t_cleanup(void) {
  if (t_dir[0] != '\0')
    nftw(t_dir, t_rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

/* Reads a whole file into buf (NUL-terminated); returns its length or -1. */
static long t_read(const char *path, char *buf, size_t cap) {
  FILE *f = fopen(path, "r");
  if (f == NULL)
    return -1;
  size_t n = fread(buf, 1, cap - 1, f);
  fclose(f);
  buf[n] = '\0';
  return (long)n;
}

static int t_mode(const char *path) {
  struct stat st;
  cr_assert_eq(stat(path, &st), 0, "stat %s: %s", path, strerror(errno));
  return (int)(st.st_mode & 0777);
}

/* ---- running the binary ---- */

typedef struct t_run {
  int status; /* exit code, or 128 + signal */
  char out[T_OUT];
  char err[T_OUT];
} t_run;

/* Runs $TUMA_BIN with the NULL-terminated args, stdout and stderr captured. */
static void t_tuma(t_run *r, const char *const *args) {
  const char *bin = getenv("TUMA_BIN");
  cr_assert_not_null(bin, "TUMA_BIN is not set (run through meson test)");
  char *argv[64];
  int n = 0;
  argv[n++] = (char *)bin;
  for (; args[n - 1] != NULL; n++) {
    cr_assert_lt(n, 63);
    argv[n] = (char *)args[n - 1];
  }
  argv[n] = NULL;
  char out_path[T_PATH], err_path[T_PATH];
  t_path(out_path, "stdout.txt");
  t_path(err_path, "stderr.txt");
  posix_spawn_file_actions_t fa;
  cr_assert_eq(posix_spawn_file_actions_init(&fa), 0);
  cr_assert_eq(posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0), 0);
  cr_assert_eq(
      posix_spawn_file_actions_addopen(&fa, 1, out_path, O_WRONLY | O_CREAT | O_TRUNC, 0600), 0);
  cr_assert_eq(
      posix_spawn_file_actions_addopen(&fa, 2, err_path, O_WRONLY | O_CREAT | O_TRUNC, 0600), 0);
  pid_t pid;
  int rc = posix_spawn(&pid, bin, &fa, NULL, argv, environ);
  posix_spawn_file_actions_destroy(&fa);
  cr_assert_eq(rc, 0, "posix_spawn %s: %s", bin, strerror(rc));
  int st = 0;
  while (waitpid(pid, &st, 0) < 0)
    cr_assert_eq(errno, EINTR);
  r->status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  cr_assert_geq(t_read(out_path, r->out, sizeof r->out), 0);
  cr_assert_geq(t_read(err_path, r->err, sizeof r->err), 0);
}

#define T_TUMA(r, ...)                                                                             \
  do {                                                                                             \
    const char *const t_args_[] = {__VA_ARGS__, NULL};                                             \
    t_tuma((r), t_args_);                                                                          \
  } while (0)

/* A scratch directory with a CA (t_pki) and certificates mpesa-ke (operator) and admin
 * (admin), all made by the binary. */
static void t_setup(void) {
  t_make_dir();
  static t_run r;
  T_TUMA(&r, "pki", "init", "--dir", t_pki);
  cr_assert_eq(r.status, 0, "pki init: %s", r.err);
  T_TUMA(&r, "pki", "issue", "--dir", t_pki, "--name", "mpesa-ke", "--role", "operator");
  cr_assert_eq(r.status, 0, "pki issue operator: %s", r.err);
  T_TUMA(&r, "pki", "issue", "--dir", t_pki, "--name", "admin", "--role", "admin");
  cr_assert_eq(r.status, 0, "pki issue admin: %s", r.err);
}

/* ---- certificates ---- */

static X509 *t_load_cert(const char *path) {
  BIO *b = BIO_new_file(path, "r");
  cr_assert_not_null(b, "open %s", path);
  X509 *x = PEM_read_bio_X509(b, NULL, NULL, NULL);
  BIO_free(b);
  cr_assert_not_null(x, "parse %s", path);
  return x;
}

static X509_CRL *t_load_crl(const char *path) {
  BIO *b = BIO_new_file(path, "r");
  cr_assert_not_null(b, "open %s", path);
  X509_CRL *c = PEM_read_bio_X509_CRL(b, NULL, NULL, NULL);
  BIO_free(b);
  cr_assert_not_null(c, "parse %s", path);
  return c;
}

/* The certificate dir/name.crt. */
static X509 *t_cert(const char *dir, const char *name) {
  char path[T_PATH];
  T_FMT(path, "%s/%s.crt", dir, name);
  return t_load_cert(path);
}

static void t_subject(X509 *x, int nid, char *buf, size_t cap) {
  buf[0] = '\0';
  X509_NAME_get_text_by_NID(X509_get_subject_name(x), nid, buf, (int)cap);
}

/* Verifies x against the CA certificate in ca_path for purpose (X509_PURPOSE_SSL_CLIENT or
 * _SERVER), with crl when not NULL; returns X509_V_OK or the verification error. */
static int t_verify(const char *ca_path, X509 *x, int purpose, X509_CRL *crl) {
  X509 *ca = t_load_cert(ca_path);
  X509_STORE *store = X509_STORE_new();
  X509_STORE_CTX *ctx = X509_STORE_CTX_new();
  cr_assert(store != NULL && ctx != NULL);
  cr_assert_eq(X509_STORE_add_cert(store, ca), 1);
  if (crl != NULL) {
    cr_assert_eq(X509_STORE_add_crl(store, crl), 1);
    X509_STORE_set_flags(store, X509_V_FLAG_CRL_CHECK);
  }
  cr_assert_eq(X509_STORE_CTX_init(ctx, store, x, NULL), 1);
  cr_assert_eq(X509_STORE_CTX_set_purpose(ctx, purpose), 1);
  int ok = X509_verify_cert(ctx);
  int err = X509_STORE_CTX_get_error(ctx);
  cr_assert(ok == 1 ? err == X509_V_OK : err != X509_V_OK);
  X509_STORE_CTX_free(ctx);
  X509_STORE_free(store);
  X509_free(ca);
  ERR_clear_error();
  return err;
}

/* notAfter - notBefore in seconds. */
static long t_validity_seconds(X509 *x) {
  int days = 0, secs = 0;
  cr_assert_eq(ASN1_TIME_diff(&days, &secs, X509_get0_notBefore(x), X509_get0_notAfter(x)), 1);
  return (long)days * 86400 + secs;
}

static int t_serial_bits(X509 *x) {
  BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
  cr_assert_not_null(bn);
  int bits = BN_num_bits(bn);
  BN_free(bn);
  return bits;
}

/* ---- TLS over a socketpair ---- */

/* A TLS 1.3 context requiring a verified peer: for the server, a client certificate too. */
static SSL_CTX *t_tls_ctx(int server, const char *ca, const char *cert, const char *key) {
  SSL_CTX *ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
  cr_assert_not_null(ctx);
  cr_assert_eq(SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION), 1);
  cr_assert_eq(SSL_CTX_load_verify_file(ctx, ca), 1, "load %s", ca);
  cr_assert_eq(SSL_CTX_use_certificate_chain_file(ctx, cert), 1, "load %s", cert);
  cr_assert_eq(SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM), 1, "load %s", key);
  cr_assert_eq(SSL_CTX_check_private_key(ctx), 1);
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | (server ? SSL_VERIFY_FAIL_IF_NO_PEER_CERT : 0), NULL);
  return ctx;
}

/* What one in-process handshake showed. */
typedef struct t_tls_outcome {
  int ok;             /* both handshakes completed and a ping/pong crossed */
  int version;        /* the client's negotiated protocol version */
  long server_verify; /* SSL_get_verify_result on each side */
  long client_verify;
  char peer_cn[64]; /* the client certificate's CN and OU as the server saw them */
  char peer_ou[64];
} t_tls_outcome;

/* Steps one non-blocking SSL call: 1 done, 0 wants more I/O, -1 failed. */
static int t_tls_step(int ret, SSL *ssl) {
  if (ret > 0)
    return 1;
  int e = SSL_get_error(ssl, ret);
  return e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE ? 0 : -1;
}

/* Runs a server (sctx) and a client (cctx, checking the server's name host) against each
 * other over a socketpair in this thread, then sends "ping" one way and "pong" the other. */
static t_tls_outcome t_handshake(SSL_CTX *sctx, SSL_CTX *cctx, const char *host) {
  t_tls_outcome o = {0};
  int sv[2];
  cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
  SSL *s = SSL_new(sctx), *c = SSL_new(cctx);
  cr_assert(s != NULL && c != NULL);
  cr_assert_eq(SSL_set_fd(s, sv[0]), 1);
  cr_assert_eq(SSL_set_fd(c, sv[1]), 1);
  SSL_set_accept_state(s);
  SSL_set_connect_state(c);
  cr_assert_eq(SSL_set1_host(c, host), 1);
  int sd = 0, cd = 0, failed = 0;
  for (int round = 0; round < 200 && !failed && !(sd == 1 && cd == 1); round++) {
    if (sd == 0)
      sd = t_tls_step(SSL_do_handshake(s), s);
    if (cd == 0)
      cd = t_tls_step(SSL_do_handshake(c), c);
    failed = sd < 0 || cd < 0;
  }
  /* In TLS 1.3 the client finishes before the server has judged its certificate; a refusal
   * reaches the client as an alert on its first read. */
  int pinged = 0, ponged = 0;
  char buf[8];
  for (int round = 0; round < 200 && !failed && !ponged; round++) {
    int st;
    if (!pinged) {
      st = t_tls_step(SSL_write(c, "ping", 4), c);
      pinged = st == 1;
      failed = st < 0;
    } else if (pinged == 1) {
      st = t_tls_step(SSL_read(s, buf, sizeof buf), s);
      if (st == 1) {
        pinged = 2;
        failed = SSL_write(s, "pong", 4) != 4;
      }
      failed |= st < 0;
    } else {
      st = t_tls_step(SSL_read(c, buf, sizeof buf), c);
      ponged = st == 1 && memcmp(buf, "pong", 4) == 0;
      failed = st < 0;
    }
  }
  o.ok = !failed && ponged;
  o.version = SSL_version(c);
  o.server_verify = SSL_get_verify_result(s);
  o.client_verify = SSL_get_verify_result(c);
  X509 *peer = SSL_get1_peer_certificate(s);
  if (peer != NULL) {
    t_subject(peer, NID_commonName, o.peer_cn, sizeof o.peer_cn);
    t_subject(peer, NID_organizationalUnitName, o.peer_ou, sizeof o.peer_ou);
    X509_free(peer);
  }
  SSL_free(s);
  SSL_free(c);
  close(sv[0]);
  close(sv[1]);
  ERR_clear_error();
  return o;
}

/* Server context with the switch's certificate from dir, client context with name's. */
static t_tls_outcome t_mutual(const char *server_dir, const char *client_ca_dir,
                              const char *client_dir, const char *name, const char *host) {
  char ca[T_PATH], cert[T_PATH], key[T_PATH], cca[T_PATH];
  T_FMT(ca, "%s/ca.crt", server_dir);
  T_FMT(cert, "%s/tumad.crt", server_dir);
  T_FMT(key, "%s/tumad.key", server_dir);
  SSL_CTX *sctx = t_tls_ctx(1, ca, cert, key);
  T_FMT(cca, "%s/ca.crt", client_ca_dir);
  T_FMT(cert, "%s/%s.crt", client_dir, name);
  T_FMT(key, "%s/%s.key", client_dir, name);
  SSL_CTX *cctx = t_tls_ctx(0, cca, cert, key);
  t_tls_outcome o = t_handshake(sctx, cctx, host);
  SSL_CTX_free(sctx);
  SSL_CTX_free(cctx);
  return o;
}

TestSuite(pki, .init = t_setup, .fini = t_cleanup, .timeout = 60);

Test(pki, init_makes_a_ca_and_a_switch_certificate) {
  char path[T_PATH];
  static const char *const files[] = {"ca.key",  "ca.crt",     "tumad.key",  "tumad.crt",
                                      "crl.pem", "issued.txt", "revoked.txt"};
  for (size_t k = 0; k < sizeof files / sizeof files[0]; k++) {
    T_FMT(path, "%s/%s", t_pki, files[k]);
    cr_assert_eq(access(path, R_OK), 0, "%s missing", path);
  }
  cr_assert_eq(t_mode(t_path(path, "pki/ca.key")), 0600);
  cr_assert_eq(t_mode(t_path(path, "pki/tumad.key")), 0600);
  cr_assert_eq(t_mode(t_pki), 0700);

  X509 *ca = t_cert(t_pki, "ca");
  cr_assert_eq(X509_check_ca(ca), 1, "ca.crt is not a CA certificate");
  cr_assert_eq(X509_check_issued(ca, ca), X509_V_OK, "ca.crt is not self-issued");
  EVP_PKEY *pub = X509_get0_pubkey(ca);
  cr_assert(EVP_PKEY_is_a(pub, "EC"));
  char group[32] = "";
  cr_assert_eq(EVP_PKEY_get_utf8_string_param(pub, "group", group, sizeof group, NULL), 1);
  cr_assert_str_eq(group, "prime256v1");
  cr_assert_eq(t_verify(t_path(path, "pki/ca.crt"), ca, X509_PURPOSE_ANY, NULL), X509_V_OK);

  X509 *sw = t_cert(t_pki, "tumad");
  char text[64];
  t_subject(sw, NID_commonName, text, sizeof text);
  cr_assert_str_eq(text, "tumad");
  t_subject(sw, NID_organizationalUnitName, text, sizeof text);
  cr_assert_str_eq(text, "switch");
  t_subject(sw, NID_organizationName, text, sizeof text);
  cr_assert_str_eq(text, "Tuma");
  cr_assert_eq(X509_check_host(sw, "localhost", 0, 0, NULL), 1);
  cr_assert_eq(X509_check_ip_asc(sw, "127.0.0.1", 0), 1);
  cr_assert_eq(X509_check_ip_asc(sw, "::1", 0), 1);
  cr_assert_neq(X509_check_host(sw, "example.com", 0, 0, NULL), 1);
  cr_assert(X509_get_extended_key_usage(sw) & XKU_SSL_SERVER);
  cr_assert_not(X509_get_extended_key_usage(sw) & XKU_SSL_CLIENT);
  cr_assert_neq(X509_check_ca(sw), 1);
  cr_assert_eq(t_verify(t_path(path, "pki/ca.crt"), sw, X509_PURPOSE_SSL_SERVER, NULL), X509_V_OK);
  X509_free(sw);
  X509_free(ca);
}

Test(pki, issued_certificates_carry_name_role_and_client_auth) {
  char path[T_PATH], text[64];
  t_path(path, "pki/ca.crt");
  static const char *const who[][2] = {{"mpesa-ke", "operator"}, {"admin", "admin"}};
  X509 *certs[2];
  for (int k = 0; k < 2; k++) {
    X509 *x = certs[k] = t_cert(t_pki, who[k][0]);
    t_subject(x, NID_commonName, text, sizeof text);
    cr_assert_str_eq(text, who[k][0]);
    t_subject(x, NID_organizationalUnitName, text, sizeof text);
    cr_assert_str_eq(text, who[k][1]);
    cr_assert(X509_get_extended_key_usage(x) & XKU_SSL_CLIENT);
    cr_assert_not(X509_get_extended_key_usage(x) & XKU_SSL_SERVER);
    cr_assert_neq(X509_check_ca(x), 1);
    /* 365 days from five minutes ago; the certificate is valid now. */
    cr_assert_eq(t_validity_seconds(x), 365L * 86400);
    cr_assert_lt(X509_cmp_current_time(X509_get0_notBefore(x)), 0);
    cr_assert_gt(X509_cmp_current_time(X509_get0_notAfter(x)), 0);
    cr_assert_gt(t_serial_bits(x), 64, "serial numbers are 128 random bits");
    cr_assert_leq(t_serial_bits(x), 128);
    cr_assert_eq(t_verify(path, x, X509_PURPOSE_SSL_CLIENT, NULL), X509_V_OK);
    /* A client certificate cannot pose as the switch. */
    cr_assert_neq(t_verify(path, x, X509_PURPOSE_SSL_SERVER, NULL), X509_V_OK);
    char key_path[T_PATH];
    T_FMT(key_path, "%s/%s.key", t_pki, who[k][0]);
    cr_assert_eq(t_mode(key_path), 0600);
  }
  cr_assert_neq(
      ASN1_INTEGER_cmp(X509_get0_serialNumber(certs[0]), X509_get0_serialNumber(certs[1])), 0);
  X509_free(certs[0]);
  X509_free(certs[1]);

  char issued[4096];
  cr_assert_gt(t_read(t_path(path, "pki/issued.txt"), issued, sizeof issued), 0);
  cr_assert_not_null(strstr(issued, " mpesa-ke operator "));
  cr_assert_not_null(strstr(issued, " admin admin "));
  cr_assert_not_null(strstr(issued, " tumad switch "));
}

Test(pki, issue_with_out_days_and_library_call) {
  t_run r;
  char out[T_PATH], path[T_PATH];
  t_path(out, "elsewhere/certs");
  T_TUMA(&r, "pki", "issue", "--dir", t_pki, "--name", "pm-1", "--role", "programme-manager",
         "--days", "30", "--out", out);
  cr_assert_eq(r.status, 0, "%s", r.err);
  X509 *x = t_cert(out, "pm-1");
  cr_assert_eq(t_validity_seconds(x), 30L * 86400);
  char ou[64];
  t_subject(x, NID_organizationalUnitName, ou, sizeof ou);
  cr_assert_str_eq(ou, "programme-manager");
  cr_assert_eq(t_verify(t_path(path, "pki/ca.crt"), x, X509_PURPOSE_SSL_CLIENT, NULL), X509_V_OK);
  X509_free(x);

  pki_issue_options o = {.dir = t_pki, .name = "checker", .role = "approver", .days = 2};
  pki_diag diag = {""};
  cr_assert_eq(pki_issue(&o, &diag), PKI_OK, "%s", diag.text);
  x = t_cert(t_pki, "checker");
  cr_assert_eq(t_verify(path, x, X509_PURPOSE_SSL_CLIENT, NULL), X509_V_OK);
  X509_free(x);
  cr_assert_eq(pki_issue(&o, &diag), PKI_EEXIST, "an existing certificate is kept");
  o.force = 1;
  cr_assert_eq(pki_issue(&o, &diag), PKI_OK, "%s", diag.text);
  o.name = "Bad";
  cr_assert_eq(pki_issue(&o, &diag), PKI_EINVAL);
  o.name = "ca";
  cr_assert_eq(pki_issue(&o, &diag), PKI_EINVAL, "ca is reserved");
  o.name = "fine";
  o.role = "root";
  cr_assert_eq(pki_issue(&o, &diag), PKI_EINVAL);
  o.role = "operator";
  o.days = 36500;
  cr_assert_eq(pki_issue(&o, &diag), PKI_EINVAL, "no certificate outlives its CA");
  o.dir = out; /* no CA there */
  o.days = 1;
  cr_assert_eq(pki_issue(&o, &diag), PKI_ENOENT);
  cr_assert_not_null(strstr(diag.text, "tuma pki init"));
}

Test(pki, names_and_roles) {
  cr_assert(pki_name_valid("mpesa-ke"));
  cr_assert(pki_name_valid("a"));
  cr_assert(pki_name_valid("0-9"));
  char long_name[65];
  memset(long_name, 'a', 64);
  long_name[64] = '\0';
  cr_assert_not(pki_name_valid(long_name));
  long_name[63] = '\0';
  cr_assert(pki_name_valid(long_name));
  cr_assert_not(pki_name_valid(""));
  cr_assert_not(pki_name_valid("-x"));
  cr_assert_not(pki_name_valid("MPesa"));
  cr_assert_not(pki_name_valid("a_b"));
  cr_assert_not(pki_name_valid("a b"));
  cr_assert_not(pki_name_valid("a/../b"));
  cr_assert(pki_role_valid("operator"));
  cr_assert(pki_role_valid("admin"));
  cr_assert(pki_role_valid("programme-manager"));
  cr_assert(pki_role_valid("approver"));
  cr_assert_not(pki_role_valid("switch"));
  cr_assert_not(pki_role_valid("Admin"));
}

Test(pki, a_certificate_from_another_ca_fails) {
  char other[T_PATH], path[T_PATH];
  t_path(other, "other");
  t_run r;
  T_TUMA(&r, "pki", "init", "--dir", other, "--scheme", "Rogue");
  cr_assert_eq(r.status, 0, "%s", r.err);
  T_TUMA(&r, "pki", "issue", "--dir", other, "--name", "mpesa-ke", "--role", "operator");
  cr_assert_eq(r.status, 0, "%s", r.err);
  X509 *x = t_cert(other, "mpesa-ke");
  char o[64];
  t_subject(x, NID_organizationName, o, sizeof o);
  cr_assert_str_eq(o, "Rogue");
  cr_assert_eq(t_verify(t_path(path, "pki/ca.crt"), x, X509_PURPOSE_SSL_CLIENT, NULL),
               X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY);
  X509_free(x);
  x = t_cert(other, "tumad");
  cr_assert_neq(t_verify(path, x, X509_PURPOSE_SSL_SERVER, NULL), X509_V_OK);
  X509_free(x);
}

Test(pki, an_expired_certificate_fails) {
  t_run r;
  char path[T_PATH];
  T_TUMA(&r, "pki", "issue", "--dir", t_pki, "--name", "old", "--role", "operator", "--days", "1",
         "--not-before-days-ago", "3");
  cr_assert_eq(r.status, 0, "%s", r.err);
  X509 *x = t_cert(t_pki, "old");
  cr_assert_eq(t_validity_seconds(x), 86400);
  cr_assert_gt(X509_cmp_current_time(X509_get0_notBefore(x)) * -1, 0);
  cr_assert_lt(X509_cmp_current_time(X509_get0_notAfter(x)), 0);
  cr_assert_eq(t_verify(t_path(path, "pki/ca.crt"), x, X509_PURPOSE_SSL_CLIENT, NULL),
               X509_V_ERR_CERT_HAS_EXPIRED);
  X509_free(x);
}

Test(pki, tls13_mutual_authentication_works) {
  t_tls_outcome o = t_mutual(t_pki, t_pki, t_pki, "mpesa-ke", "localhost");
  cr_assert(o.ok, "the handshake or the ping/pong failed");
  cr_assert_eq(o.version, TLS1_3_VERSION);
  cr_assert_eq(o.server_verify, X509_V_OK);
  cr_assert_eq(o.client_verify, X509_V_OK);
  cr_assert_str_eq(o.peer_cn, "mpesa-ke");
  cr_assert_str_eq(o.peer_ou, "operator");

  o = t_mutual(t_pki, t_pki, t_pki, "admin", "127.0.0.1");
  cr_assert(o.ok);
  cr_assert_str_eq(o.peer_cn, "admin");
  cr_assert_str_eq(o.peer_ou, "admin");
}

Test(pki, tls_refuses_foreign_expired_and_misnamed_peers) {
  char other[T_PATH];
  t_path(other, "other");
  t_run r;
  T_TUMA(&r, "pki", "init", "--dir", other);
  cr_assert_eq(r.status, 0, "%s", r.err);
  T_TUMA(&r, "pki", "issue", "--dir", other, "--name", "intruder", "--role", "operator");
  cr_assert_eq(r.status, 0, "%s", r.err);
  T_TUMA(&r, "pki", "issue", "--dir", t_pki, "--name", "old", "--role", "operator", "--days", "1",
         "--not-before-days-ago", "3");
  cr_assert_eq(r.status, 0, "%s", r.err);

  /* A client certificate from another CA: the switch refuses it. */
  t_tls_outcome o = t_mutual(t_pki, t_pki, other, "intruder", "localhost");
  cr_assert_not(o.ok);
  cr_assert_neq(o.server_verify, X509_V_OK);
  /* An expired client certificate. */
  o = t_mutual(t_pki, t_pki, t_pki, "old", "localhost");
  cr_assert_not(o.ok);
  cr_assert_eq(o.server_verify, X509_V_ERR_CERT_HAS_EXPIRED);
  /* A switch certificate from another CA: the client refuses it. */
  o = t_mutual(other, t_pki, t_pki, "mpesa-ke", "localhost");
  cr_assert_not(o.ok);
  cr_assert_neq(o.client_verify, X509_V_OK);
  /* The switch reached under a name its certificate does not carry. */
  o = t_mutual(t_pki, t_pki, t_pki, "mpesa-ke", "switch.example.com");
  cr_assert_not(o.ok);
  cr_assert_eq(o.client_verify, X509_V_ERR_HOSTNAME_MISMATCH);
  /* A client certificate used as a server certificate: no serverAuth. */
  char ca[T_PATH], cert[T_PATH], key[T_PATH];
  T_FMT(ca, "%s/ca.crt", t_pki);
  T_FMT(cert, "%s/admin.crt", t_pki);
  T_FMT(key, "%s/admin.key", t_pki);
  SSL_CTX *sctx = t_tls_ctx(1, ca, cert, key);
  T_FMT(cert, "%s/mpesa-ke.crt", t_pki);
  T_FMT(key, "%s/mpesa-ke.key", t_pki);
  SSL_CTX *cctx = t_tls_ctx(0, ca, cert, key);
  o = t_handshake(sctx, cctx, "admin");
  cr_assert_not(o.ok);
  cr_assert_eq(o.client_verify, X509_V_ERR_INVALID_PURPOSE);
  SSL_CTX_free(sctx);
  SSL_CTX_free(cctx);
}

Test(pki, revoke_and_crl) {
  t_run r;
  char path[T_PATH], crl_path[T_PATH];
  t_path(path, "pki/ca.crt");
  t_path(crl_path, "pki/crl.pem");
  X509 *op = t_cert(t_pki, "mpesa-ke"), *adm = t_cert(t_pki, "admin");

  /* The CRL init wrote is empty and valid. */
  X509_CRL *crl = t_load_crl(crl_path);
  cr_assert_eq(t_verify(path, op, X509_PURPOSE_SSL_CLIENT, crl), X509_V_OK);
  X509_CRL_free(crl);

  T_TUMA(&r, "pki", "revoke", "--dir", t_pki, "--name", "mpesa-ke");
  cr_assert_eq(r.status, 0, "%s", r.err);
  crl = t_load_crl(crl_path);
  cr_assert_eq(t_verify(path, op, X509_PURPOSE_SSL_CLIENT, crl), X509_V_ERR_CERT_REVOKED);
  cr_assert_eq(t_verify(path, adm, X509_PURPOSE_SSL_CLIENT, crl), X509_V_OK);
  X509_CRL_free(crl);

  /* Revoking again is harmless; an unknown name is an error; crl rewrites the same list. */
  T_TUMA(&r, "pki", "revoke", "--dir", t_pki, "--name", "mpesa-ke");
  cr_assert_eq(r.status, 0, "%s", r.err);
  T_TUMA(&r, "pki", "revoke", "--dir", t_pki, "--name", "nobody");
  cr_assert_eq(r.status, 1);
  cr_assert_not_null(strstr(r.err, "nobody"));
  T_TUMA(&r, "pki", "crl", "--dir", t_pki, "--days", "7");
  cr_assert_eq(r.status, 0, "%s", r.err);
  crl = t_load_crl(crl_path);
  cr_assert_eq(t_verify(path, op, X509_PURPOSE_SSL_CLIENT, crl), X509_V_ERR_CERT_REVOKED);
  int days = 0, secs = 0;
  cr_assert_eq(
      ASN1_TIME_diff(&days, &secs, X509_CRL_get0_lastUpdate(crl), X509_CRL_get0_nextUpdate(crl)),
      1);
  cr_assert_eq(days, 7);
  X509_CRL_free(crl);

  /* By serial, as openssl prints it (colons, lower case), through the library. */
  BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(adm), NULL);
  char *hex = BN_bn2hex(bn);
  for (char *p = hex; *p; p++)
    if (*p >= 'A' && *p <= 'F')
      *p = (char)(*p - 'A' + 'a');
  char with_colons[128];
  snprintf(with_colons, sizeof with_colons, "%.2s:%s", hex, hex + 2);
  pki_diag diag = {""};
  int count = -1;
  cr_assert_eq(pki_revoke(t_pki, NULL, with_colons, 0, &count, &diag), PKI_OK, "%s", diag.text);
  cr_assert_eq(count, 1);
  OPENSSL_free(hex);
  BN_free(bn);
  crl = t_load_crl(crl_path);
  cr_assert_eq(t_verify(path, adm, X509_PURPOSE_SSL_CLIENT, crl), X509_V_ERR_CERT_REVOKED);
  X509_CRL_free(crl);
  char revoked[4096];
  cr_assert_gt(t_read(t_path(path, "pki/revoked.txt"), revoked, sizeof revoked), 0);
  cr_assert_not_null(strstr(revoked, " mpesa-ke\n"));
  cr_assert_not_null(strstr(revoked, " admin\n"));
  X509_free(op);
  X509_free(adm);
}

Test(pki, init_refuses_to_replace_a_ca_without_force) {
  char path[T_PATH], before[8192], after[8192];
  t_path(path, "pki/ca.crt");
  cr_assert_gt(t_read(path, before, sizeof before), 0);
  t_run r;
  T_TUMA(&r, "pki", "init", "--dir", t_pki);
  cr_assert_eq(r.status, 1);
  cr_assert_not_null(strstr(r.err, "--force"), "%s", r.err);
  cr_assert_gt(t_read(path, after, sizeof after), 0);
  cr_assert_str_eq(before, after, "the CA was changed");
  T_TUMA(&r, "pki", "issue", "--dir", t_pki, "--name", "mpesa-ke", "--role", "operator");
  cr_assert_eq(r.status, 1, "issue must not overwrite without --force");

  T_TUMA(&r, "pki", "init", "--dir", t_pki, "--force", "--days", "100");
  cr_assert_eq(r.status, 0, "%s", r.err);
  cr_assert_gt(t_read(path, after, sizeof after), 0);
  cr_assert_str_neq(before, after);
  X509 *ca = t_cert(t_pki, "ca");
  cr_assert_eq(t_validity_seconds(ca), 100L * 86400);
  X509_free(ca);
  /* The old operator certificate no longer verifies; the list of issued ones starts again. */
  X509 *op = t_cert(t_pki, "mpesa-ke");
  cr_assert_neq(t_verify(path, op, X509_PURPOSE_SSL_CLIENT, NULL), X509_V_OK);
  X509_free(op);
  char issued[4096];
  cr_assert_gt(t_read(t_path(path, "pki/issued.txt"), issued, sizeof issued), 0);
  cr_assert_null(strstr(issued, "mpesa-ke"));
}

Test(pki, server_reissue_with_more_names) {
  t_run r;
  T_TUMA(&r, "pki", "server", "--dir", t_pki, "--dns", "switch.example.com", "--ip", "10.1.2.3");
  cr_assert_eq(r.status, 1, "needs --force over the existing certificate");
  T_TUMA(&r, "pki", "server", "--dir", t_pki, "--dns", "switch.example.com", "--ip", "10.1.2.3",
         "--force");
  cr_assert_eq(r.status, 0, "%s", r.err);
  X509 *sw = t_cert(t_pki, "tumad");
  cr_assert_eq(X509_check_host(sw, "switch.example.com", 0, 0, NULL), 1);
  cr_assert_eq(X509_check_host(sw, "localhost", 0, 0, NULL), 1);
  cr_assert_eq(X509_check_ip_asc(sw, "10.1.2.3", 0), 1);
  X509_free(sw);
  t_tls_outcome o = t_mutual(t_pki, t_pki, t_pki, "mpesa-ke", "switch.example.com");
  cr_assert(o.ok);
  T_TUMA(&r, "pki", "server", "--dir", t_pki, "--ip", "10.1.2", "--force");
  cr_assert_eq(r.status, 2);
  T_TUMA(&r, "pki", "server", "--dir", t_pki, "--dns", "bad,name", "--force");
  cr_assert_eq(r.status, 2);
}

/* ---- the CLI's usage errors ---- */

/* Runs the NULL-separated argument lists in args (ended by an empty list) and expects each to
 * exit with want and a message on stderr. */
static void t_expect_all(const char *const *args, int want) {
  while (args[0] != NULL) {
    t_run r;
    t_tuma(&r, args);
    char shown[512] = "";
    for (const char *const *a = args; *a != NULL; a++) {
      strncat(shown, " ", sizeof shown - strlen(shown) - 1);
      strncat(shown, *a, sizeof shown - strlen(shown) - 1);
    }
    cr_expect_eq(r.status, want, "tuma%s: exit %d, not %d; stderr: %s", shown, r.status, want,
                 r.err);
    cr_expect_gt(strlen(r.err), 0, "tuma%s: nothing on stderr", shown);
    while (*args != NULL)
      args++;
    args++;
  }
}

Test(pki, cli_usage_errors_exit_2) {
  char other[T_PATH];
  t_path(other, "new");
  /* Admin commands are validated before connecting: port 1 has no listener, so any attempt to
   * connect would exit 1, not 2. */
  static const char *const c = "--connect";
  static const char *const p = "127.0.0.1:1";
  /* clang-format off */
  const char *const cases[] = {
      "bogus", NULL,
      "pki", NULL,
      "pki", "frobnicate", NULL,
      "pki", "init", NULL,
      "pki", "init", "--dir", NULL,
      "pki", "init", "--dir", other, "--days", "0", NULL,
      "pki", "init", "--dir", other, "--days", "12x", NULL,
      "pki", "init", "--dir", other, "--days", "-5", NULL,
      "pki", "init", "--dir", other, "--wat", NULL,
      "pki", "issue", "--dir", t_pki, "--role", "operator", NULL,
      "pki", "issue", "--dir", t_pki, "--name", "Bad_Name", "--role", "operator", NULL,
      "pki", "issue", "--dir", t_pki, "--name", "-lead", "--role", "operator", NULL,
      "pki", "issue", "--dir", t_pki, "--name",
          "a123456789012345678901234567890123456789012345678901234567890123", "--role", "admin",
          NULL,
      "pki", "issue", "--dir", t_pki, "--name", "x", "--role", "king", NULL,
      "pki", "issue", "--dir", t_pki, "--name", "x", "--role", "admin", "--days", "99999999999",
          NULL,
      "pki", "issue", "--dir", t_pki, "--name", "ca", "--role", "admin", NULL,
      "pki", "revoke", "--dir", t_pki, NULL,
      "pki", "revoke", "--dir", t_pki, "--name", "a", "--serial", "01", NULL,
      "pki", "revoke", "--dir", t_pki, "--serial", "xyz", NULL,
      "pki", "crl", NULL,
      "participant", NULL,
      "participant", "rename", "x", NULL,
      "participant", "create", "mpesa-ke", "--currency", "KES", c, p, NULL,
      "participant", "create", "mpesa-ke", "--name", "M-Pesa", c, p, NULL,
      "participant", "create", "mpesa-ke", "--name", "M-Pesa", "--currency", "kes", c, p, NULL,
      "participant", "create", "mpesa-ke", "--name", "M-Pesa", "--currency", "KESH", c, p, NULL,
      "participant", "create", "mpesa-ke", "--name", "M-Pesa", "--currency", "KES",
          "--currency", "KES", c, p, NULL,
      "participant", "create", "MPESA", "--name", "M-Pesa", "--currency", "KES", c, p, NULL,
      "participant", "create", "mpesa-ke", "--name", "", "--currency", "KES", c, p, NULL,
      "participant", "suspend", c, p, NULL,
      "participant", "suspend", "a", "b", c, p, NULL,
      "participant", "resume", "-x", c, p, NULL,
      "participant", "list", "extra", c, p, NULL,
      "participant", "list", "--connect", "nohost", NULL,
      "participant", "list", "--connect", "host:99999", NULL,
      "participant", "list", "--timeout", "0", c, p, NULL,
      "participant", "list", "--name", "x", c, p, NULL,
      "liquidity", "deposit", "mpesa-ke", "12.5", "KES", c, p, NULL,
      "liquidity", "deposit", "mpesa-ke", "0", "KES", c, p, NULL,
      "liquidity", "deposit", "mpesa-ke", "18446744073709551616", "KES", c, p, NULL,
      "liquidity", "deposit", "mpesa-ke", "-5", "KES", c, p, NULL,
      "liquidity", "deposit", "mpesa-ke", "+5", "KES", c, p, NULL,
      "liquidity", "deposit", "mpesa-ke", "1e3", "KES", c, p, NULL,
      "liquidity", "deposit", "mpesa-ke", "100", "Kes", c, p, NULL,
      "liquidity", "deposit", "mpesa-ke", "100", c, p, NULL,
      "liquidity", "deposit", "mpesa-ke", "100", "KES", "--id", "1234", c, p, NULL,
      "liquidity", "deposit", "mpesa-ke", "100", "KES", "--id",
          "00000000000000000000000000000000", c, p, NULL,
      "liquidity", "withdraw", "mpesa-ke", "100", "KES", "--id",
          "0123456789abcdef0123456789abcdeg", c, p, NULL,
      "liquidity", "withdraw", "mpesa-ke", "100", "KES", "--reason", "", c, p, NULL,
      "liquidity", "move", "mpesa-ke", "100", "KES", c, p, NULL,
      "ndc", "set", "mpesa-ke", "100", "KESX", c, p, NULL,
      "ndc", "set", "mpesa-ke", "ten", "KES", c, p, NULL,
      "ndc", "set", "mpesa-ke", "9223372036854775808", "KES", c, p, NULL,
      "ndc", "get", "mpesa-ke", c, p, NULL,
      "positions", "a", "b", c, p, NULL,
      "positions", "Not_An_Id", c, p, NULL,
      "party", "add", "phone", "254700123456", "mpesa-ke", c, p, NULL,
      "party", "add", "msisdn", "2547ab", "mpesa-ke", c, p, NULL,
      "party", "add", "msisdn", "+254700123456", "mpesa-ke", c, p, NULL,
      "party", "add", "msisdn", "254700123456", c, p, NULL,
      "party", "add", "national-id", "has space", "mpesa-ke", c, p, NULL,
      "party", "remove", "msisdn", c, p, NULL,
      NULL};
  /* clang-format on */
  t_expect_all(cases, 2);
  /* Nothing was created by the refused pki commands. */
  cr_assert_neq(access(other, F_OK), 0);
}

Test(pki, cli_help_exits_0) {
  const char *const cases[][4] = {
      {"--help", NULL},
      {"pki", "--help", NULL},
      {"pki", "init", "--help", NULL},
      {"pki", "issue", "--help", NULL},
      {"pki", "server", "--help", NULL},
      {"pki", "revoke", "--help", NULL},
      {"pki", "crl", "--help", NULL},
      {"participant", "--help", NULL},
      {"participant", "create", "--help", NULL},
      {"liquidity", "deposit", "--help", NULL},
      {"ndc", "--help", NULL},
      {"positions", "--help", NULL},
      {"party", "add", "--help", NULL},
  };
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
    t_run r;
    t_tuma(&r, cases[k]);
    cr_expect_eq(r.status, 0, "%s %s: exit %d", cases[k][0], cases[k][1], r.status);
    cr_expect_not_null(strstr(r.out, "usage: tuma"), "%s %s: no usage on stdout", cases[k][0],
                       cases[k][1]);
  }
}

Test(pki, party_ids_are_masked_in_messages) {
  t_run r;
  /* 16 digits: too long for an MSISDN. */
  T_TUMA(&r, "party", "add", "msisdn", "2547001234567890", "mpesa-ke", "--connect", "127.0.0.1:1");
  cr_assert_eq(r.status, 2);
  cr_assert_null(strstr(r.err, "2547001234567890"), "%s", r.err);
  cr_assert_not_null(strstr(r.err, "254***********90"), "%s", r.err);
}

Test(pki, admin_commands_fail_cleanly_without_a_switch) {
  t_run r;
  char ca[T_PATH];
  t_path(ca, "pki/ca.crt");
  cr_assert_eq(setenv("TUMA_PKI_DIR", t_pki, 1), 0);
  /* A port where nothing listens (bound, never listening). */
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof sa;
  cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
  cr_assert_eq(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
  char addr[64];
  snprintf(addr, sizeof addr, "127.0.0.1:%d", ntohs(sa.sin_port));
  T_TUMA(&r, "participant", "list", "--connect", addr);
  cr_assert_eq(r.status, 1, "%s", r.err);
  cr_assert_not_null(strstr(r.err, "cannot connect"), "%s", r.err);
  /* Missing certificate files are named. */
  T_TUMA(&r, "positions", "--connect", addr, "--cert", "/nonexistent/admin.crt");
  cr_assert_eq(r.status, 1);
  cr_assert_not_null(strstr(r.err, "/nonexistent/admin.crt"), "%s", r.err);
  /* A liquidity adjustment prints its id before trying, so it can be retried. */
  T_TUMA(&r, "liquidity", "deposit", "mpesa-ke", "100", "KES", "--connect", addr);
  cr_assert_eq(r.status, 1);
  cr_assert_not_null(strstr(r.out, "adjustment id "), "%s", r.out);
  cr_assert_not_null(strstr(r.err, "--id "), "%s", r.err);
  close(fd);
  (void)ca;
}

/* ---- a fake admin listener ---- */

enum { FAKE_OK, FAKE_REFUSE, FAKE_PARTICIPANTS, FAKE_POSITIONS, FAKE_WRONG_ID };

/* One connection's worth of switch: accepts, handshakes (requiring a client certificate from
 * the scheme CA), reads one request, records it, answers as told, closes. */
typedef struct fake_switch {
  int listen_fd;
  int port;
  SSL_CTX *ctx;
  int answer; /* FAKE_* */
  pthread_t thread;
  /* What it saw (read after pthread_join). */
  int handshake_ok;
  char peer_cn[64], peer_ou[64];
  Tuma__V1__AdminEnvelope *request; /* freed by fake_stop */
} fake_switch;

static int fake_read_exact(SSL *ssl, unsigned char *buf, size_t len) {
  while (len > 0) {
    size_t got = 0;
    if (SSL_read_ex(ssl, buf, len, &got) != 1)
      return -1;
    buf += got;
    len -= got;
  }
  return 0;
}

static void fake_reply(SSL *ssl, fake_switch *f, uint64_t correlation_id) {
  Tuma__V1__AdminEnvelope env = TUMA__V1__ADMIN_ENVELOPE__INIT;
  Tuma__V1__AdminResult result = TUMA__V1__ADMIN_RESULT__INIT;
  Tuma__V1__Error error = TUMA__V1__ERROR__INIT;
  Tuma__V1__ParticipantListResult list = TUMA__V1__PARTICIPANT_LIST_RESULT__INIT;
  Tuma__V1__Participant p1 = TUMA__V1__PARTICIPANT__INIT, p2 = TUMA__V1__PARTICIPANT__INIT;
  Tuma__V1__Participant *ps[2] = {&p1, &p2};
  char *cur1[2] = {"KES", "UGX"}, *cur2[1] = {"TZS"};
  Tuma__V1__PositionsResult positions = TUMA__V1__POSITIONS_RESULT__INIT;
  Tuma__V1__Position pos = TUMA__V1__POSITION__INIT, pos2 = TUMA__V1__POSITION__INIT;
  Tuma__V1__Position *poss[2] = {&pos, &pos2};
  env.correlation_id = f->answer == FAKE_WRONG_ID ? correlation_id + 100 : correlation_id;
  switch (f->answer) {
  case FAKE_REFUSE:
    error.code = 3106;
    error.message = "modified request";
    result.error = &error;
    /* fallthrough */
  case FAKE_OK:
  case FAKE_WRONG_ID:
    env.body_case = TUMA__V1__ADMIN_ENVELOPE__BODY_ADMIN_RESULT;
    env.admin_result = &result;
    break;
  case FAKE_PARTICIPANTS:
    p1.participant_id = "mpesa-ke";
    p1.name = "M-Pesa Kenya";
    p1.n_currencies = 2;
    p1.currencies = cur1;
    p1.status = TUMA__V1__PARTICIPANT_STATUS__PARTICIPANT_STATUS_ACTIVE;
    p1.connected = 1;
    p2.participant_id = "tigo-tz";
    p2.name = "Tigo Pesa";
    p2.n_currencies = 1;
    p2.currencies = cur2;
    p2.status = TUMA__V1__PARTICIPANT_STATUS__PARTICIPANT_STATUS_SUSPENDED;
    list.n_participants = 2;
    list.participants = ps;
    env.body_case = TUMA__V1__ADMIN_ENVELOPE__BODY_PARTICIPANT_LIST_RESULT;
    env.participant_list_result = &list;
    break;
  default:
    pos.participant_id = "mpesa-ke";
    pos.currency = "KES";
    pos.liquidity = 1000000;
    pos.reserved = 2500;
    pos.available = 997500;
    pos.net_debit_cap = 500000;
    pos.net_position = -4200;
    pos2.participant_id = "mpesa-ke";
    pos2.currency = "USD";
    pos2.net_debit_cap = INT64_MAX;
    positions.n_positions = 2;
    positions.positions = poss;
    env.body_case = TUMA__V1__ADMIN_ENVELOPE__BODY_POSITIONS_RESULT;
    env.positions_result = &positions;
    break;
  }
  size_t size = tuma__v1__admin_envelope__get_packed_size(&env);
  unsigned char *frame = malloc(4 + size);
  if (frame == NULL)
    return;
  frame[0] = (unsigned char)(size >> 24);
  frame[1] = (unsigned char)(size >> 16);
  frame[2] = (unsigned char)(size >> 8);
  frame[3] = (unsigned char)size;
  tuma__v1__admin_envelope__pack(&env, frame + 4);
  size_t written = 0;
  SSL_write_ex(ssl, frame, 4 + size, &written);
  free(frame);
}

static void *fake_run_cb(void *arg) {
  fake_switch *f = arg;
  struct pollfd pfd = {.fd = f->listen_fd, .events = POLLIN};
  if (poll(&pfd, 1, 20000) != 1)
    return NULL;
  int fd = accept(f->listen_fd, NULL, NULL);
  if (fd < 0)
    return NULL;
  struct timeval tv = {.tv_sec = 20};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  SSL *ssl = SSL_new(f->ctx);
  if (ssl != NULL && SSL_set_fd(ssl, fd) == 1 && SSL_accept(ssl) == 1) {
    f->handshake_ok = 1;
    X509 *peer = SSL_get1_peer_certificate(ssl);
    if (peer != NULL) {
      t_subject(peer, NID_commonName, f->peer_cn, sizeof f->peer_cn);
      t_subject(peer, NID_organizationalUnitName, f->peer_ou, sizeof f->peer_ou);
      X509_free(peer);
    }
    unsigned char head[4];
    if (fake_read_exact(ssl, head, 4) == 0) {
      size_t len = (size_t)head[0] << 24 | (size_t)head[1] << 16 | (size_t)head[2] << 8 | head[3];
      unsigned char *body = malloc(len + 1);
      if (body != NULL && fake_read_exact(ssl, body, len) == 0) {
        f->request = tuma__v1__admin_envelope__unpack(NULL, len, body);
        if (f->request != NULL)
          fake_reply(ssl, f, f->request->correlation_id);
      }
      free(body);
    }
    SSL_shutdown(ssl);
  }
  SSL_free(ssl);
  close(fd);
  return NULL;
}

/* Starts a fake admin listener on 127.0.0.1 with the switch certificate of t_pki. */
static void fake_start(fake_switch *f, int answer) {
  memset(f, 0, sizeof *f);
  char ca[T_PATH], cert[T_PATH], key[T_PATH];
  T_FMT(ca, "%s/ca.crt", t_pki);
  T_FMT(cert, "%s/tumad.crt", t_pki);
  T_FMT(key, "%s/tumad.key", t_pki);
  f->ctx = t_tls_ctx(1, ca, cert, key);
  f->answer = answer;
  f->listen_fd = socket(AF_INET, SOCK_STREAM, 0);
  cr_assert_geq(f->listen_fd, 0);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof sa;
  cr_assert_eq(bind(f->listen_fd, (struct sockaddr *)&sa, sizeof sa), 0);
  cr_assert_eq(listen(f->listen_fd, 4), 0);
  cr_assert_eq(getsockname(f->listen_fd, (struct sockaddr *)&sa, &len), 0);
  f->port = ntohs(sa.sin_port);
  cr_assert_eq(pthread_create(&f->thread, NULL, fake_run_cb, f), 0);
}

static void fake_join(fake_switch *f) {
  pthread_join(f->thread, NULL);
  close(f->listen_fd);
  SSL_CTX_free(f->ctx);
}

static void fake_free(fake_switch *f) {
  if (f->request != NULL)
    tuma__v1__admin_envelope__free_unpacked(f->request, NULL);
}

/* Runs one admin command (args after "tuma") against a fresh fake answering as told. */
static void fake_exchange(fake_switch *f, int answer, t_run *r, const char *const *args) {
  fake_start(f, answer);
  char addr[64];
  snprintf(addr, sizeof addr, "127.0.0.1:%d", f->port);
  const char *argv[48];
  int n = 0;
  for (; args[n] != NULL; n++)
    argv[n] = args[n];
  argv[n++] = "--connect";
  argv[n++] = addr;
  argv[n] = NULL;
  cr_assert_eq(setenv("TUMA_PKI_DIR", t_pki, 1), 0);
  t_tuma(r, argv);
  fake_join(f);
}

#define FAKE(f, answer, r, ...)                                                                    \
  do {                                                                                             \
    const char *const f_args_[] = {__VA_ARGS__, NULL};                                             \
    fake_exchange((f), (answer), (r), f_args_);                                                    \
  } while (0)

Test(pki, admin_participant_commands_end_to_end) {
  fake_switch f;
  t_run r;
  FAKE(&f, FAKE_OK, &r, "participant", "create", "mpesa-ke", "--name", "M-Pesa Kenya", "--currency",
       "KES", "--currency", "UGX");
  cr_assert_eq(r.status, 0, "%s", r.err);
  cr_assert(f.handshake_ok);
  cr_assert_str_eq(f.peer_cn, "admin");
  cr_assert_str_eq(f.peer_ou, "admin");
  cr_assert_not_null(f.request);
  cr_assert_eq(f.request->body_case, TUMA__V1__ADMIN_ENVELOPE__BODY_PARTICIPANT_CREATE);
  cr_assert_neq(f.request->correlation_id, 0);
  Tuma__V1__ParticipantCreate *pc = f.request->participant_create;
  cr_assert_str_eq(pc->participant_id, "mpesa-ke");
  cr_assert_str_eq(pc->name, "M-Pesa Kenya");
  cr_assert_eq(pc->n_currencies, 2);
  cr_assert_str_eq(pc->currencies[0], "KES");
  cr_assert_str_eq(pc->currencies[1], "UGX");
  cr_assert_not_null(strstr(r.out, "mpesa-ke"));
  fake_free(&f);

  FAKE(&f, FAKE_REFUSE, &r, "participant", "suspend", "mpesa-ke");
  cr_assert_eq(r.status, 1);
  cr_assert_not_null(strstr(r.err, "3106"), "%s", r.err);
  cr_assert_not_null(strstr(r.err, "modified request"), "%s", r.err);
  cr_assert_eq(f.request->body_case, TUMA__V1__ADMIN_ENVELOPE__BODY_PARTICIPANT_SET_STATUS);
  cr_assert_eq(f.request->participant_set_status->status,
               TUMA__V1__PARTICIPANT_STATUS__PARTICIPANT_STATUS_SUSPENDED);
  fake_free(&f);

  FAKE(&f, FAKE_OK, &r, "participant", "resume", "mpesa-ke");
  cr_assert_eq(r.status, 0, "%s", r.err);
  cr_assert_eq(f.request->participant_set_status->status,
               TUMA__V1__PARTICIPANT_STATUS__PARTICIPANT_STATUS_ACTIVE);
  fake_free(&f);

  FAKE(&f, FAKE_PARTICIPANTS, &r, "participant", "list");
  cr_assert_eq(r.status, 0, "%s", r.err);
  cr_assert_eq(f.request->body_case, TUMA__V1__ADMIN_ENVELOPE__BODY_PARTICIPANT_LIST);
  cr_assert_not_null(strstr(r.out, "CONNECTED"), "%s", r.out);
  cr_assert_not_null(strstr(r.out, "M-Pesa Kenya"), "%s", r.out);
  cr_assert_not_null(strstr(r.out, "KES,UGX"), "%s", r.out);
  cr_assert_not_null(strstr(r.out, "suspended"), "%s", r.out);
  fake_free(&f);

  /* A list request answered by a bare AdminResult is a protocol surprise, not success. */
  FAKE(&f, FAKE_OK, &r, "participant", "list");
  cr_assert_eq(r.status, 1);
  fake_free(&f);
}

Test(pki, admin_liquidity_ndc_positions_party_end_to_end) {
  fake_switch f;
  t_run r;
  FAKE(&f, FAKE_OK, &r, "liquidity", "deposit", "mpesa-ke", "150000", "KES", "--reason", "float");
  cr_assert_eq(r.status, 0, "%s", r.err);
  Tuma__V1__LiquidityAdjust *la = f.request->liquidity_adjust;
  cr_assert_eq(f.request->body_case, TUMA__V1__ADMIN_ENVELOPE__BODY_LIQUIDITY_ADJUST);
  cr_assert_eq(la->direction, TUMA__V1__LIQUIDITY_DIRECTION__LIQUIDITY_DIRECTION_DEPOSIT);
  cr_assert_eq(la->amount->amount, 150000);
  cr_assert_str_eq(la->amount->currency, "KES");
  cr_assert_str_eq(la->reason, "float");
  cr_assert_eq(la->adjustment_id.len, 16);
  char hex[33];
  for (int k = 0; k < 16; k++)
    snprintf(hex + 2 * k, 3, "%02x", la->adjustment_id.data[k]);
  cr_assert_not_null(strstr(r.out, hex), "the printed id is the one sent: %s vs %s", r.out, hex);
  cr_assert_eq(la->adjustment_id.data[6] >> 4, 7, "time-ordered (UUIDv7 layout)");
  fake_free(&f);

  FAKE(&f, FAKE_OK, &r, "liquidity", "withdraw", "mpesa-ke", "18446744073709551615", "UGX", "--id",
       "0123456789ABCDEF0123456789abcdef");
  cr_assert_eq(r.status, 0, "%s", r.err);
  la = f.request->liquidity_adjust;
  cr_assert_eq(la->direction, TUMA__V1__LIQUIDITY_DIRECTION__LIQUIDITY_DIRECTION_WITHDRAW);
  cr_assert_eq(la->amount->amount, UINT64_MAX);
  cr_assert_eq(la->adjustment_id.data[0], 0x01);
  cr_assert_eq(la->adjustment_id.data[15], 0xef);
  fake_free(&f);

  FAKE(&f, FAKE_OK, &r, "ndc", "set", "mpesa-ke", "0", "KES");
  cr_assert_eq(r.status, 0, "%s", r.err);
  cr_assert_eq(f.request->body_case, TUMA__V1__ADMIN_ENVELOPE__BODY_NET_DEBIT_CAP_SET);
  cr_assert_str_eq(f.request->net_debit_cap_set->participant_id, "mpesa-ke");
  cr_assert_eq(f.request->net_debit_cap_set->cap->amount, 0);
  fake_free(&f);

  FAKE(&f, FAKE_OK, &r, "ndc", "set", "mpesa-ke", "unlimited", "USD");
  cr_assert_eq(r.status, 0, "%s", r.err);
  cr_assert_eq(f.request->net_debit_cap_set->cap->amount, (uint64_t)INT64_MAX);
  fake_free(&f);

  /* A refusal is final: no advice to retry the adjustment. */
  FAKE(&f, FAKE_REFUSE, &r, "liquidity", "withdraw", "mpesa-ke", "5", "KES");
  cr_assert_eq(r.status, 1);
  cr_assert_not_null(strstr(r.err, "3106"), "%s", r.err);
  cr_assert_null(strstr(r.err, "retry"), "%s", r.err);
  fake_free(&f);

  FAKE(&f, FAKE_POSITIONS, &r, "positions", "mpesa-ke");
  cr_assert_eq(r.status, 0, "%s", r.err);
  cr_assert_str_eq(f.request->positions_query->participant_id, "mpesa-ke");
  cr_assert_not_null(strstr(r.out, "997500"), "%s", r.out);
  cr_assert_not_null(strstr(r.out, "-4200"), "%s", r.out);
  cr_assert_not_null(strstr(r.out, "unlimited"), "%s", r.out);
  cr_assert_null(strstr(r.out, "9223372036854775807"), "%s", r.out);
  fake_free(&f);

  FAKE(&f, FAKE_OK, &r, "party", "add", "msisdn", "254700123456", "mpesa-ke");
  cr_assert_eq(r.status, 0, "%s", r.err);
  Tuma__V1__PartyDirectoryUpsert *up = f.request->party_directory_upsert;
  cr_assert_eq(up->party->type, TUMA__V1__PARTY_ID_TYPE__PARTY_ID_TYPE_MSISDN);
  cr_assert_str_eq(up->party->id, "254700123456", "the switch gets the id unmasked");
  cr_assert_str_eq(up->participant_id, "mpesa-ke");
  cr_assert_null(strstr(r.out, "254700123456"), "%s", r.out);
  cr_assert_not_null(strstr(r.out, "254*******56"), "%s", r.out);
  fake_free(&f);

  FAKE(&f, FAKE_REFUSE, &r, "party", "remove", "national-id", "CM12345678");
  cr_assert_eq(r.status, 1);
  cr_assert_eq(f.request->party_directory_remove->party->type,
               TUMA__V1__PARTY_ID_TYPE__PARTY_ID_TYPE_NATIONAL_ID);
  cr_assert_null(strstr(r.err, "CM12345678"), "%s", r.err);
  fake_free(&f);
}

Test(pki, admin_client_checks_the_switch) {
  fake_switch f;
  t_run r;
  /* The switch is reached under a name its certificate does not carry. */
  FAKE(&f, FAKE_OK, &r, "participant", "list", "--server-name", "switch.example.com");
  cr_assert_eq(r.status, 1);
  cr_assert_not_null(strstr(r.err, "did not verify"), "%s", r.err);
  cr_assert_null(f.request);
  /* A reply with another correlation id is not taken for ours (the client then sees the
   * connection close without its answer). */
  FAKE(&f, FAKE_WRONG_ID, &r, "ndc", "set", "mpesa-ke", "5", "KES", "--timeout", "1");
  cr_assert_eq(r.status, 1);
  fake_free(&f);
  /* An operator certificate signed by another CA is refused by the switch. */
  char other[T_PATH];
  t_path(other, "other");
  T_TUMA(&r, "pki", "init", "--dir", other);
  cr_assert_eq(r.status, 0, "%s", r.err);
  T_TUMA(&r, "pki", "issue", "--dir", other, "--name", "admin", "--role", "admin");
  cr_assert_eq(r.status, 0, "%s", r.err);
  char cert[T_PATH], key[T_PATH];
  T_FMT(cert, "%s/admin.crt", other);
  T_FMT(key, "%s/admin.key", other);
  FAKE(&f, FAKE_OK, &r, "positions", "--cert", cert, "--key", key);
  cr_assert_eq(r.status, 1);
  cr_assert_not(f.handshake_ok);
  cr_assert_null(f.request);
}
