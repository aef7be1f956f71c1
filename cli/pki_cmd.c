/* pki_cmd.c — `tuma pki init|issue|server|revoke|crl`: argument parsing and messages around
 * the scheme CA of pki.h. */
#include "cli.h"
#include "pki.h"

#include <stdio.h>
#include <string.h>

static const char pki_usage_text[] =
    "usage: tuma pki <command> [options]\n"
    "\n"
    "The scheme's certificate authority: ECDSA P-256 keys, TLS 1.3 mutual authentication.\n"
    "\n"
    "commands:\n"
    "  init     create the scheme CA and the switch's certificate\n"
    "  issue    issue a client certificate (operator, admin, programme-manager, approver)\n"
    "  server   re-issue the switch's certificate (e.g. with more host names)\n"
    "  revoke   revoke a certificate and rewrite the CRL\n"
    "  crl      rewrite the CRL (before its next-update time passes)\n"
    "\n"
    "Run 'tuma pki <command> --help' for a command's options.\n";

static const char pki_init_usage[] =
    "usage: tuma pki init --dir DIR [--days N] [--server-days N] [--scheme NAME] [--force]\n"
    "\n"
    "Creates a scheme CA and the switch's certificate in DIR (created with mode 0700):\n"
    "  DIR/ca.key, DIR/ca.crt          the CA (key mode 0600)\n"
    "  DIR/tumad.key, DIR/tumad.crt    the switch: CN=tumad, OU=switch, SAN DNS:localhost,\n"
    "                                  IP:127.0.0.1, IP:::1, serverAuth\n"
    "  DIR/issued.txt, DIR/revoked.txt, DIR/crl.pem\n"
    "\n"
    "  --dir DIR          where to write (required)\n"
    "  --days N           the CA's validity in days (default 3650)\n"
    "  --server-days N    the switch certificate's validity in days (default 825)\n"
    "  --scheme NAME      the organisation (O) of every certificate (default Tuma)\n"
    "  --force            replace an existing CA; every certificate it issued stops verifying\n";

static const char pki_issue_usage[] =
    "usage: tuma pki issue --dir DIR --name ID --role ROLE [--days N] [--out DIR2]\n"
    "                      [--not-before-days-ago N] [--force]\n"
    "\n"
    "Issues a client certificate signed by DIR's CA: DIR2/ID.key (mode 0600) and DIR2/ID.crt,\n"
    "CN=ID, OU=ROLE, clientAuth; recorded in DIR/issued.txt.\n"
    "\n"
    "  --dir DIR                  the CA's directory (required)\n"
    "  --name ID                  1-63 characters of a-z, 0-9 and '-', not starting with '-';\n"
    "                             for an operator, its participant id (required)\n"
    "  --role ROLE                operator, admin, programme-manager or approver (required)\n"
    "  --days N                   validity in days (default 365)\n"
    "  --out DIR2                 where to write the key and certificate (default DIR)\n"
    "  --not-before-days-ago N    start the validity N days ago (for tests: --days 1\n"
    "                             --not-before-days-ago 3 makes an expired certificate)\n"
    "  --force                    replace existing DIR2/ID.key and DIR2/ID.crt\n";

static const char pki_server_usage[] =
    "usage: tuma pki server --dir DIR [--days N] [--dns NAME]... [--ip ADDR]... [--force]\n"
    "\n"
    "Re-issues the switch's key and certificate, DIR/tumad.key and DIR/tumad.crt (CN=tumad,\n"
    "OU=switch, serverAuth), always valid for localhost, 127.0.0.1 and ::1.\n"
    "\n"
    "  --dir DIR     the CA's directory (required)\n"
    "  --days N      validity in days (default 825)\n"
    "  --dns NAME    another host name the switch is reached by (repeatable)\n"
    "  --ip ADDR     another IPv4 or IPv6 address the switch is reached by (repeatable)\n"
    "  --force       replace the existing tumad.key and tumad.crt\n";

static const char pki_revoke_usage[] =
    "usage: tuma pki revoke --dir DIR (--name ID | --serial HEX) [--crl-days N]\n"
    "\n"
    "Revokes certificates of DIR's CA: with --name, every certificate DIR/issued.txt lists for\n"
    "ID; with --serial, that one. Adds them to DIR/revoked.txt and rewrites DIR/crl.pem.\n"
    "\n"
    "  --dir DIR        the CA's directory (required)\n"
    "  --name ID        the certificate name (CN) to revoke\n"
    "  --serial HEX     the serial number to revoke (as 'openssl x509 -serial' prints it)\n"
    "  --crl-days N     the new CRL's validity in days (default 30)\n";

static const char pki_crl_usage[] =
    "usage: tuma pki crl --dir DIR [--days N]\n"
    "\n"
    "Rewrites DIR/crl.pem from DIR/revoked.txt, signed by DIR's CA. A CRL past its next-update\n"
    "time fails verification where CRLs are checked, so run this before it expires.\n"
    "\n"
    "  --dir DIR    the CA's directory (required)\n"
    "  --days N     the CRL's validity in days (default 30)\n";

/* Reports a usage error for cmd with its usage text and returns CLI_EXIT_USAGE. */
static int pki_usage_error(const char *cmd, const char *usage, const char *what, const char *arg) {
  fprintf(stderr, "tuma %s: %s%s%s\n%s", cmd, what, arg != NULL ? ": " : "", arg != NULL ? arg : "",
          usage);
  return CLI_EXIT_USAGE;
}

/* Prints a failed operation and maps it to an exit code (invalid arguments are usage errors). */
static int pki_report(const char *cmd, int rc, const pki_diag *diag) {
  fprintf(stderr, "tuma %s: %s\n", cmd, diag->text);
  return rc == PKI_EINVAL ? CLI_EXIT_USAGE : CLI_EXIT_FAIL;
}

static int pki_days_opt(const char *cmd, const char *name, const char *value, int *out) {
  return cli_parse_int(cmd, name, value, 1, PKI_MAX_DAYS, out);
}

static int pki_init_cmd(int argc, char **argv) {
  const char *cmd = "pki init", *v = NULL;
  pki_init_options o = {0};
  for (int i = 1; i < argc; i++) {
    int m;
    if (cli_is_help(argv[i])) {
      fputs(pki_init_usage, stdout);
      return CLI_EXIT_OK;
    } else if (cli_flag(argv, i, "--force")) {
      o.force = 1;
    } else if ((m = cli_opt(argc, argv, &i, cmd, "--dir", &v)) != 0) {
      if (m < 0)
        return CLI_EXIT_USAGE;
      o.dir = v;
    } else if ((m = cli_opt(argc, argv, &i, cmd, "--days", &v)) != 0) {
      if (m < 0 || pki_days_opt(cmd, "--days", v, &o.days) != 0)
        return CLI_EXIT_USAGE;
    } else if ((m = cli_opt(argc, argv, &i, cmd, "--server-days", &v)) != 0) {
      if (m < 0 || pki_days_opt(cmd, "--server-days", v, &o.server_days) != 0)
        return CLI_EXIT_USAGE;
    } else if ((m = cli_opt(argc, argv, &i, cmd, "--scheme", &v)) != 0) {
      if (m < 0)
        return CLI_EXIT_USAGE;
      o.scheme = v;
    } else {
      return pki_usage_error(cmd, pki_init_usage, "unexpected argument", argv[i]);
    }
  }
  if (o.dir == NULL)
    return pki_usage_error(cmd, pki_init_usage, "--dir is required", NULL);
  pki_diag diag = {""};
  int rc = pki_init(&o, &diag);
  if (rc != 0)
    return pki_report(cmd, rc, &diag);
  printf("created the scheme CA %s/ca.crt (key %s/ca.key) and the switch certificate "
         "%s/tumad.crt (key %s/tumad.key)\n",
         o.dir, o.dir, o.dir, o.dir);
  return CLI_EXIT_OK;
}

static int pki_issue_cmd(int argc, char **argv) {
  const char *cmd = "pki issue", *v = NULL;
  pki_issue_options o = {0};
  for (int i = 1; i < argc; i++) {
    int m;
    if (cli_is_help(argv[i])) {
      fputs(pki_issue_usage, stdout);
      return CLI_EXIT_OK;
    } else if (cli_flag(argv, i, "--force")) {
      o.force = 1;
    } else if ((m = cli_opt(argc, argv, &i, cmd, "--dir", &v)) != 0) {
      if (m < 0)
        return CLI_EXIT_USAGE;
      o.dir = v;
    } else if ((m = cli_opt(argc, argv, &i, cmd, "--name", &v)) != 0) {
      if (m < 0)
        return CLI_EXIT_USAGE;
      o.name = v;
    } else if ((m = cli_opt(argc, argv, &i, cmd, "--role", &v)) != 0) {
      if (m < 0)
        return CLI_EXIT_USAGE;
      o.role = v;
    } else if ((m = cli_opt(argc, argv, &i, cmd, "--out", &v)) != 0) {
      if (m < 0)
        return CLI_EXIT_USAGE;
      o.out = v;
    } else if ((m = cli_opt(argc, argv, &i, cmd, "--days", &v)) != 0) {
      if (m < 0 || pki_days_opt(cmd, "--days", v, &o.days) != 0)
        return CLI_EXIT_USAGE;
    } else if ((m = cli_opt(argc, argv, &i, cmd, "--not-before-days-ago", &v)) != 0) {
      if (m < 0 || cli_parse_int(cmd, "--not-before-days-ago", v, 0, PKI_MAX_DAYS,
                                 &o.not_before_days_ago) != 0)
        return CLI_EXIT_USAGE;
    } else {
      return pki_usage_error(cmd, pki_issue_usage, "unexpected argument", argv[i]);
    }
  }
  if (o.dir == NULL || o.name == NULL || o.role == NULL)
    return pki_usage_error(cmd, pki_issue_usage, "--dir, --name and --role are required", NULL);
  if (!pki_name_valid(o.name))
    return pki_usage_error(cmd, pki_issue_usage,
                           "--name must be 1-63 characters of a-z, 0-9 and '-', not starting "
                           "with '-'",
                           o.name);
  if (!pki_role_valid(o.role))
    return pki_usage_error(cmd, pki_issue_usage,
                           "--role must be operator, admin, programme-manager or approver", o.role);
  pki_diag diag = {""};
  int rc = pki_issue(&o, &diag);
  if (rc != 0)
    return pki_report(cmd, rc, &diag);
  const char *out = o.out != NULL ? o.out : o.dir;
  printf("issued %s (%s): %s/%s.crt, key %s/%s.key\n", o.name, o.role, out, o.name, out, o.name);
  return CLI_EXIT_OK;
}

static int pki_server_cmd(int argc, char **argv) {
  const char *cmd = "pki server", *v = NULL;
  pki_server_options o = {0};
  int ndns = 0, nip = 0;
  for (int i = 1; i < argc; i++) {
    int m;
    if (cli_is_help(argv[i])) {
      fputs(pki_server_usage, stdout);
      return CLI_EXIT_OK;
    } else if (cli_flag(argv, i, "--force")) {
      o.force = 1;
    } else if ((m = cli_opt(argc, argv, &i, cmd, "--dir", &v)) != 0) {
      if (m < 0)
        return CLI_EXIT_USAGE;
      o.dir = v;
    } else if ((m = cli_opt(argc, argv, &i, cmd, "--days", &v)) != 0) {
      if (m < 0 || pki_days_opt(cmd, "--days", v, &o.days) != 0)
        return CLI_EXIT_USAGE;
    } else if ((m = cli_opt(argc, argv, &i, cmd, "--dns", &v)) != 0) {
      if (m < 0)
        return CLI_EXIT_USAGE;
      if (ndns + 1 >= PKI_MAX_SANS)
        return pki_usage_error(cmd, pki_server_usage, "too many --dns names", v);
      o.dns[ndns++] = v;
    } else if ((m = cli_opt(argc, argv, &i, cmd, "--ip", &v)) != 0) {
      if (m < 0)
        return CLI_EXIT_USAGE;
      if (nip + 1 >= PKI_MAX_SANS)
        return pki_usage_error(cmd, pki_server_usage, "too many --ip addresses", v);
      o.ip[nip++] = v;
    } else {
      return pki_usage_error(cmd, pki_server_usage, "unexpected argument", argv[i]);
    }
  }
  if (o.dir == NULL)
    return pki_usage_error(cmd, pki_server_usage, "--dir is required", NULL);
  pki_diag diag = {""};
  int rc = pki_issue_server(&o, &diag);
  if (rc != 0)
    return pki_report(cmd, rc, &diag);
  printf("issued the switch certificate %s/tumad.crt (key %s/tumad.key)\n", o.dir, o.dir);
  return CLI_EXIT_OK;
}

static int pki_revoke_cmd(int argc, char **argv) {
  const char *cmd = "pki revoke", *v = NULL, *dir = NULL, *name = NULL, *serial = NULL;
  int crl_days = 0;
  for (int i = 1; i < argc; i++) {
    int m;
    if (cli_is_help(argv[i])) {
      fputs(pki_revoke_usage, stdout);
      return CLI_EXIT_OK;
    } else if ((m = cli_opt(argc, argv, &i, cmd, "--dir", &v)) != 0) {
      if (m < 0)
        return CLI_EXIT_USAGE;
      dir = v;
    } else if ((m = cli_opt(argc, argv, &i, cmd, "--name", &v)) != 0) {
      if (m < 0)
        return CLI_EXIT_USAGE;
      name = v;
    } else if ((m = cli_opt(argc, argv, &i, cmd, "--serial", &v)) != 0) {
      if (m < 0)
        return CLI_EXIT_USAGE;
      serial = v;
    } else if ((m = cli_opt(argc, argv, &i, cmd, "--crl-days", &v)) != 0) {
      if (m < 0 || pki_days_opt(cmd, "--crl-days", v, &crl_days) != 0)
        return CLI_EXIT_USAGE;
    } else {
      return pki_usage_error(cmd, pki_revoke_usage, "unexpected argument", argv[i]);
    }
  }
  if (dir == NULL || (name == NULL && serial == NULL))
    return pki_usage_error(cmd, pki_revoke_usage,
                           "--dir and one of --name or --serial are "
                           "required",
                           NULL);
  if (name != NULL && serial != NULL)
    return pki_usage_error(cmd, pki_revoke_usage, "give --name or --serial, not both", NULL);
  if (name != NULL && !pki_name_valid(name))
    return pki_usage_error(cmd, pki_revoke_usage, "--name is not a valid name", name);
  pki_diag diag = {""};
  int count = 0;
  int rc = pki_revoke(dir, name, serial, crl_days, &count, &diag);
  if (rc != 0)
    return pki_report(cmd, rc, &diag);
  if (count == 0)
    printf("already revoked; rewrote %s/crl.pem\n", dir);
  else
    printf("revoked %d certificate%s of %s; rewrote %s/crl.pem\n", count, count == 1 ? "" : "s",
           name != NULL ? name : serial, dir);
  return CLI_EXIT_OK;
}

static int pki_crl_cmd(int argc, char **argv) {
  const char *cmd = "pki crl", *v = NULL, *dir = NULL;
  int days = 0;
  for (int i = 1; i < argc; i++) {
    int m;
    if (cli_is_help(argv[i])) {
      fputs(pki_crl_usage, stdout);
      return CLI_EXIT_OK;
    } else if ((m = cli_opt(argc, argv, &i, cmd, "--dir", &v)) != 0) {
      if (m < 0)
        return CLI_EXIT_USAGE;
      dir = v;
    } else if ((m = cli_opt(argc, argv, &i, cmd, "--days", &v)) != 0) {
      if (m < 0 || pki_days_opt(cmd, "--days", v, &days) != 0)
        return CLI_EXIT_USAGE;
    } else {
      return pki_usage_error(cmd, pki_crl_usage, "unexpected argument", argv[i]);
    }
  }
  if (dir == NULL)
    return pki_usage_error(cmd, pki_crl_usage, "--dir is required", NULL);
  pki_diag diag = {""};
  int rc = pki_crl(dir, days, &diag);
  if (rc != 0)
    return pki_report(cmd, rc, &diag);
  printf("wrote %s/crl.pem\n", dir);
  return CLI_EXIT_OK;
}

int cli_pki_main(int argc, char **argv) {
  static const struct {
    const char *name;
    int (*run)(int argc, char **argv);
  } cmds[] = {
      {"init", pki_init_cmd},     {"issue", pki_issue_cmd}, {"server", pki_server_cmd},
      {"revoke", pki_revoke_cmd}, {"crl", pki_crl_cmd},
  };
  if (argc < 2) {
    fputs(pki_usage_text, stderr);
    return CLI_EXIT_USAGE;
  }
  if (cli_is_help(argv[1]) || strcmp(argv[1], "help") == 0) {
    fputs(pki_usage_text, stdout);
    return CLI_EXIT_OK;
  }
  for (size_t k = 0; k < sizeof cmds / sizeof cmds[0]; k++)
    if (strcmp(argv[1], cmds[k].name) == 0)
      return cmds[k].run(argc - 1, argv + 1);
  fprintf(stderr, "tuma pki: unknown command '%s'\n%s", argv[1], pki_usage_text);
  return CLI_EXIT_USAGE;
}
