/* test_cli_args.c — unit suite for the `tuma` command's argument parsers (cli/args.c): AMOUNT
 * (decimal major units into minor units of a currency's exponent), DURATION (a whole number and
 * a unit s, m, h, d), TIME (RFC 3339 UTC, "now", "+DURATION"), their formatting back, and the
 * masking of beneficiary ids. Every malformed form must be refused with the right code. */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdint.h>
#include <string.h>

#include "cli.h"

TestSuite(cli_args);

/* ---- AMOUNT ---- */

static uint64_t amount_ok(const char *text, unsigned exponent) {
  uint64_t v = 12345;
  int rc = cli_parse_amount(text, exponent, &v);
  cr_assert_eq(rc, CLI_ARG_OK, "'%s' (exponent %u) refused: %s", text, exponent,
               cli_arg_strerror(rc));
  return v;
}

static void amount_bad(const char *text, unsigned exponent, int want) {
  uint64_t v = 777;
  int rc = cli_parse_amount(text, exponent, &v);
  cr_assert_eq(rc, want, "'%s' (exponent %u): got %d (%s), want %d (%s)", text, exponent, rc,
               cli_arg_strerror(rc), want, cli_arg_strerror(want));
  cr_assert_eq(v, 777, "a refused amount leaves *out alone");
}

Test(cli_args, amount_valid_forms) {
  cr_assert_eq(amount_ok("1500", 2), 150000);
  cr_assert_eq(amount_ok("1500.5", 2), 150050);
  cr_assert_eq(amount_ok("1500.50", 2), 150050);
  cr_assert_eq(amount_ok("0.01", 2), 1);
  cr_assert_eq(amount_ok("0", 2), 0);
  cr_assert_eq(amount_ok("007.10", 2), 710);
  cr_assert_eq(amount_ok("800", 0), 800);
  cr_assert_eq(amount_ok("1.234", 3), 1234);
  /* The largest: 2^64 - 1 minor units. */
  cr_assert_eq(amount_ok("184467440737095516.15", 2), UINT64_MAX);
  cr_assert_eq(amount_ok("18446744073709551615", 0), UINT64_MAX);
}

Test(cli_args, amount_malformed_refused) {
  amount_bad("", 2, CLI_ARG_EEMPTY);
  amount_bad(NULL, 2, CLI_ARG_EEMPTY);
  amount_bad("-1", 2, CLI_ARG_ESYNTAX);
  amount_bad("+1", 2, CLI_ARG_ESYNTAX);
  amount_bad("1e3", 2, CLI_ARG_ESYNTAX);
  amount_bad("1E3", 2, CLI_ARG_ESYNTAX);
  amount_bad("1.5e2", 2, CLI_ARG_ESYNTAX);
  amount_bad(".5", 2, CLI_ARG_ESYNTAX);
  amount_bad("5.", 2, CLI_ARG_ESYNTAX);
  amount_bad("1.2.3", 2, CLI_ARG_ESYNTAX);
  amount_bad(" 1", 2, CLI_ARG_ESYNTAX);
  amount_bad("1 ", 2, CLI_ARG_ESYNTAX);
  amount_bad("1,500.00", 2, CLI_ARG_ESYNTAX);
  amount_bad("0x10", 2, CLI_ARG_ESYNTAX);
  amount_bad("KES 10", 2, CLI_ARG_ESYNTAX);
  amount_bad("10KES", 2, CLI_ARG_ESYNTAX);
  amount_bad("nan", 2, CLI_ARG_ESYNTAX);
  amount_bad("inf", 2, CLI_ARG_ESYNTAX);
}

Test(cli_args, amount_too_many_decimals_refused) {
  amount_bad("1.005", 2, CLI_ARG_EDECIMALS);
  amount_bad("1.000", 2, CLI_ARG_EDECIMALS); /* even trailing zeros: say it as the currency does */
  amount_bad("1.0", 0, CLI_ARG_EDECIMALS);
  amount_bad("1.5", 0, CLI_ARG_EDECIMALS);
}

Test(cli_args, amount_overflow_refused) {
  amount_bad("184467440737095516.16", 2, CLI_ARG_ERANGE);
  amount_bad("184467440737095517", 2, CLI_ARG_ERANGE);
  amount_bad("18446744073709551616", 0, CLI_ARG_ERANGE);
  amount_bad("99999999999999999999999999999", 0, CLI_ARG_ERANGE);
  amount_bad("99999999999999999999999999999.99", 2, CLI_ARG_ERANGE);
}

Test(cli_args, amount_formatted_back) {
  char buf[32];
  cr_assert_str_eq(cli_format_amount(150050, 2, buf, sizeof buf), "1500.50");
  cr_assert_str_eq(cli_format_amount(1, 2, buf, sizeof buf), "0.01");
  cr_assert_str_eq(cli_format_amount(0, 2, buf, sizeof buf), "0.00");
  cr_assert_str_eq(cli_format_amount(800, 0, buf, sizeof buf), "800");
  cr_assert_str_eq(cli_format_amount(UINT64_MAX, 2, buf, sizeof buf), "184467440737095516.15");
  /* Round trip. */
  uint64_t v = 0;
  cr_assert_eq(cli_parse_amount(cli_format_amount(123456789, 3, buf, sizeof buf), 3, &v), 0);
  cr_assert_eq(v, 123456789);
}

/* ---- DURATION ---- */

static uint64_t duration_ok(const char *text) {
  uint64_t v = 0;
  int rc = cli_parse_duration(text, &v);
  cr_assert_eq(rc, CLI_ARG_OK, "'%s' refused: %s", text, cli_arg_strerror(rc));
  return v;
}

static void duration_bad(const char *text, int want) {
  uint64_t v = 777;
  int rc = cli_parse_duration(text, &v);
  cr_assert_eq(rc, want, "'%s': got %d (%s), want %d (%s)", text, rc, cli_arg_strerror(rc), want,
               cli_arg_strerror(want));
  cr_assert_eq(v, 777);
}

Test(cli_args, duration_valid_forms) {
  cr_assert_eq(duration_ok("90s"), 90000);
  cr_assert_eq(duration_ok("10m"), 600000);
  cr_assert_eq(duration_ok("1h"), 3600000);
  cr_assert_eq(duration_ok("7d"), 7ull * 86400000);
  cr_assert_eq(duration_ok("0s"), 0);
  cr_assert_eq(duration_ok("3s"), 3000);
}

Test(cli_args, duration_malformed_refused) {
  duration_bad("", CLI_ARG_EEMPTY);
  duration_bad(NULL, CLI_ARG_EEMPTY);
  duration_bad("10", CLI_ARG_EUNIT);
  duration_bad("10x", CLI_ARG_EUNIT);
  duration_bad("10ms", CLI_ARG_EUNIT);
  duration_bad("10S", CLI_ARG_EUNIT);
  duration_bad("1h30m", CLI_ARG_EUNIT);
  duration_bad("10w", CLI_ARG_EUNIT);
  duration_bad("s", CLI_ARG_ESYNTAX);
  duration_bad("-5s", CLI_ARG_ESYNTAX);
  duration_bad("+5s", CLI_ARG_ESYNTAX);
  duration_bad("1.5h", CLI_ARG_EUNIT);
  duration_bad(" 5s", CLI_ARG_ESYNTAX);
  duration_bad("5 s", CLI_ARG_EUNIT);
}

Test(cli_args, duration_overflow_refused) {
  duration_bad("18446744073709551616s", CLI_ARG_ERANGE);
  duration_bad("18446744073709551615s", CLI_ARG_ERANGE); /* times 1000 */
  duration_bad("213503982335d", CLI_ARG_ERANGE);         /* just over 2^64 ms */
  duration_bad("99999999999999999999999d", CLI_ARG_ERANGE);
  cr_assert_eq(duration_ok("213503982334d"), 213503982334ull * 86400000ull);
}

/* ---- TIME ---- */

static uint64_t time_ok(const char *text, uint64_t now) {
  uint64_t v = 0;
  int rc = cli_parse_time(text, now, &v);
  cr_assert_eq(rc, CLI_ARG_OK, "'%s' refused: %s", text, cli_arg_strerror(rc));
  return v;
}

static void time_bad(const char *text, int want) {
  uint64_t v = 777;
  int rc = cli_parse_time(text, 1000, &v);
  cr_assert_eq(rc, want, "'%s': got %d (%s), want %d (%s)", text, rc, cli_arg_strerror(rc), want,
               cli_arg_strerror(want));
  cr_assert_eq(v, 777);
}

Test(cli_args, time_valid_forms) {
  cr_assert_eq(time_ok("1970-01-01T00:00:00Z", 0), 0);
  cr_assert_eq(time_ok("2026-11-28T10:00:00Z", 0), 1795860000000ull);
  cr_assert_eq(time_ok("2026-11-28t10:00:00z", 0), 1795860000000ull);
  cr_assert_eq(time_ok("2026-11-28T10:00:00.5Z", 0), 1795860000500ull);
  cr_assert_eq(time_ok("2026-11-28T10:00:00.123Z", 0), 1795860000123ull);
  cr_assert_eq(time_ok("2024-02-29T23:59:59Z", 0), 1709251199000ull);
  cr_assert_eq(time_ok("2000-02-29T00:00:00Z", 0), 951782400000ull);
  cr_assert_eq(time_ok("now", 42), 42);
  cr_assert_eq(time_ok("+90s", 1000), 91000);
  cr_assert_eq(time_ok("+1d", 0), 86400000);
}

Test(cli_args, time_malformed_refused) {
  time_bad("", CLI_ARG_EEMPTY);
  time_bad(NULL, CLI_ARG_EEMPTY);
  time_bad("2026-11-28", CLI_ARG_ESYNTAX);
  time_bad("2026-11-28T10:00:00", CLI_ARG_ESYNTAX);       /* no zone */
  time_bad("2026-11-28T10:00:00+03:00", CLI_ARG_ESYNTAX); /* only UTC */
  time_bad("2026-11-28 10:00:00Z", CLI_ARG_ESYNTAX);
  time_bad("2026-11-28T10:00Z", CLI_ARG_ESYNTAX);
  time_bad("26-11-28T10:00:00Z", CLI_ARG_ESYNTAX);
  time_bad("2026-1-28T10:00:00Z", CLI_ARG_ESYNTAX);
  time_bad("2026-11-28T10:00:00.Z", CLI_ARG_ESYNTAX);
  time_bad("2026-11-28T10:00:00.1234Z", CLI_ARG_ESYNTAX);
  time_bad("2026-11-28T10:00:00ZZ", CLI_ARG_ESYNTAX);
  time_bad("-2026-11-28T10:00:00Z", CLI_ARG_ESYNTAX);
  time_bad("tomorrow", CLI_ARG_ESYNTAX);
  time_bad("Now", CLI_ARG_ESYNTAX);
  time_bad("+", CLI_ARG_EEMPTY);
  time_bad("+10", CLI_ARG_EUNIT);
  time_bad("+-10s", CLI_ARG_ESYNTAX);
  time_bad("+18446744073709551615d", CLI_ARG_ERANGE);
}

Test(cli_args, time_impossible_dates_refused) {
  time_bad("2026-13-01T00:00:00Z", CLI_ARG_EDATE);
  time_bad("2026-00-01T00:00:00Z", CLI_ARG_EDATE);
  time_bad("2026-02-29T00:00:00Z", CLI_ARG_EDATE);
  time_bad("1900-02-29T00:00:00Z", CLI_ARG_EDATE);
  time_bad("2026-04-31T00:00:00Z", CLI_ARG_EDATE);
  time_bad("2026-11-00T00:00:00Z", CLI_ARG_EDATE);
  time_bad("2026-11-28T24:00:00Z", CLI_ARG_EDATE);
  time_bad("2026-11-28T10:60:00Z", CLI_ARG_EDATE);
  time_bad("2026-11-28T10:00:60Z", CLI_ARG_EDATE);
  time_bad("1969-12-31T23:59:59Z", CLI_ARG_EDATE);
}

Test(cli_args, time_overflow_of_now_plus_duration_refused) {
  uint64_t v = 777;
  cr_assert_eq(cli_parse_time("+1s", UINT64_MAX - 10, &v), CLI_ARG_ERANGE);
  cr_assert_eq(v, 777);
}

Test(cli_args, time_formatted_back) {
  char buf[40];
  cr_assert_str_eq(cli_format_time(1795860000123ull, buf, sizeof buf), "2026-11-28T10:00:00.123Z");
  cr_assert_str_eq(cli_format_time(0, buf, sizeof buf), "1970-01-01T00:00:00.000Z");
  uint64_t v = 0;
  cr_assert_eq(cli_parse_time(cli_format_time(1709251199999ull, buf, sizeof buf), 0, &v), 0);
  cr_assert_eq(v, 1709251199999ull);
}

/* ---- masking ---- */

Test(cli_args, beneficiary_ids_masked) {
  char buf[64];
  cr_assert_str_eq(cli_mask_beneficiary("12345678", buf, sizeof buf), "123***78");
  cr_assert_str_eq(cli_mask_beneficiary("ID-2026-000123", buf, sizeof buf), "ID-*********23");
  cr_assert_str_eq(cli_mask_beneficiary("1234567", buf, sizeof buf), "*******");
  cr_assert_str_eq(cli_mask_beneficiary("AB", buf, sizeof buf), "**");
  cr_assert_str_eq(cli_mask_beneficiary("", buf, sizeof buf), "");
}
