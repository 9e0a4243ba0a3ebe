/* test_util.c — RFC 3339 parsing/formatting, UTF-8 validation, files. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "util.h"

static void test_time_roundtrip(void **state)
{
	int64_t us;
	char buf[UTIL_TIME_LEN];

	(void)state;
	assert_int_equal(util_time_parse("2026-11-29T04:00:00Z", &us), 0);
	assert_int_equal(us, 1795924800LL * 1000000);
	assert_int_equal(util_time_format(us, false, buf), 0);
	assert_string_equal(buf, "2026-11-29T04:00:00Z");
	assert_int_equal(util_time_parse("2026-11-29T05:30:00.5+01:30", &us), 0);
	assert_int_equal(util_time_format(us, true, buf), 0);
	assert_string_equal(buf, "2026-11-29T04:00:00.500000Z");
	assert_int_equal(util_time_parse("2021-01-26T20:33:57.7220239Z", &us), 0);
	assert_int_equal(us % 1000000, 722023);
}

/* The hand-written formatter against strftime + printf, over times from
 * year 0 to 9999 and before 1970 (negative microseconds). */
static void test_time_format_matches(void **state)
{
	uint64_t x = 0x243f6a8885a308d3ULL;
	char got[UTIL_TIME_LEN], want[96];
	const int64_t lo = -62167219200LL, hi = 253402300799LL; /* 0000-01-01 .. 9999-12-31 */

	(void)state;
	for (int i = 0; i < 200000; i++) {
		int64_t secs, us, frac;
		time_t t;
		struct tm tm;
		char date[64];

		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		secs = lo + (int64_t)(x % (uint64_t)(hi - lo + 1));
		frac = (int64_t)((x >> 20) % 1000000);
		if (i < 4) /* the edges */
			secs = i == 0 ? lo : i == 1 ? hi : i == 2 ? -1 : 0;
		us = secs * 1000000 + frac;
		t = (time_t)secs;
		assert_non_null(gmtime_r(&t, &tm));
		strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%S", &tm);
		if (tm.tm_year + 1900 < 1000) /* %Y does not pad */
			snprintf(date, sizeof(date), "%04d-%02d-%02dT%02d:%02d:%02d", tm.tm_year + 1900,
				 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
		assert_int_equal(util_time_format(us, false, got), 0);
		snprintf(want, sizeof(want), "%sZ", date);
		assert_string_equal(got, want);
		assert_int_equal(util_time_format(us, true, got), 0);
		snprintf(want, sizeof(want), "%s.%06lldZ", date, (long long)frac);
		assert_string_equal(got, want);
	}
	assert_int_equal(util_time_format((hi + 1) * 1000000, false, got), -EINVAL);
	assert_int_equal(util_time_format((lo - 1) * 1000000, false, got), -EINVAL);
}

static void test_time_rejects(void **state)
{
	int64_t us;
	static const char *bad[] = {
		"", "2026-11-29", "2026-11-29T04:00:00", "2026-13-01T00:00:00Z",
		"2026-02-29T00:00:00Z", "2026-11-29T24:00:00Z", "2026-11-29T04:00:00Zjunk",
		"2026-11-29T04:00:00.Z", "tomorrow", "2026-11-29T04:00:00+1:00",
	};

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(util_time_parse(bad[i], &us), -EINVAL);
	assert_int_equal(util_time_parse("2024-02-29T00:00:00Z", &us), 0);
}

static void test_parse_dec(void **state)
{
	uint64_t v = 7;

	assert_int_equal(util_parse_dec("0", 1, &v), 0);
	assert_true(v == 0);
	assert_int_equal(util_parse_dec("18446744073709551615", 20, &v), 0);
	assert_true(v == UINT64_MAX);
	assert_int_equal(util_parse_dec("18446744073709551616", 20, &v), -EINVAL);
	assert_int_equal(util_parse_dec("012", 3, &v), -EINVAL);
	assert_int_equal(util_parse_dec("", 0, &v), -EINVAL);
	assert_int_equal(util_parse_dec("+1", 2, &v), -EINVAL);
	assert_int_equal(util_parse_dec("12x", 3, &v), -EINVAL);
	assert_int_equal(util_parse_dec("123", 2, &v), 0); /* only len bytes */
	assert_true(v == 12);
}

static void test_utf8(void **state)
{
	(void)state;
	assert_true(util_utf8_valid("h\xc3\xa9llo \xe2\x82\xac \xf0\x9f\x94\x91", 15));
	assert_false(util_utf8_valid("\xc3", 1));
	assert_false(util_utf8_valid("\xc0\xaf", 2));         /* overlong */
	assert_false(util_utf8_valid("\xed\xa0\x80", 3));     /* surrogate */
	assert_false(util_utf8_valid("\xf4\x90\x80\x80", 4)); /* > U+10FFFF */
	assert_false(util_utf8_valid("a\0b", 3));
	assert_false(util_utf8_valid("\xff", 1));
}

static void test_files(void **state)
{
	char dir[] = "/tmp/custody-util-XXXXXX", path[64], *buf = NULL;
	size_t len;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/a/b/f", dir);
	snprintf(path, sizeof(path), "%s/a/b", dir);
	assert_int_equal(util_mkdir_p(path, 0700), 0);
	snprintf(path, sizeof(path), "%s/a/b/f", dir);
	assert_int_equal(util_write_file(path, "hello", 5, 0600), 0);
	assert_int_equal(util_read_file(path, 5, &buf, &len), 0);
	assert_int_equal(len, 5);
	assert_string_equal(buf, "hello");
	free(buf);
	assert_int_equal(util_read_file(path, 4, &buf, &len), -EFBIG);
	assert_int_equal(unlink(path), 0);
	assert_int_equal(util_read_file(path, 4, &buf, &len), -ENOENT);
	snprintf(path, sizeof(path), "%s/a/b", dir);
	rmdir(path);
	snprintf(path, sizeof(path), "%s/a", dir);
	rmdir(path);
	rmdir(dir);
}

/* The temp file is created exclusively under a name nobody can guess: a
 * file another user planted under the old predictable name ("<path>.tmp.
 * <pid>") is neither used nor consumed, and a symlink at the path is
 * replaced, never written through. */
static void test_write_file_tmp(void **state)
{
	char dir[] = "/tmp/custody-util-XXXXXX", path[64], planted[96], victim[64], *buf = NULL;
	size_t len;
	FILE *f;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/out", dir);
	snprintf(planted, sizeof(planted), "%s.tmp.%ld", path, (long)getpid());
	f = fopen(planted, "w");
	assert_non_null(f);
	fputs("planted", f);
	fclose(f);
	assert_int_equal(util_write_file(path, "good", 4, 0644), 0);
	assert_int_equal(util_read_file(planted, 64, &buf, &len), 0);
	assert_string_equal(buf, "planted");
	free(buf);
	assert_int_equal(util_read_file(path, 64, &buf, &len), 0);
	assert_string_equal(buf, "good");
	free(buf);
	unlink(path);
	snprintf(victim, sizeof(victim), "%s/victim", dir);
	f = fopen(victim, "w");
	assert_non_null(f);
	fputs("victim", f);
	fclose(f);
	assert_int_equal(symlink(victim, path), 0);
	assert_int_equal(util_write_file(path, "new", 3, 0644), 0);
	assert_int_equal(util_read_file(victim, 64, &buf, &len), 0);
	assert_string_equal(buf, "victim");
	free(buf);
	assert_int_equal(util_read_file(path, 64, &buf, &len), 0);
	assert_string_equal(buf, "new");
	free(buf);
	unlink(path);
	unlink(victim);
	unlink(planted);
	rmdir(dir);
}

static void test_read_sizes(void **state)
{
	char dir[] = "/tmp/custody-util-XXXXXX", path[64], *buf = NULL, *big;
	size_t len;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/big", dir);
	big = malloc(10000);
	assert_non_null(big);
	memset(big, 'x', 10000);
	assert_int_equal(util_write_file(path, big, 10000, 0600), 0);
	/* a generous bound must not cost an allocation of that bound */
	assert_int_equal(util_read_file(path, (size_t)1 << 40, &buf, &len), 0);
	assert_int_equal(len, 10000);
	assert_memory_equal(buf, big, 10000);
	free(buf);
	assert_int_equal(util_read_file(path, 9999, &buf, &len), -EFBIG);
	assert_int_equal(util_read_file(path, 10000, &buf, &len), 0);
	free(buf);
	/* files whose size stat cannot tell (procfs) still read whole */
	assert_int_equal(util_read_file("/proc/self/status", 1 << 20, &buf, &len), 0);
	assert_non_null(strstr(buf, "VmRSS"));
	free(buf);
	free(big);
	unlink(path);
	rmdir(dir);
}

static void test_uuid(void **state)
{
	char a[37], b[37];

	(void)state;
	util_uuid4(a);
	util_uuid4(b);
	assert_int_equal(strlen(a), 36);
	assert_int_equal(a[14], '4');
	assert_string_not_equal(a, b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_dec),
		cmocka_unit_test(test_time_roundtrip),
		cmocka_unit_test(test_time_rejects),
		cmocka_unit_test(test_time_format_matches),
		cmocka_unit_test(test_utf8),
		cmocka_unit_test(test_files),
		cmocka_unit_test(test_write_file_tmp),
		cmocka_unit_test(test_read_sizes),
		cmocka_unit_test(test_uuid),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
