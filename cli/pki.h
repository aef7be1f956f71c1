/* pki.h — the scheme's small certificate authority, behind `tuma pki`.
 *
 * One directory holds the scheme CA and the switch's server certificate:
 *   ca.key       the CA's private key (PEM, PKCS#8, mode 0600)
 *   ca.crt       the CA's self-signed certificate (PEM)
 *   tumad.key    the switch's private key (mode 0600)
 *   tumad.crt    the switch's certificate: CN=tumad, OU=switch, SAN DNS:localhost,
 *                IP:127.0.0.1, IP:::1 (plus any extra names asked for), EKU serverAuth
 *   issued.txt   one line per certificate issued: "<serial hex> <name> <role> <notAfter>"
 *   revoked.txt  one line per revoked certificate: "<serial hex> <unix time> <name>"
 *   crl.pem      the CA's current certificate revocation list (PEM)
 * Client certificates (operators, admins, programme managers, approvers) are written as
 * <out>/<name>.key and <out>/<name>.crt, with CN=<name>, OU=<role>, EKU clientAuth.
 *
 * Keys are ECDSA P-256, signatures ECDSA with SHA-256, serial numbers 128 random bits; every
 * certificate carries the CA's O (the scheme name). Files are written atomically (a temporary
 * file, fsync, rename), keys with mode 0600; directories that do not exist are created with
 * mode 0700. Nothing here keeps state between calls and nothing is global, so calls may run on
 * any thread (OpenSSL 3 is thread-safe).
 *
 * Every function returns 0 (PKI_OK) or a PKI_E* code and, on failure, fills *diag with a
 * sentence for a human (including OpenSSL's reason where there is one).
 */
#ifndef TUMA_CLI_PKI_H
#define TUMA_CLI_PKI_H

#include <stddef.h>

enum {
  PKI_OK = 0,
  PKI_EINVAL = 1, /* a bad argument (name, role, number of days, address) */
  PKI_EEXIST = 2, /* a file that would be overwritten exists and force was not given */
  PKI_ENOENT = 3, /* the CA (or a certificate to revoke) does not exist */
  PKI_EIO = 4,    /* a file or directory could not be read or written */
  PKI_ECRYPTO = 5 /* OpenSSL failed (key generation, signing, parsing, a key that does not
                     match its certificate) */
};

/* A static English name for a PKI_E* code. */
const char *pki_strerror(int err);

/* What went wrong, for a human. */
typedef struct pki_diag {
  char text[512];
} pki_diag;

/* Upper bounds for the validity options, in days. */
enum { PKI_MAX_DAYS = 36500, PKI_MAX_SANS = 16 };

/* 1 if name is a valid participant / certificate name: 1–63 characters of [a-z0-9-], not
 * starting with '-'; otherwise 0. The names "ca" and "tumad" are valid here but reserved by
 * pki_issue (they would collide with the CA's and the switch's files). */
int pki_name_valid(const char *name);

/* 1 if role is one of the client roles pki_issue accepts: operator, admin, programme-manager,
 * approver; otherwise 0. */
int pki_role_valid(const char *role);

typedef struct pki_init_options {
  const char *dir;    /* where to write; created (0700) if missing */
  const char *scheme; /* the O of every certificate, e.g. "Tuma"; NULL = "Tuma" */
  int days;           /* the CA's validity; 0 = 3650 */
  int server_days;    /* the switch certificate's validity; 0 = 825, or the CA's if shorter */
  int force;          /* replace an existing CA (and forget issued.txt / revoked.txt) */
} pki_init_options;

/* Creates a new scheme CA in o->dir (ca.key, ca.crt), an empty issued.txt and revoked.txt, an
 * empty crl.pem, and the switch's key and certificate (tumad.key, tumad.crt). Refuses with
 * PKI_EEXIST if ca.key or ca.crt exists and o->force is 0. Cost: two key generations and a few
 * signatures (milliseconds). */
int pki_init(const pki_init_options *o, pki_diag *diag);

typedef struct pki_server_options {
  const char *dir;               /* the CA's directory; tumad.key/.crt are written there */
  int days;                      /* 0 = 825 */
  const char *dns[PKI_MAX_SANS]; /* extra SAN host names (beside localhost); NULL-ended */
  const char *ip[PKI_MAX_SANS];  /* extra SAN addresses (beside 127.0.0.1, ::1); NULL-ended */
  int force;                     /* replace an existing tumad.key / tumad.crt */
} pki_server_options;

/* Issues a new key and certificate for the switch (CN=tumad, OU=switch, serverAuth) signed by
 * the CA in o->dir. Used by pki_init; on its own it re-issues the switch certificate, e.g. with
 * the host names of a real deployment. PKI_EEXIST if tumad.crt or tumad.key exists and
 * o->force is 0; PKI_ENOENT if there is no CA. */
int pki_issue_server(const pki_server_options *o, pki_diag *diag);

typedef struct pki_issue_options {
  const char *dir;         /* the CA's directory */
  const char *out;         /* where <name>.key and <name>.crt go; NULL = dir; created if missing */
  const char *name;        /* CN, see pki_name_valid; not "ca" nor "tumad" */
  const char *role;        /* OU, see pki_role_valid */
  int days;                /* validity; 0 = 365 */
  int not_before_days_ago; /* backdates notBefore by this many days (notAfter = notBefore +
                              days), so tests can make expired certificates; 0 = now, less a
                              five-minute allowance for clock skew */
  int force;               /* replace existing <name>.key / <name>.crt */
} pki_issue_options;

/* Issues a client certificate signed by the CA in o->dir and records it in issued.txt.
 * PKI_EINVAL for a bad name, role or number of days; PKI_ENOENT if there is no CA;
 * PKI_EEXIST if the files exist and o->force is 0. */
int pki_issue(const pki_issue_options *o, pki_diag *diag);

/* Revokes, in the CA of dir, every certificate issued.txt lists for name (when name is not
 * NULL) and the certificate with serial serial_hex (when not NULL; hexadecimal, any case), adds
 * them to revoked.txt and rewrites crl.pem valid for crl_days (0 = 30). *count (may be NULL)
 * gets the number of certificates newly revoked. PKI_ENOENT if nothing matched;
 * revoking a certificate already revoked is not an error (it is not counted). */
int pki_revoke(const char *dir, const char *name, const char *serial_hex, int crl_days, int *count,
               pki_diag *diag);

/* Rewrites dir/crl.pem from revoked.txt, valid from now for crl_days (0 = 30) days. Run it
 * before the CRL's nextUpdate passes. */
int pki_crl(const char *dir, int crl_days, pki_diag *diag);

#endif
