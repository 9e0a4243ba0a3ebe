/* test_report.c — the report's HTML writer on its own: every record string
 * escaped, control and bidi characters made visible, long text cut, and a
 * page built from records says what they hold (cli/report_html.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "report.h"

static char *text_of(const char *s, size_t limit)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	assert_non_null(f);
	report_html_text(f, s, strlen(s), limit);
	assert_int_equal(fclose(f), 0);
	return buf;
}

static void check_text(const char *in, size_t limit, const char *want)
{
	char *got = text_of(in, limit);

	assert_string_equal(got, want);
	free(got);
}

static void test_escapes_markup(void **state)
{
	(void)state;
	check_text("<script>alert(1)</script>", 0, "&lt;script&gt;alert(1)&lt;/script&gt;");
	check_text("\"><img src=x onerror='a'>&", 0,
		   "&quot;&gt;&lt;img src=x onerror=&#39;a&#39;&gt;&amp;");
	check_text("plain text", 0, "plain text");
}

static void test_controls_visible(void **state)
{
	(void)state;
	/* right-to-left override, isolates, marks, C0/C1 controls, zero width */
	check_text("a\xe2\x80\xae" "b", 0, "a<span class=ctl>U+202E</span>b");
	check_text("\xe2\x81\xa7x\xe2\x81\xa9", 0,
		   "<span class=ctl>U+2067</span>x<span class=ctl>U+2069</span>");
	check_text("\x01\n\x7f", 0,
		   "<span class=ctl>U+0001</span><span class=ctl>U+000A</span>"
		   "<span class=ctl>U+007F</span>");
	check_text("\xc2\x85\xe2\x80\x8b\xef\xbb\xbf", 0,
		   "<span class=ctl>U+0085</span><span class=ctl>U+200B</span>"
		   "<span class=ctl>U+FEFF</span>");
	/* ordinary letters of any script pass as they are */
	check_text("caf\xc3\xa9 \xd7\xa9\xd7\x9c\xd7\x95\xd7\x9d", 0,
		   "caf\xc3\xa9 \xd7\xa9\xd7\x9c\xd7\x95\xd7\x9d");
	/* invalid UTF-8 never reaches the page as it is */
	check_text("a\xff\xc3(b", 0, "a\xef\xbf\xbd\xef\xbf\xbd(b");
}

static void test_cut(void **state)
{
	char big[70000];

	(void)state;
	check_text("abcdefghij", 4, "abcd<span class=more>\xe2\x80\xa6 and 6 more characters</span>");
	/* code points, not bytes */
	check_text("\xc3\xa9\xc3\xa9\xc3\xa9", 2,
		   "\xc3\xa9\xc3\xa9<span class=more>\xe2\x80\xa6 and 1 more characters</span>");
	memset(big, '<', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	{
		char *got = text_of(big, 160);

		assert_true(strlen(got) < 160 * 4 + 100);
		assert_non_null(strstr(got, "and 69839 more characters"));
		assert_int_equal(strncmp(got, "&lt;&lt;", 8), 0);
		assert_null(strstr(got, "<<"));
		free(got);
	}
}

static int feed(struct report *r, uint64_t seq, const char *body)
{
	return report_record(r, seq, body, strlen(body), NULL);
}

static void test_page(void **state)
{
	static struct audit_verify_stats st = { .records = 4, .checkpoints = 1, .tenants = 1,
						.covered = 4, .have_cp = true, .cp_size = 4,
						.cp_key_id = "01020304" };
	struct report *r = NULL;
	struct report_verdict v = { .outcome = REPORT_VERIFIED, .source = "x.json", .st = &st,
				    .vkey = "o.example/audit+01020304+AQ==" };
	char *page = NULL;
	size_t len = 0;
	FILE *f;

	(void)state;
	assert_int_equal(report_new(false, &r), 0);
	assert_int_equal(feed(r, 1, "{\"event\":\"token\",\"outcome\":\"ok\",\"principal\":\"siem\","
				   "\"purpose\":\"<script>x</script>\",\"scope\":\"s\",\"seq\":1,"
				   "\"tenant\":\"t1\",\"time\":\"2026-01-02T03:04:05.000001Z\","
				   "\"token_sha256\":\"ab12\",\"token_uti\":\"U1\","
				   "\"client_request_id\":\"c-1\"}"), 0);
	assert_int_equal(feed(r, 2, "{\"event\":\"token\",\"outcome\":\"denied\",\"error\":\"denied\","
				   "\"principal\":\"siem\",\"seq\":2,\"tenant\":\"t1\","
				   "\"time\":\"2026-01-03T03:04:05Z\"}"), 0);
	assert_int_equal(feed(r, 3, "{\"event\":\"admin.grant.revoke\",\"outcome\":\"ok\","
				   "\"actor\":\"jane\",\"reason\":\"contract \\u202eended\","
				   "\"revoked\":[{\"grant\":\"g_1\",\"outstanding_tokens\":2,"
				   "\"valid_until\":\"2026-01-03T04:00:00Z\"}],\"seq\":3,"
				   "\"tenant\":\"t1\",\"time\":\"2026-01-03T03:05:00Z\"}"), 0);
	/* a body that is no record is counted, not shown */
	assert_int_equal(feed(r, 4, "[1,2]"), 0);
	f = open_memstream(&page, &len);
	assert_non_null(f);
	assert_int_equal(report_write(r, &v, f), 0);
	assert_int_equal(fclose(f), 0);
	assert_non_null(strstr(page, "<h1>Verified</h1>"));
	assert_non_null(strstr(page, "default-src 'none'"));
	assert_non_null(strstr(page, "tree size 4"));
	assert_non_null(strstr(page, "signed by key id <code>01020304</code>"));
	assert_non_null(strstr(page, "&lt;script&gt;x&lt;/script&gt;"));
	assert_null(strstr(page, "<script>"));
	assert_non_null(strstr(page, "contract <span class=ctl>U+202E</span>ended"));
	assert_non_null(strstr(page, "exposure window"));
	assert_non_null(strstr(page, "2026-01-03T04:00:00Z"));
	assert_non_null(strstr(page, "<td class=h>ab12<td class=h>U1<td class=h>c-1"));
	assert_non_null(strstr(page, "could not be read as audit records"));
	assert_non_null(strstr(page, "<code>denied</code>"));
	free(page);
	report_free(r);

	/* a failed verification: red, the message escaped, the rest marked unproven */
	assert_int_equal(report_new(true, &r), 0);
	v = (struct report_verdict){ .outcome = REPORT_TAMPERED, .source = "s.db", .is_db = true,
				     .st = &st,
				     .vkey = "o.example/audit+01020304+AQ==",
				     .message = "tenant <b>: record 7 does not match" };
	f = open_memstream(&page, &len);
	assert_int_equal(report_write(r, &v, f), 0);
	assert_int_equal(fclose(f), 0);
	assert_non_null(strstr(page, "verdict bad"));
	assert_non_null(strstr(page, "tenant &lt;b&gt;: record 7 does not match"));
	assert_non_null(strstr(page, "none of it is proven"));
	free(page);
	report_free(r);

	/* a file spanning millennia: at most 400 bars, each over many days */
	assert_int_equal(report_new(false, &r), 0);
	assert_int_equal(feed(r, 1, "{\"event\":\"token\",\"outcome\":\"ok\",\"seq\":1,"
				   "\"tenant\":\"t1\",\"time\":\"0001-01-01T00:00:00Z\"}"), 0);
	assert_int_equal(feed(r, 2, "{\"event\":\"token\",\"outcome\":\"ok\",\"seq\":2,"
				   "\"tenant\":\"t1\",\"time\":\"9999-12-31T23:59:59Z\"}"), 0);
	v = (struct report_verdict){ .outcome = REPORT_VERIFIED, .source = "x.json", .st = &st,
				     .vkey = "o.example/audit+01020304+AQ==" };
	f = open_memstream(&page, &len);
	assert_int_equal(report_write(r, &v, f), 0);
	assert_int_equal(fclose(f), 0);
	assert_non_null(strstr(page, "one bar per 9131 days"));
	assert_true(len < 200 * 1024);
	free(page);
	report_free(r);

	/* newest records under no signed checkpoint yet: amber, and said so */
	st.covered = 3;
	st.uncovered = 1;
	st.uncovered_from = 4;
	assert_int_equal(report_new(false, &r), 0);
	v = (struct report_verdict){ .outcome = REPORT_PARTLY, .source = "x.json", .st = &st,
				     .vkey = "o.example/audit+01020304+AQ==" };
	f = open_memstream(&page, &len);
	assert_int_equal(report_write(r, &v, f), 0);
	assert_int_equal(fclose(f), 0);
	assert_non_null(strstr(page, "verdict part"));
	assert_non_null(strstr(page, "<h1>Partly verified</h1>"));
	assert_non_null(strstr(page, "the 1 records from 4 on are under none yet"));
	free(page);
	report_free(r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_escapes_markup),
		cmocka_unit_test(test_controls_visible),
		cmocka_unit_test(test_cut),
		cmocka_unit_test(test_page),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
