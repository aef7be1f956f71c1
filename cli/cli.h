/* cli.h — what the `tuma` command's parts share: exit codes, option parsing, argument
 * validation, masking of party ids, and each subcommand's entry point (listed in tuma.c's
 * table). Everything here writes its complaints to stderr, prefixed with the command.
 */
#ifndef TUMA_CLI_H
#define TUMA_CLI_H

#include <stddef.h>
#include <stdint.h>

/* Exit codes of every subcommand. */
enum {
  CLI_EXIT_OK = 0,
  CLI_EXIT_FAIL = 1,  /* the request was refused or could not be carried out */
  CLI_EXIT_USAGE = 2, /* bad arguments; nothing was attempted */
};

/* Matches argv[*i] against option name ("--days"): as "--days VALUE" (consuming the next word,
 * *i advances) or "--days=VALUE". Returns 1 and sets *value (borrowed from argv) on a match, 0
 * if argv[*i] is another word, -1 (after a message for cmd) when the value is missing. */
int cli_opt(int argc, char **argv, int *i, const char *cmd, const char *name, const char **value);

/* 1 if argv[i] is exactly flag ("--force"), else 0. */
int cli_flag(char **argv, int i, const char *flag);

/* 1 if word is "--help" or "-h". */
int cli_is_help(const char *word);

/* Parses text as a whole decimal number in [min, max]: digits only (no sign, no spaces). 0 or
 * -1 after a message naming cmd and what. */
int cli_parse_u64(const char *cmd, const char *what, const char *text, uint64_t min, uint64_t max,
                  uint64_t *out);

/* The same into an int. */
int cli_parse_int(const char *cmd, const char *what, const char *text, int min, int max, int *out);

/* 1 if id is a participant id (the certificate CN): 1–63 of [a-z0-9-], not starting '-'. */
int cli_participant_id_valid(const char *id);

/* 1 if code is three upper-case ASCII letters (an ISO 4217 alphabetic code). */
int cli_currency_valid(const char *code);

/* 1 if text is 1..max bytes of valid UTF-8 with no control characters. */
int cli_text_valid(const char *text, size_t max);

/* Parses exactly 2n hex digits (any case) into out[0..n); 0, or -1 if text is not that. */
int cli_parse_hex(const char *text, uint8_t *out, size_t n);

/* 1 if the n bytes are all zero. */
int cli_all_zero(const uint8_t *b, size_t n);

/* A fresh time-ordered id in the UUIDv7 layout: 48-bit Unix milliseconds (big endian), then
 * random bits (with RFC 9562's version and variant bits). 0, or -1 if randomness failed. */
int cli_new_id(uint8_t out[16]);

/* Writes id masked for printing into out (cap bytes, truncating): the first 3 and the last 2
 * characters kept, every other one replaced by '*'; ids of 5 characters or fewer are masked
 * whole. Returns out. */
char *cli_mask(const char *id, char *out, size_t cap);

/* Subcommands: argv[0] is the subcommand's name ("pki", "participant", …). Each returns one of
 * the CLI_EXIT_* codes. */
int cli_pki_main(int argc, char **argv);
int cli_participant_main(int argc, char **argv);
int cli_liquidity_main(int argc, char **argv);
int cli_ndc_main(int argc, char **argv);
int cli_positions_main(int argc, char **argv);
int cli_party_main(int argc, char **argv);
int cli_demo_main(int argc, char **argv);
int cli_audit_main(int argc, char **argv);  /* audit_cmd.c */
int cli_backup_main(int argc, char **argv); /* audit_cmd.c */

#endif
