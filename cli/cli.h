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

/* Errors of the AMOUNT, TIME and DURATION parsers below (0 = ok); cli_arg_strerror names them. */
typedef enum cli_arg_error {
  CLI_ARG_OK = 0,
  CLI_ARG_EEMPTY = 1,    /* nothing given */
  CLI_ARG_ESYNTAX = 2,   /* not of the form (a sign, an exponent, a space, a stray character) */
  CLI_ARG_EDECIMALS = 3, /* more decimals than the currency has */
  CLI_ARG_ERANGE = 4,    /* too large for 64 bits of minor units / milliseconds */
  CLI_ARG_EUNIT = 5,     /* a duration without one of the units s, m, h, d */
  CLI_ARG_EDATE = 6,     /* no such date or time of day (month 13, 30 February, 24:00) */
} cli_arg_error;

/* A static English sentence for a cli_arg_error; never NULL. */
const char *cli_arg_strerror(int err);

/* Parses AMOUNT, a decimal in major units ("1500", "1500.5", "1500.50"), into minor units of a
 * currency with `exponent` decimals (2 for KES, 0 for UGX): digits, then optionally '.' and 1 to
 * exponent digits. No sign, exponent, spaces or thousands separators. 0 is accepted (callers
 * that need more say so). Returns 0 and *out, or a CLI_ARG_E* code (*out untouched). */
int cli_parse_amount(const char *text, unsigned exponent, uint64_t *out);

/* Writes minor units as a decimal in major units with exactly `exponent` decimals ("1500.50",
 * "800" for exponent 0) into buf[cap] (truncating). Returns buf. */
char *cli_format_amount(uint64_t minor, unsigned exponent, char *buf, size_t cap);

/* Parses DURATION: a whole number followed by one unit, s, m, h or d ("90s", "10m", "7d"), into
 * milliseconds. 0 is accepted. Returns 0 and *out_ms, or a CLI_ARG_E* code. */
int cli_parse_duration(const char *text, uint64_t *out_ms);

/* Parses TIME into Unix milliseconds: RFC 3339 in UTC ("2026-11-28T10:00:00Z", optionally
 * with 1-3 fraction digits, "T" or "t", "Z" or "z"), "now" (= now_ms), or "+DURATION" (now_ms
 * plus the duration). Years 1970-9999. Returns 0 and *out_ms, or a CLI_ARG_E* code. */
int cli_parse_time(const char *text, uint64_t now_ms, uint64_t *out_ms);

/* Writes Unix milliseconds as RFC 3339 UTC with milliseconds ("2026-11-28T10:00:00.000Z") into
 * buf[cap] (truncating). Returns buf. */
char *cli_format_time(uint64_t ms, char *buf, size_t cap);

/* Milliseconds since the Unix epoch, from the real-time clock. */
uint64_t cli_now_ms(void);

/* The same for beneficiary ids (national, refugee ids …), which are masked whole when shorter
 * than 8 characters: a short id with 5 characters shown would give most of it away. */
char *cli_mask_beneficiary(const char *id, char *out, size_t cap);

/* Subcommands: argv[0] is the subcommand's name ("pki", "participant", …). Each returns one of
 * the CLI_EXIT_* codes. */
int cli_pki_main(int argc, char **argv);
int cli_participant_main(int argc, char **argv);
int cli_liquidity_main(int argc, char **argv);
int cli_ndc_main(int argc, char **argv);
int cli_positions_main(int argc, char **argv);
int cli_party_main(int argc, char **argv);
int cli_demo_main(int argc, char **argv);
int cli_disburse_main(int argc, char **argv);
int cli_audit_main(int argc, char **argv);  /* audit_cmd.c */
int cli_backup_main(int argc, char **argv); /* audit_cmd.c */

#endif
