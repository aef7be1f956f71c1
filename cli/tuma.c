/* tuma.c — the `tuma` command: the scheme operator's tool. main() looks the first word up in
 * the table of subcommands and hands it the rest of argv; each subcommand validates its own
 * arguments (exit 2 on a usage error) before touching files or the network. */
#include "cli.h"
#include "operator.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>

typedef struct tuma_command {
  const char *name;
  int (*run)(int argc, char **argv); /* argv[0] is the command's name */
  const char *summary;
} tuma_command;

static const tuma_command tuma_commands[] = {
    {"pki", cli_pki_main, "the scheme CA: init, issue, server, revoke, crl"},
    {"participant", cli_participant_main, "create, suspend, resume, list participants"},
    {"liquidity", cli_liquidity_main, "deposit to or withdraw from a participant's liquidity"},
    {"ndc", cli_ndc_main, "set a participant's net debit cap"},
    {"positions", cli_positions_main, "show participants' positions"},
    {"party", cli_party_main, "add or remove a party in the directory"},
    {"disburse", cli_disburse_main, "programmes, beneficiaries and batches of disbursements"},
    {"op", cli_op_main, "act as an operator: receive, send or query transfers"},
    {"demo", cli_demo_main, "the switch and three simulated operators at work, for a minute"},
    {"audit", cli_audit_main, "verify, export, replay the ledger journal; checkpoint keys"},
    {"backup", cli_backup_main, "hot, consistent backup of a data directory"},
};

static void tuma_usage(FILE *out) {
  fputs("usage: tuma <command> [arguments]\n"
        "\n"
        "The scheme operator's tool for the Tuma payment switch.\n"
        "\n"
        "commands:\n",
        out);
  for (size_t k = 0; k < sizeof tuma_commands / sizeof tuma_commands[0]; k++)
    fprintf(out, "  %-12s %s\n", tuma_commands[k].name, tuma_commands[k].summary);
  fputs("\n"
        "Run 'tuma <command> --help' for a command's arguments. Exit status: 0 done, 1 failed\n"
        "or refused, 2 usage error.\n",
        out);
}

int main(int argc, char **argv) {
  /* A switch that hangs up mid-write must give an error message, not a silent death. */
  signal(SIGPIPE, SIG_IGN);
  if (argc < 2) {
    tuma_usage(stderr);
    return CLI_EXIT_USAGE;
  }
  const char *word = argv[1];
  if (cli_is_help(word) || strcmp(word, "help") == 0) {
    tuma_usage(stdout);
    return CLI_EXIT_OK;
  }
  if (strcmp(word, "--version") == 0) {
    printf("tuma %s\n", TUMA_VERSION);
    return CLI_EXIT_OK;
  }
  for (size_t k = 0; k < sizeof tuma_commands / sizeof tuma_commands[0]; k++)
    if (strcmp(word, tuma_commands[k].name) == 0)
      return tuma_commands[k].run(argc - 1, argv + 1);
  fprintf(stderr, "tuma: unknown command '%s'\n", word);
  tuma_usage(stderr);
  return CLI_EXIT_USAGE;
}
