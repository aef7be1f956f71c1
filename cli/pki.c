/* pki.c — the scheme CA behind `tuma pki`: ECDSA P-256 keys, X.509 v3 certificates for the
 * switch and its clients, the issued / revoked lists and the CRL. File layout in pki.h.
 * OpenSSL 3 EVP and X509 APIs only (no deprecated calls). */
#include "pki.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

enum {
  PKI_PATH_MAX = 4096,
  PKI_CA_DAYS = 3650,
  PKI_SERVER_DAYS = 825,
  PKI_CLIENT_DAYS = 365,
  PKI_CRL_DAYS = 30,
  PKI_SKEW_SECONDS = 300, /* notBefore lies this far in the past, for clocks that lag */
  PKI_SERIAL_BYTES = 16,
  PKI_SERIAL_HEX_MAX = 40, /* RFC 5280: at most 20 octets */
  PKI_LINE_MAX = 512,
};

static const char *const pki_roles[] = {"operator", "admin", "programme-manager", "approver"};

const char *pki_strerror(int err) {
  switch (err) {
  case PKI_OK:
    return "ok";
  case PKI_EINVAL:
    return "invalid argument";
  case PKI_EEXIST:
    return "file exists";
  case PKI_ENOENT:
    return "not found";
  case PKI_EIO:
    return "input/output error";
  case PKI_ECRYPTO:
    return "cryptographic operation failed";
  default:
    return "unknown error";
  }
}

/* ---- diagnostics ---- */

static int pki_fail(pki_diag *diag, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Fills diag with the formatted text and returns err. */
static int pki_fail(pki_diag *diag, int err, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(diag->text, sizeof diag->text, fmt, ap);
  va_end(ap);
  return err;
}

static int pki_fail_ssl(pki_diag *diag, const char *what) __attribute__((nonnull));

/* Fills diag with what and OpenSSL's most recent reason, empties OpenSSL's error queue, and
 * returns PKI_ECRYPTO. */
static int pki_fail_ssl(pki_diag *diag, const char *what) {
  unsigned long e = ERR_peek_last_error();
  char reason[256] = "no reason given";
  if (e != 0)
    ERR_error_string_n(e, reason, sizeof reason);
  ERR_clear_error();
  return pki_fail(diag, PKI_ECRYPTO, "%s: %s", what, reason);
}

static int pki_fail_errno(pki_diag *diag, const char *what, const char *path) {
  return pki_fail(diag, PKI_EIO, "%s %s: %s", what, path, strerror(errno));
}

/* ---- names ---- */

int pki_name_valid(const char *name) {
  if (name == NULL || name[0] == '\0' || name[0] == '-')
    return 0;
  size_t n = 0;
  for (const char *p = name; *p != '\0'; p++, n++) {
    char c = *p;
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'))
      return 0;
  }
  return n <= 63;
}

int pki_role_valid(const char *role) {
  if (role == NULL)
    return 0;
  for (size_t i = 0; i < sizeof pki_roles / sizeof pki_roles[0]; i++)
    if (strcmp(role, pki_roles[i]) == 0)
      return 1;
  return 0;
}

/* 1 if s is 1..max bytes with no control characters (so it fits one line and one X.509
 * attribute), else 0. */
static int pki_text_valid(const char *s, size_t max) {
  size_t n = strlen(s);
  if (n == 0 || n > max)
    return 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c < 0x20 || c == 0x7f)
      return 0;
  }
  return 1;
}

/* 1 if s is a host name fit for a DNS SAN: labels of [A-Za-z0-9-], dots, an optional leading
 * "*." wildcard, at most 253 characters. */
static int pki_dns_valid(const char *s) {
  size_t n = strlen(s);
  if (n == 0 || n > 253 || s[0] == '.' || s[0] == '-' || s[n - 1] == '.')
    return 0;
  if (s[0] == '*') {
    if (s[1] != '.' || s[2] == '\0')
      return 0;
    s += 2;
  }
  for (const char *p = s; *p != '\0'; p++) {
    char c = *p;
    int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
             c == '-' || (c == '.' && p[1] != '.');
    if (!ok)
      return 0;
  }
  return 1;
}

static int pki_ip_valid(const char *s) {
  unsigned char buf[16];
  return inet_pton(AF_INET, s, buf) == 1 || inet_pton(AF_INET6, s, buf) == 1;
}

/* ---- files ---- */

/* Writes dir/file into buf; -1 (with diag set) if it does not fit. */
static int pki_path(char *buf, size_t cap, const char *dir, const char *file, pki_diag *diag) {
  int n = snprintf(buf, cap, "%s/%s", dir, file);
  if (n < 0 || (size_t)n >= cap)
    return pki_fail(diag, PKI_EINVAL, "path too long: %s/%s", dir, file);
  return 0;
}

static int pki_exists(const char *path) {
  struct stat st;
  return stat(path, &st) == 0;
}

/* Creates dir and its missing parents with mode 0700. */
static int pki_mkdirs(const char *dir, pki_diag *diag) {
  char buf[PKI_PATH_MAX];
  size_t n = strlen(dir);
  if (n == 0)
    return pki_fail(diag, PKI_EINVAL, "empty directory name");
  if (n >= sizeof buf)
    return pki_fail(diag, PKI_EINVAL, "path too long: %s", dir);
  memcpy(buf, dir, n + 1);
  for (size_t i = 1; i <= n; i++) {
    if (buf[i] != '/' && buf[i] != '\0')
      continue;
    char saved = buf[i];
    buf[i] = '\0';
    if (mkdir(buf, 0700) != 0 && errno != EEXIST)
      return pki_fail_errno(diag, "cannot create directory", buf);
    buf[i] = saved;
  }
  struct stat st;
  if (stat(dir, &st) != 0)
    return pki_fail_errno(diag, "cannot open directory", dir);
  if (!S_ISDIR(st.st_mode))
    return pki_fail(diag, PKI_EIO, "%s is not a directory", dir);
  return 0;
}

/* Fsyncs the directory holding path, so a rename in it survives a crash. */
static int pki_sync_parent(const char *path, pki_diag *diag) {
  char dir[PKI_PATH_MAX];
  const char *slash = strrchr(path, '/');
  size_t n = slash == NULL ? 0 : (size_t)(slash - path);
  if (n == 0 && slash != NULL)
    n = 1; /* "/file" */
  if (n == 0) {
    dir[0] = '.';
    n = 1;
  } else {
    memcpy(dir, path, n);
  }
  dir[n] = '\0';
  int fd = open(dir, O_RDONLY | O_DIRECTORY);
  if (fd < 0)
    return pki_fail_errno(diag, "cannot open directory", dir);
  int rc = fsync(fd);
  close(fd);
  if (rc != 0)
    return pki_fail_errno(diag, "cannot sync directory", dir);
  return 0;
}

/* Replaces path with len bytes of data, atomically: a temporary file next to it with the given
 * mode, fsync, rename, fsync of the directory. Cost: two fsyncs. */
static int pki_write_file(const char *path, const void *data, size_t len, mode_t mode,
                          pki_diag *diag) {
  char tmp[PKI_PATH_MAX];
  int n = snprintf(tmp, sizeof tmp, "%s.tmp.XXXXXX", path);
  if (n < 0 || (size_t)n >= sizeof tmp)
    return pki_fail(diag, PKI_EINVAL, "path too long: %s", path);
  int fd = mkstemp(tmp); /* mode 0600 */
  if (fd < 0)
    return pki_fail_errno(diag, "cannot create", tmp);
  const unsigned char *p = data;
  size_t left = len;
  while (left > 0) {
    ssize_t w = write(fd, p, left);
    if (w < 0 && errno == EINTR)
      continue;
    if (w <= 0)
      goto err;
    p += w;
    left -= (size_t)w;
  }
  if (fchmod(fd, mode) != 0 || fsync(fd) != 0)
    goto err;
  if (close(fd) != 0) {
    fd = -1;
    goto err;
  }
  fd = -1;
  if (rename(tmp, path) != 0)
    goto err;
  return pki_sync_parent(path, diag);
err:;
  int rc = pki_fail_errno(diag, "cannot write", path);
  if (fd >= 0)
    close(fd);
  unlink(tmp);
  return rc;
}

/* Reads all of path into a fresh NUL-terminated buffer the caller frees. A missing file reads
 * as empty when missing_ok. */
static int pki_read_file(const char *path, int missing_ok, char **out, pki_diag *diag) {
  *out = NULL;
  FILE *f = fopen(path, "r");
  if (f == NULL) {
    if (errno == ENOENT && missing_ok) {
      *out = calloc(1, 1);
      return *out == NULL ? pki_fail(diag, PKI_EIO, "out of memory") : 0;
    }
    return pki_fail_errno(diag, "cannot open", path);
  }
  size_t cap = 4096, len = 0;
  char *buf = malloc(cap);
  if (buf == NULL)
    goto nomem;
  for (;;) {
    if (cap - len < 2) {
      char *bigger = realloc(buf, cap * 2);
      if (bigger == NULL)
        goto nomem;
      buf = bigger;
      cap *= 2;
    }
    size_t r = fread(buf + len, 1, cap - len - 1, f);
    len += r;
    if (r == 0)
      break;
  }
  if (ferror(f)) {
    int rc = pki_fail_errno(diag, "cannot read", path);
    free(buf);
    fclose(f);
    return rc;
  }
  fclose(f);
  buf[len] = '\0';
  *out = buf;
  return 0;
nomem:
  free(buf);
  fclose(f);
  return pki_fail(diag, PKI_EIO, "out of memory reading %s", path);
}

/* Appends one line to path (created 0644 if missing) and syncs it. */
static int pki_append_line(const char *path, const char *line, pki_diag *diag) {
  int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0)
    return pki_fail_errno(diag, "cannot open", path);
  size_t len = strlen(line);
  ssize_t w = write(fd, line, len);
  int ok = w == (ssize_t)len && fsync(fd) == 0;
  int rc = ok ? 0 : pki_fail_errno(diag, "cannot append to", path);
  if (close(fd) != 0 && rc == 0)
    rc = pki_fail_errno(diag, "cannot append to", path);
  return rc;
}

/* Writes the PEM form of a private key (PKCS#8, unencrypted, mode 0600) or a certificate or a
 * CRL (mode 0644) to path, atomically. Exactly one of key, cert, crl is non-NULL. */
static int pki_write_pem(const char *path, EVP_PKEY *key, X509 *cert, X509_CRL *crl,
                         pki_diag *diag) {
  BIO *mem = BIO_new(BIO_s_mem());
  if (mem == NULL)
    return pki_fail_ssl(diag, "cannot allocate a buffer");
  int ok;
  if (key != NULL)
    ok = PEM_write_bio_PrivateKey(mem, key, NULL, NULL, 0, NULL, NULL);
  else if (cert != NULL)
    ok = PEM_write_bio_X509(mem, cert);
  else
    ok = PEM_write_bio_X509_CRL(mem, crl);
  int rc;
  if (!ok) {
    rc = pki_fail_ssl(diag, "cannot encode PEM");
  } else {
    char *data = NULL;
    long len = BIO_get_mem_data(mem, &data);
    rc = len <= 0 ? pki_fail_ssl(diag, "cannot encode PEM")
                  : pki_write_file(path, data, (size_t)len, key != NULL ? 0600 : 0644, diag);
  }
  BIO_free(mem);
  return rc;
}

/* ---- certificates ---- */

/* What goes into one certificate. */
typedef struct pki_cert_spec {
  const char *o, *ou, *cn;
  int is_ca;
  int eku_nid;     /* NID_server_auth, NID_client_auth, or 0 for none */
  const char *san; /* OpenSSL's "DNS:…,IP:…" form, or NULL */
  int days;
  int backdate_days;
} pki_cert_spec;

static EVP_PKEY *pki_keygen(void) {
  return EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
}

/* Sets a fresh random positive 128-bit serial number. */
static int pki_set_serial(X509 *x, pki_diag *diag) {
  unsigned char raw[PKI_SERIAL_BYTES];
  BIGNUM *bn = NULL;
  int rc = 0;
  do {
    if (RAND_bytes(raw, sizeof raw) != 1)
      return pki_fail_ssl(diag, "cannot draw a serial number");
    BN_free(bn);
    bn = BN_bin2bn(raw, sizeof raw, NULL);
    if (bn == NULL)
      return pki_fail_ssl(diag, "cannot make a serial number");
  } while (BN_is_zero(bn));
  if (BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) == NULL)
    rc = pki_fail_ssl(diag, "cannot set the serial number");
  BN_free(bn);
  return rc;
}

/* Adds one extension in OpenSSL's configuration syntax (e.g. "critical,CA:FALSE"). */
static int pki_add_ext(X509 *x, X509V3_CTX *ctx, int nid, const char *value, pki_diag *diag) {
  X509_EXTENSION *ext = X509V3_EXT_nconf_nid(NULL, ctx, nid, value);
  if (ext == NULL)
    return pki_fail_ssl(diag, "cannot build a certificate extension");
  int ok = X509_add_ext(x, ext, -1);
  X509_EXTENSION_free(ext);
  return ok ? 0 : pki_fail_ssl(diag, "cannot add a certificate extension");
}

static int pki_name_add(X509_NAME *name, const char *field, const char *value) {
  return X509_NAME_add_entry_by_txt(name, field, MBSTRING_UTF8, (const unsigned char *)value, -1,
                                    -1, 0);
}

/* Builds and signs a certificate for key. issuer/issuer_key NULL = self-signed with key.
 * Refuses (PKI_EINVAL) a certificate that would outlive its issuer. *out is the caller's. */
static int pki_cert_make(const pki_cert_spec *s, EVP_PKEY *key, X509 *issuer, EVP_PKEY *issuer_key,
                         X509 **out, pki_diag *diag) {
  *out = NULL;
  int rc = 0;
  X509 *x = X509_new();
  X509_NAME *name = X509_NAME_new();
  if (x == NULL || name == NULL) {
    rc = pki_fail_ssl(diag, "cannot allocate a certificate");
    goto done;
  }
  if (!X509_set_version(x, X509_VERSION_3)) {
    rc = pki_fail_ssl(diag, "cannot set the certificate version");
    goto done;
  }
  if ((rc = pki_set_serial(x, diag)) != 0)
    goto done;
  if (!pki_name_add(name, "O", s->o) || !pki_name_add(name, "OU", s->ou) ||
      !pki_name_add(name, "CN", s->cn) || !X509_set_subject_name(x, name)) {
    rc = pki_fail_ssl(diag, "cannot set the subject name");
    goto done;
  }
  X509_NAME *issuer_name = issuer != NULL ? X509_get_subject_name(issuer) : name;
  if (!X509_set_issuer_name(x, issuer_name)) {
    rc = pki_fail_ssl(diag, "cannot set the issuer name");
    goto done;
  }
  time_t now = time(NULL);
  time_t start = now - (s->backdate_days > 0 ? (time_t)s->backdate_days * 86400 : PKI_SKEW_SECONDS);
  if (X509_time_adj_ex(X509_getm_notBefore(x), 0, 0, &start) == NULL ||
      X509_time_adj_ex(X509_getm_notAfter(x), s->days, 0, &start) == NULL) {
    rc = pki_fail_ssl(diag, "cannot set the validity period");
    goto done;
  }
  if (issuer != NULL) {
    /* By a few seconds (a CA and a certificate made with the same validity a moment apart) the
     * end is moved back to the CA's; by more, the request is refused. */
    int over_days = 0, over_secs = 0;
    if (!ASN1_TIME_diff(&over_days, &over_secs, X509_get0_notAfter(issuer),
                        X509_get0_notAfter(x))) {
      rc = pki_fail_ssl(diag, "cannot compare validity periods");
      goto done;
    }
    long over = (long)over_days * 86400 + over_secs;
    if (over > 86400) {
      rc = pki_fail(diag, PKI_EINVAL,
                    "a certificate valid for %d days would outlive the CA; ask for fewer days",
                    s->days);
      goto done;
    }
    if (over > 0 && !X509_set1_notAfter(x, X509_get0_notAfter(issuer))) {
      rc = pki_fail_ssl(diag, "cannot set the validity period");
      goto done;
    }
  }
  if (!X509_set_pubkey(x, key)) {
    rc = pki_fail_ssl(diag, "cannot set the public key");
    goto done;
  }
  X509V3_CTX ctx;
  X509V3_set_ctx(&ctx, issuer != NULL ? issuer : x, x, NULL, NULL, 0);
  const char *bc = s->is_ca ? "critical,CA:TRUE,pathlen:0" : "critical,CA:FALSE";
  const char *ku = s->is_ca ? "critical,keyCertSign,cRLSign" : "critical,digitalSignature";
  if ((rc = pki_add_ext(x, &ctx, NID_basic_constraints, bc, diag)) != 0 ||
      (rc = pki_add_ext(x, &ctx, NID_key_usage, ku, diag)) != 0 ||
      (rc = pki_add_ext(x, &ctx, NID_subject_key_identifier, "hash", diag)) != 0 ||
      (rc = pki_add_ext(x, &ctx, NID_authority_key_identifier, "keyid:always", diag)) != 0)
    goto done;
  if (s->eku_nid != 0) {
    const char *eku = s->eku_nid == NID_server_auth ? "serverAuth" : "clientAuth";
    if ((rc = pki_add_ext(x, &ctx, NID_ext_key_usage, eku, diag)) != 0)
      goto done;
  }
  if (s->san != NULL && (rc = pki_add_ext(x, &ctx, NID_subject_alt_name, s->san, diag)) != 0)
    goto done;
  if (X509_sign(x, issuer_key != NULL ? issuer_key : key, EVP_sha256()) <= 0) {
    rc = pki_fail_ssl(diag, "cannot sign the certificate");
    goto done;
  }
  *out = x;
  x = NULL;
done:
  X509_NAME_free(name);
  X509_free(x);
  return rc;
}

/* The serial number of x in upper-case hexadecimal, into buf. */
static int pki_serial_hex(const X509 *x, char *buf, size_t cap, pki_diag *diag) {
  BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
  char *hex = bn != NULL ? BN_bn2hex(bn) : NULL;
  int rc = 0;
  if (hex == NULL)
    rc = pki_fail_ssl(diag, "cannot read the serial number");
  else if (snprintf(buf, cap, "%s", hex) >= (int)cap)
    rc = pki_fail(diag, PKI_ECRYPTO, "serial number too long");
  OPENSSL_free(hex);
  BN_free(bn);
  return rc;
}

/* Formats t as 2026-01-31T12:00:00Z into buf (at least 21 bytes). */
static int pki_time_text(const ASN1_TIME *t, char *buf, size_t cap, pki_diag *diag) {
  struct tm tm;
  if (!ASN1_TIME_to_tm(t, &tm))
    return pki_fail_ssl(diag, "cannot read a certificate time");
  if (strftime(buf, cap, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
    return pki_fail(diag, PKI_ECRYPTO, "cannot format a certificate time");
  return 0;
}

/* Appends x to dir/issued.txt under name and role. */
static int pki_record_issued(const char *dir, const X509 *x, const char *name, const char *role,
                             pki_diag *diag) {
  char path[PKI_PATH_MAX], serial[PKI_SERIAL_HEX_MAX + 8], until[32], line[PKI_LINE_MAX];
  int rc;
  if ((rc = pki_path(path, sizeof path, dir, "issued.txt", diag)) != 0 ||
      (rc = pki_serial_hex(x, serial, sizeof serial, diag)) != 0 ||
      (rc = pki_time_text(X509_get0_notAfter(x), until, sizeof until, diag)) != 0)
    return rc;
  snprintf(line, sizeof line, "%s %s %s %s\n", serial, name, role, until);
  return pki_append_line(path, line, diag);
}

/* Loads dir's CA certificate and key and checks that they belong together. Both out
 * parameters are the caller's on success, NULL on failure. */
static int pki_ca_load(const char *dir, X509 **cert, EVP_PKEY **key, pki_diag *diag) {
  *cert = NULL;
  *key = NULL;
  char crt_path[PKI_PATH_MAX], key_path[PKI_PATH_MAX];
  int rc;
  if ((rc = pki_path(crt_path, sizeof crt_path, dir, "ca.crt", diag)) != 0 ||
      (rc = pki_path(key_path, sizeof key_path, dir, "ca.key", diag)) != 0)
    return rc;
  if (!pki_exists(crt_path) || !pki_exists(key_path))
    return pki_fail(diag, PKI_ENOENT, "no CA in %s (create one with: tuma pki init --dir %s)", dir,
                    dir);
  BIO *b = BIO_new_file(crt_path, "r");
  X509 *c = b != NULL ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
  BIO_free(b);
  if (c == NULL)
    return pki_fail_ssl(diag, "cannot read the CA certificate");
  b = BIO_new_file(key_path, "r");
  EVP_PKEY *k = b != NULL ? PEM_read_bio_PrivateKey(b, NULL, NULL, NULL) : NULL;
  BIO_free(b);
  if (k == NULL) {
    X509_free(c);
    return pki_fail_ssl(diag, "cannot read the CA key");
  }
  if (X509_check_private_key(c, k) != 1) {
    X509_free(c);
    EVP_PKEY_free(k);
    ERR_clear_error();
    return pki_fail(diag, PKI_ECRYPTO, "%s does not belong to %s", key_path, crt_path);
  }
  *cert = c;
  *key = k;
  return 0;
}

/* The CA's organisation (the scheme name) into buf. */
static int pki_ca_scheme(X509 *ca, char *buf, size_t cap, pki_diag *diag) {
  if (X509_NAME_get_text_by_NID(X509_get_subject_name(ca), NID_organizationName, buf, (int)cap) <=
      0)
    return pki_fail(diag, PKI_ECRYPTO, "the CA certificate has no organisation (O) name");
  return 0;
}

/* Generates a key, issues a certificate for it from ca/ca_key, and writes key_path (0600)
 * then crt_path. *serial_out (may be NULL) gets the new certificate, the caller's. */
static int pki_issue_pair(const pki_cert_spec *s, X509 *ca, EVP_PKEY *ca_key, const char *key_path,
                          const char *crt_path, X509 **cert_out, pki_diag *diag) {
  X509 *x = NULL;
  EVP_PKEY *key = pki_keygen();
  int rc;
  if (key == NULL)
    return pki_fail_ssl(diag, "cannot generate a P-256 key");
  if ((rc = pki_cert_make(s, key, ca, ca_key, &x, diag)) != 0 ||
      (rc = pki_write_pem(key_path, key, NULL, NULL, diag)) != 0 ||
      (rc = pki_write_pem(crt_path, NULL, x, NULL, diag)) != 0)
    goto done;
  if (cert_out != NULL) {
    *cert_out = x;
    x = NULL;
  }
done:
  X509_free(x);
  EVP_PKEY_free(key);
  return rc;
}

/* ---- revocation lists ---- */

/* One line of revoked.txt. */
typedef struct pki_revoked {
  char serial[PKI_SERIAL_HEX_MAX + 1];
  long long when;
  char name[64];
} pki_revoked;

typedef struct pki_revoked_list {
  pki_revoked *items;
  size_t n, cap;
} pki_revoked_list;

/* Normalises a hexadecimal serial (any case, optional leading zeros, optional ':' separators)
 * to OpenSSL's upper-case form into out (PKI_SERIAL_HEX_MAX + 1 bytes). */
static int pki_serial_normalise(const char *in, char *out, pki_diag *diag) {
  char clean[2 * PKI_SERIAL_HEX_MAX + 1];
  size_t n = 0;
  for (const char *p = in; *p != '\0'; p++) {
    if (*p == ':')
      continue;
    int hex = (*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f') || (*p >= 'A' && *p <= 'F');
    if (!hex || n + 1 >= sizeof clean)
      return pki_fail(diag, PKI_EINVAL,
                      "'%s' is not a serial number (hexadecimal, at most %d "
                      "digits)",
                      in, PKI_SERIAL_HEX_MAX);
    clean[n++] = *p;
  }
  clean[n] = '\0';
  if (n == 0)
    return pki_fail(diag, PKI_EINVAL, "empty serial number");
  BIGNUM *bn = NULL;
  if (BN_hex2bn(&bn, clean) == 0)
    return pki_fail_ssl(diag, "cannot parse a serial number");
  char *hex = BN_bn2hex(bn);
  BN_free(bn);
  if (hex == NULL)
    return pki_fail_ssl(diag, "cannot format a serial number");
  int rc = 0;
  if (strlen(hex) > PKI_SERIAL_HEX_MAX)
    rc = pki_fail(diag, PKI_EINVAL, "serial number %s is longer than 20 bytes", in);
  else
    strcpy(out, hex);
  OPENSSL_free(hex);
  return rc;
}

static int pki_revoked_push(pki_revoked_list *l, const pki_revoked *r, pki_diag *diag) {
  if (l->n == l->cap) {
    size_t cap = l->cap == 0 ? 16 : l->cap * 2;
    pki_revoked *bigger = realloc(l->items, cap * sizeof *bigger);
    if (bigger == NULL)
      return pki_fail(diag, PKI_EIO, "out of memory");
    l->items = bigger;
    l->cap = cap;
  }
  l->items[l->n++] = *r;
  return 0;
}

static int pki_revoked_has(const pki_revoked_list *l, const char *serial) {
  for (size_t i = 0; i < l->n; i++)
    if (strcmp(l->items[i].serial, serial) == 0)
      return 1;
  return 0;
}

/* Reads dir/revoked.txt (missing = empty) into l, which the caller frees (items). */
static int pki_revoked_load(const char *dir, pki_revoked_list *l, pki_diag *diag) {
  char path[PKI_PATH_MAX];
  char *text = NULL;
  int rc;
  if ((rc = pki_path(path, sizeof path, dir, "revoked.txt", diag)) != 0 ||
      (rc = pki_read_file(path, 1, &text, diag)) != 0)
    return rc;
  int lineno = 0;
  char *save = NULL;
  for (char *line = strtok_r(text, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save)) {
    lineno++;
    if (line[0] == '#' || line[0] == '\0')
      continue;
    char serial[2 * PKI_SERIAL_HEX_MAX + 1], name[64] = "-";
    long long when = 0;
    pki_revoked r;
    if (sscanf(line, "%80s %lld %63s", serial, &when, name) < 2 ||
        pki_serial_normalise(serial, r.serial, diag) != 0) {
      rc = pki_fail(diag, PKI_EIO, "%s:%d: not \"<serial hex> <unix time> <name>\"", path, lineno);
      break;
    }
    r.when = when;
    snprintf(r.name, sizeof r.name, "%s", name);
    if ((rc = pki_revoked_push(l, &r, diag)) != 0)
      break;
  }
  free(text);
  return rc;
}

/* Rewrites dir/revoked.txt from l. */
static int pki_revoked_save(const char *dir, const pki_revoked_list *l, pki_diag *diag) {
  char path[PKI_PATH_MAX];
  int rc = pki_path(path, sizeof path, dir, "revoked.txt", diag);
  if (rc != 0)
    return rc;
  size_t cap = 128 + l->n * (sizeof(pki_revoked) + 32);
  char *buf = malloc(cap);
  if (buf == NULL)
    return pki_fail(diag, PKI_EIO, "out of memory");
  size_t len = (size_t)snprintf(buf, cap, "# serial (hex) revoked-at (unix seconds) name\n");
  for (size_t i = 0; i < l->n; i++)
    len += (size_t)snprintf(buf + len, cap - len, "%s %lld %s\n", l->items[i].serial,
                            l->items[i].when, l->items[i].name);
  rc = pki_write_file(path, buf, len, 0644, diag);
  free(buf);
  return rc;
}

/* Adds one revoked entry to crl. */
static int pki_crl_add(X509_CRL *crl, const pki_revoked *r, pki_diag *diag) {
  BIGNUM *bn = NULL;
  ASN1_INTEGER *serial = NULL;
  ASN1_TIME *when = NULL;
  X509_REVOKED *rev = X509_REVOKED_new();
  time_t t = (time_t)r->when;
  int rc = 0;
  if (rev == NULL || BN_hex2bn(&bn, r->serial) == 0 ||
      (serial = BN_to_ASN1_INTEGER(bn, NULL)) == NULL ||
      (when = X509_time_adj_ex(NULL, 0, 0, &t)) == NULL ||
      !X509_REVOKED_set_serialNumber(rev, serial) || !X509_REVOKED_set_revocationDate(rev, when) ||
      !X509_CRL_add0_revoked(crl, rev)) {
    rc = pki_fail_ssl(diag, "cannot add a revoked certificate to the CRL");
    X509_REVOKED_free(rev);
  }
  ASN1_TIME_free(when);
  ASN1_INTEGER_free(serial);
  BN_free(bn);
  return rc;
}

/* Writes dir/crl.pem for ca, listing l, valid from now for days. */
static int pki_crl_write(const char *dir, X509 *ca, EVP_PKEY *ca_key, const pki_revoked_list *l,
                         int days, pki_diag *diag) {
  char path[PKI_PATH_MAX];
  int rc = pki_path(path, sizeof path, dir, "crl.pem", diag);
  if (rc != 0)
    return rc;
  time_t now = time(NULL);
  X509_CRL *crl = X509_CRL_new();
  ASN1_TIME *t = ASN1_TIME_new();
  ASN1_INTEGER *number = ASN1_INTEGER_new();
  X509_EXTENSION *akid = NULL;
  if (crl == NULL || t == NULL || number == NULL ||
      !X509_CRL_set_version(crl, X509_CRL_VERSION_2) ||
      !X509_CRL_set_issuer_name(crl, X509_get_subject_name(ca)) ||
      X509_time_adj_ex(t, 0, 0, &now) == NULL || !X509_CRL_set1_lastUpdate(crl, t) ||
      X509_time_adj_ex(t, days, 0, &now) == NULL || !X509_CRL_set1_nextUpdate(crl, t) ||
      !ASN1_INTEGER_set_int64(number, (int64_t)now) ||
      !X509_CRL_add1_ext_i2d(crl, NID_crl_number, number, 0, 0)) {
    rc = pki_fail_ssl(diag, "cannot build the CRL");
    goto done;
  }
  X509V3_CTX ctx;
  X509V3_set_ctx(&ctx, ca, NULL, NULL, crl, 0);
  akid = X509V3_EXT_nconf_nid(NULL, &ctx, NID_authority_key_identifier, "keyid:always");
  if (akid == NULL || !X509_CRL_add_ext(crl, akid, -1)) {
    rc = pki_fail_ssl(diag, "cannot add the CRL's authority key identifier");
    goto done;
  }
  for (size_t i = 0; i < l->n; i++)
    if ((rc = pki_crl_add(crl, &l->items[i], diag)) != 0)
      goto done;
  if (!X509_CRL_sort(crl) || X509_CRL_sign(crl, ca_key, EVP_sha256()) <= 0) {
    rc = pki_fail_ssl(diag, "cannot sign the CRL");
    goto done;
  }
  rc = pki_write_pem(path, NULL, NULL, crl, diag);
done:
  X509_EXTENSION_free(akid);
  ASN1_INTEGER_free(number);
  ASN1_TIME_free(t);
  X509_CRL_free(crl);
  return rc;
}

/* ---- the operations ---- */

static int pki_days_check(int days, const char *what, pki_diag *diag) {
  if (days < 0 || days > PKI_MAX_DAYS)
    return pki_fail(diag, PKI_EINVAL, "%s must be between 1 and %d days", what, PKI_MAX_DAYS);
  return 0;
}

int pki_issue_server(const pki_server_options *o, pki_diag *diag) {
  int rc;
  if (o->dir == NULL)
    return pki_fail(diag, PKI_EINVAL, "no directory given");
  if ((rc = pki_days_check(o->days, "the switch certificate's validity", diag)) != 0)
    return rc;
  char san[PKI_LINE_MAX * 4] = "DNS:localhost,IP:127.0.0.1,IP:::1";
  size_t len = strlen(san);
  for (int i = 0; i < PKI_MAX_SANS && o->dns[i] != NULL; i++) {
    if (!pki_dns_valid(o->dns[i]))
      return pki_fail(diag, PKI_EINVAL, "'%s' is not a host name", o->dns[i]);
    len += (size_t)snprintf(san + len, sizeof san - len, ",DNS:%s", o->dns[i]);
  }
  for (int i = 0; i < PKI_MAX_SANS && o->ip[i] != NULL; i++) {
    if (!pki_ip_valid(o->ip[i]))
      return pki_fail(diag, PKI_EINVAL, "'%s' is not an IPv4 or IPv6 address", o->ip[i]);
    len += (size_t)snprintf(san + len, sizeof san - len, ",IP:%s", o->ip[i]);
  }
  if (len >= sizeof san)
    return pki_fail(diag, PKI_EINVAL, "too many subject alternative names");
  char key_path[PKI_PATH_MAX], crt_path[PKI_PATH_MAX], scheme[256];
  if ((rc = pki_path(key_path, sizeof key_path, o->dir, "tumad.key", diag)) != 0 ||
      (rc = pki_path(crt_path, sizeof crt_path, o->dir, "tumad.crt", diag)) != 0)
    return rc;
  if (!o->force && (pki_exists(key_path) || pki_exists(crt_path)))
    return pki_fail(diag, PKI_EEXIST, "%s already exists (use --force to replace it)", crt_path);
  X509 *ca = NULL, *x = NULL;
  EVP_PKEY *ca_key = NULL;
  if ((rc = pki_ca_load(o->dir, &ca, &ca_key, diag)) != 0 ||
      (rc = pki_ca_scheme(ca, scheme, sizeof scheme, diag)) != 0)
    goto done;
  pki_cert_spec spec = {.o = scheme,
                        .ou = "switch",
                        .cn = "tumad",
                        .eku_nid = NID_server_auth,
                        .san = san,
                        .days = o->days != 0 ? o->days : PKI_SERVER_DAYS};
  if ((rc = pki_issue_pair(&spec, ca, ca_key, key_path, crt_path, &x, diag)) != 0 ||
      (rc = pki_record_issued(o->dir, x, "tumad", "switch", diag)) != 0)
    goto done;
done:
  X509_free(x);
  X509_free(ca);
  EVP_PKEY_free(ca_key);
  return rc;
}

int pki_init(const pki_init_options *o, pki_diag *diag) {
  static const char *const files[] = {"ca.key", "ca.crt", "tumad.key", "tumad.crt"};
  const char *scheme = o->scheme != NULL ? o->scheme : "Tuma";
  int rc;
  if (o->dir == NULL)
    return pki_fail(diag, PKI_EINVAL, "no directory given");
  if (!pki_text_valid(scheme, 64))
    return pki_fail(diag, PKI_EINVAL, "the scheme name must be 1-64 printable characters");
  if ((rc = pki_days_check(o->days, "the CA's validity", diag)) != 0 ||
      (rc = pki_days_check(o->server_days, "the switch certificate's validity", diag)) != 0)
    return rc;
  if ((rc = pki_mkdirs(o->dir, diag)) != 0)
    return rc;
  char path[PKI_PATH_MAX], ca_key_path[PKI_PATH_MAX], ca_crt_path[PKI_PATH_MAX];
  for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
    if ((rc = pki_path(path, sizeof path, o->dir, files[i], diag)) != 0)
      return rc;
    if (!o->force && pki_exists(path))
      return pki_fail(diag, PKI_EEXIST,
                      "%s already exists; use --force to replace the CA (every certificate it "
                      "issued will stop verifying)",
                      path);
  }
  if ((rc = pki_path(ca_key_path, sizeof ca_key_path, o->dir, "ca.key", diag)) != 0 ||
      (rc = pki_path(ca_crt_path, sizeof ca_crt_path, o->dir, "ca.crt", diag)) != 0)
    return rc;

  char cn[128];
  snprintf(cn, sizeof cn, "%s scheme CA", scheme);
  pki_cert_spec spec = {
      .o = scheme, .ou = "ca", .cn = cn, .is_ca = 1, .days = o->days != 0 ? o->days : PKI_CA_DAYS};
  X509 *ca = NULL;
  EVP_PKEY *ca_key = pki_keygen();
  pki_revoked_list none = {0};
  if (ca_key == NULL)
    return pki_fail_ssl(diag, "cannot generate a P-256 key");
  if ((rc = pki_cert_make(&spec, ca_key, NULL, NULL, &ca, diag)) != 0 ||
      (rc = pki_write_pem(ca_key_path, ca_key, NULL, NULL, diag)) != 0 ||
      (rc = pki_write_pem(ca_crt_path, NULL, ca, NULL, diag)) != 0)
    goto done;
  /* A new CA starts with empty lists: the old serials mean nothing to it. */
  static const char issued_head[] = "# serial (hex) name role not-after\n";
  if ((rc = pki_path(path, sizeof path, o->dir, "issued.txt", diag)) != 0 ||
      (rc = pki_write_file(path, issued_head, sizeof issued_head - 1, 0644, diag)) != 0 ||
      (rc = pki_revoked_save(o->dir, &none, diag)) != 0 ||
      (rc = pki_crl_write(o->dir, ca, ca_key, &none, PKI_CRL_DAYS, diag)) != 0)
    goto done;
  /* Left to the default, the switch certificate lives no longer than the CA. */
  int ca_days = spec.days;
  int server_days = o->server_days != 0 ? o->server_days
                                        : (ca_days < PKI_SERVER_DAYS ? ca_days : PKI_SERVER_DAYS);
  pki_server_options so = {.dir = o->dir, .days = server_days, .force = 1};
  rc = pki_issue_server(&so, diag);
done:
  X509_free(ca);
  EVP_PKEY_free(ca_key);
  return rc;
}

int pki_issue(const pki_issue_options *o, pki_diag *diag) {
  int rc;
  if (o->dir == NULL)
    return pki_fail(diag, PKI_EINVAL, "no CA directory given");
  if (!pki_name_valid(o->name))
    return pki_fail(diag, PKI_EINVAL,
                    "'%s' is not a valid name: 1-63 characters of a-z, 0-9 and '-', not starting "
                    "with '-'",
                    o->name != NULL ? o->name : "");
  if (strcmp(o->name, "ca") == 0 || strcmp(o->name, "tumad") == 0)
    return pki_fail(diag, PKI_EINVAL, "'%s' is reserved (the CA's and the switch's files)",
                    o->name);
  if (!pki_role_valid(o->role))
    return pki_fail(diag, PKI_EINVAL,
                    "'%s' is not a role: operator, admin, programme-manager or approver",
                    o->role != NULL ? o->role : "");
  if ((rc = pki_days_check(o->days, "--days", diag)) != 0 ||
      (rc = pki_days_check(o->not_before_days_ago, "--not-before-days-ago", diag)) != 0)
    return rc;
  const char *out = o->out != NULL ? o->out : o->dir;
  X509 *ca = NULL, *x = NULL;
  EVP_PKEY *ca_key = NULL;
  char scheme[256], key_path[PKI_PATH_MAX], crt_path[PKI_PATH_MAX], file[80];
  if ((rc = pki_ca_load(o->dir, &ca, &ca_key, diag)) != 0 ||
      (rc = pki_ca_scheme(ca, scheme, sizeof scheme, diag)) != 0 ||
      (rc = pki_mkdirs(out, diag)) != 0)
    goto done;
  snprintf(file, sizeof file, "%s.key", o->name);
  if ((rc = pki_path(key_path, sizeof key_path, out, file, diag)) != 0)
    goto done;
  snprintf(file, sizeof file, "%s.crt", o->name);
  if ((rc = pki_path(crt_path, sizeof crt_path, out, file, diag)) != 0)
    goto done;
  if (!o->force && (pki_exists(key_path) || pki_exists(crt_path))) {
    rc = pki_fail(diag, PKI_EEXIST, "%s already exists (use --force to replace it)",
                  pki_exists(crt_path) ? crt_path : key_path);
    goto done;
  }
  pki_cert_spec spec = {.o = scheme,
                        .ou = o->role,
                        .cn = o->name,
                        .eku_nid = NID_client_auth,
                        .days = o->days != 0 ? o->days : PKI_CLIENT_DAYS,
                        .backdate_days = o->not_before_days_ago};
  if ((rc = pki_issue_pair(&spec, ca, ca_key, key_path, crt_path, &x, diag)) != 0 ||
      (rc = pki_record_issued(o->dir, x, o->name, o->role, diag)) != 0)
    goto done;
done:
  X509_free(x);
  X509_free(ca);
  EVP_PKEY_free(ca_key);
  return rc;
}

int pki_crl(const char *dir, int crl_days, pki_diag *diag) {
  int rc;
  if (dir == NULL)
    return pki_fail(diag, PKI_EINVAL, "no CA directory given");
  if ((rc = pki_days_check(crl_days, "the CRL's validity", diag)) != 0)
    return rc;
  X509 *ca = NULL;
  EVP_PKEY *ca_key = NULL;
  pki_revoked_list l = {0};
  if ((rc = pki_ca_load(dir, &ca, &ca_key, diag)) != 0 ||
      (rc = pki_revoked_load(dir, &l, diag)) != 0)
    goto done;
  rc = pki_crl_write(dir, ca, ca_key, &l, crl_days != 0 ? crl_days : PKI_CRL_DAYS, diag);
done:
  free(l.items);
  X509_free(ca);
  EVP_PKEY_free(ca_key);
  return rc;
}

int pki_revoke(const char *dir, const char *name, const char *serial_hex, int crl_days, int *count,
               pki_diag *diag) {
  int rc, added = 0, matched = 0, serial_seen = 0;
  if (count != NULL)
    *count = 0;
  if (dir == NULL)
    return pki_fail(diag, PKI_EINVAL, "no CA directory given");
  if (name == NULL && serial_hex == NULL)
    return pki_fail(diag, PKI_EINVAL, "say which certificate: a name or a serial number");
  if (name != NULL && !pki_name_valid(name))
    return pki_fail(diag, PKI_EINVAL, "'%s' is not a valid name", name);
  if ((rc = pki_days_check(crl_days, "the CRL's validity", diag)) != 0)
    return rc;
  char want[PKI_SERIAL_HEX_MAX + 1] = "";
  if (serial_hex != NULL && (rc = pki_serial_normalise(serial_hex, want, diag)) != 0)
    return rc;

  X509 *ca = NULL;
  EVP_PKEY *ca_key = NULL;
  pki_revoked_list l = {0};
  char *issued = NULL, path[PKI_PATH_MAX];
  if ((rc = pki_ca_load(dir, &ca, &ca_key, diag)) != 0 ||
      (rc = pki_revoked_load(dir, &l, diag)) != 0 ||
      (rc = pki_path(path, sizeof path, dir, "issued.txt", diag)) != 0 ||
      (rc = pki_read_file(path, 1, &issued, diag)) != 0)
    goto done;
  long long now = (long long)time(NULL);
  char *save = NULL;
  for (char *line = strtok_r(issued, "\n", &save); line != NULL;
       line = strtok_r(NULL, "\n", &save)) {
    char serial_text[2 * PKI_SERIAL_HEX_MAX + 1], who[64];
    pki_revoked r = {.when = now};
    if (line[0] == '#' || sscanf(line, "%80s %63s", serial_text, who) != 2 ||
        pki_serial_normalise(serial_text, r.serial, diag) != 0)
      continue;
    int serial_hit = want[0] != '\0' && strcmp(r.serial, want) == 0;
    serial_seen |= serial_hit;
    if (!serial_hit && (name == NULL || strcmp(who, name) != 0))
      continue;
    matched++;
    if (pki_revoked_has(&l, r.serial))
      continue;
    snprintf(r.name, sizeof r.name, "%s", who);
    if ((rc = pki_revoked_push(&l, &r, diag)) != 0)
      goto done;
    added++;
  }
  /* A serial the list does not know (issued elsewhere by this CA) is revoked all the same. */
  if (want[0] != '\0' && !serial_seen) {
    pki_revoked r = {.when = now};
    snprintf(r.serial, sizeof r.serial, "%s", want);
    snprintf(r.name, sizeof r.name, "%s", name != NULL ? name : "-");
    if (!pki_revoked_has(&l, want)) {
      if ((rc = pki_revoked_push(&l, &r, diag)) != 0)
        goto done;
      added++;
    }
    matched++;
  }
  if (matched == 0) {
    rc = pki_fail(diag, PKI_ENOENT, "%s/issued.txt lists no certificate for '%s'", dir,
                  name != NULL ? name : want);
    goto done;
  }
  if ((added > 0 && (rc = pki_revoked_save(dir, &l, diag)) != 0) ||
      (rc = pki_crl_write(dir, ca, ca_key, &l, crl_days != 0 ? crl_days : PKI_CRL_DAYS, diag)) != 0)
    goto done;
  if (count != NULL)
    *count = added;
done:
  free(issued);
  free(l.items);
  X509_free(ca);
  EVP_PKEY_free(ca_key);
  return rc;
}
