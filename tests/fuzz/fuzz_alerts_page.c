/* fuzz_alerts_page.c — what custody-alerts reads from the Defender API and
 * what it writes from it: alerts_page_parse on the raw page, then, for
 * every alert it accepts, the CEF encoder, the syslog frame (CEF and JSON)
 * and the notification message.
 *
 * Checked beyond "no crash": a CEF line and a syslog frame never hold a
 * line break or another control byte (a hostile title must not forge a
 * second record), a CEF header has its seven unescaped '|', a frame's
 * octet count is the length of what follows, and a notification message
 * has only CRLF line ends of at most 998 bytes. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "alerts.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

static struct alerts_config conf;
static struct rule_config rule;
static char *to[] = { "soc@mssp.example", NULL };

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	if (sodium_init() < 0)
		abort();
	conf.smtp.from = "alerts@mssp.example";
	rule.name = "fuzz";
	rule.include_org_name = rule.include_portal_link = rule.include_device_info = true;
	rule.to = to;
	rule.n_to = 1;
	return 0;
}

/* del: DEL counts too (CEF drops it; JSON may carry it, it breaks no line) */
static void no_controls(const char *p, size_t n, bool del)
{
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)p[i] < 0x20 || (del && p[i] == 0x7f))
			abort();
}

static void check_cef(const char *p, size_t n)
{
	int pipes = 0;

	no_controls(p, n, true);
	if (n < 4 || memcmp(p, "CEF:", 4) != 0)
		abort();
	for (size_t i = 0; i < n && pipes < 7; i++) {
		if (p[i] == '\\')
			i++;
		else if (p[i] == '|')
			pipes++;
	}
	if (pipes != 7)
		abort();
}

static void check_frame(const struct buf *b)
{
	unsigned long long len;
	char *sp;

	len = strtoull(b->p, &sp, 10);
	if (*sp != ' ' || len != b->len - (size_t)(sp + 1 - b->p))
		abort();
	no_controls(sp + 1, len, false);
}

static void check_message(const char *m)
{
	size_t line = 0;

	for (const char *p = m; *p != '\0'; p++) {
		if (*p == '\n' && (p == m || p[-1] != '\r'))
			abort();
		if (*p == '\r' && p[1] != '\n')
			abort();
		line = *p == '\n' ? 0 : line + 1;
		if (line > 998)
			abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct cerr err = { "" };
	json_t *alerts = NULL, *a;
	size_t i;

	if (alerts_page_parse((const char *)data, size, &alerts, &err) < 0) {
		if (err.msg[0] == '\0')
			abort();   /* every refusal says why */
		return 0;
	}
	json_array_foreach(alerts, i, a) {
		struct buf b = { 0 };
		char *m;

		json_object_set_new(a, "custody_tenant", json_string("contoso|x=y\\"));
		json_object_set_new(a, "custody_tenant_id", json_string("72f988bf"));
		json_object_set_new(a, "custody_portal_link",
				    json_string("https://security.microsoft.com/alerts/x?tid=72f988bf"));
		json_object_set_new(a, "custody_audit_seq", json_integer(7));
		cef_encode(a, &b);
		if (!b.oom)
			check_cef(b.p, b.len);
		buf_reset(&b);
		syslog_frame(a, false, "host", &b);
		if (!b.oom)
			check_frame(&b);
		buf_reset(&b);
		syslog_frame(a, true, "host", &b);
		if (!b.oom)
			check_frame(&b);
		buf_free(&b);
		(void)rule_matches(&rule, a);
		m = notice_message(&conf, &rule, a, false);
		if (m != NULL)
			check_message(m);
		free(m);
	}
	json_decref(alerts);
	return 0;
}
