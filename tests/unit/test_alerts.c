/* test_alerts.c — custody-alerts' pieces without a network: the config
 * (errors name the key's path, defaults), the page parser, the CEF encoder
 * and its escaping, the syslog frame, the rules' filters and the
 * notification message (RFC 5322/MIME, RFC 2047 subject). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <sodium.h>

#include "alerts.h"

static struct alerts_config *parse_ok(const char *text)
{
	struct alerts_config *c = NULL;
	struct cerr e = { "" };

	assert_int_equal(alerts_config_parse(text, strlen(text), "t.json", "/etc/x", &c, &e), 0);
	return c;
}

static void parse_bad(const char *text, const char *needle)
{
	struct alerts_config *c = NULL;
	struct cerr e = { "" };

	assert_int_equal(alerts_config_parse(text, strlen(text), "t.json", "/etc/x", &c, &e), -EINVAL);
	assert_null(c);
	if (strstr(e.msg, needle) == NULL)
		fail_msg("error \"%s\" does not name \"%s\"", e.msg, needle);
}

static void test_config_defaults(void **state)
{
	struct alerts_config *c = parse_ok("{\"outputs\": [{\"type\": \"file\", \"path\": \"a.ndjson\"},"
					   " {\"type\": \"syslog\", \"url\": \"tls://h:6514\"}]}");

	(void)state;
	assert_string_equal(c->state_dir, "/var/lib/custody-alerts");
	assert_string_equal(c->api_base, "https://api.securitycenter.microsoft.com");
	assert_string_equal(c->scope, "https://api.securitycenter.microsoft.com/.default");
	assert_int_equal(c->interval_s, 300);
	assert_int_equal(c->initial_lookback_h, 24);
	assert_int_equal(c->page_size, 1000);
	assert_string_equal(c->outputs[0].path, "/etc/x/a.ndjson");   /* relative to the file */
	assert_false(c->outputs[1].json);                              /* cef by default */
	assert_null(c->socket);
	alerts_config_free(c);
}

static void test_config_errors(void **state)
{
	(void)state;
	parse_bad("[]", "expected a JSON object");
	parse_bad("{\"outputs\": [{\"type\": \"kafka\"}]}", "outputs[0].type");
	parse_bad("{\"outputs\": [{\"type\": \"file\", \"path\": \"a\"}, {\"type\": \"syslog\","
		  " \"url\": \"udp://h:514\"}]}", "outputs[1].url");
	parse_bad("{\"outputs\": [{\"type\": \"splunk_hec\", \"url\": \"http://h\"}]}",
		  "outputs[0].url");
	parse_bad("{\"outputs\": [{\"type\": \"splunk_hec\", \"url\": \"https://h\"}]}",
		  "outputs[0].token_file");
	parse_bad("{\"outputs\": [{\"type\": \"file\", \"path\": \"a\", \"url\": \"x\"}]}",
		  "outputs[0].url");
	parse_bad("{\"api_base\": \"http://api\"}", "api_base");
	parse_bad("{\"interval_s\": \"300\"}", "interval_s");
	parse_bad("{\"page_size\": 10001}", "page_size");
	parse_bad("{\"tenants\": [\"a\", 1]}", "tenants[1]");
	parse_bad("{\"smtp\": {\"url\": \"smtp://m:25\", \"from\": \"nobody\"}}", "smtp.from");
	parse_bad("{\"smtp\": {\"url\": \"smtp://m:25\", \"from\": \"a@b\", \"username\": \"u\"}}",
		  "smtp.password_file");
	parse_bad("{\"smtp\": {\"url\": \"smtp://m:25\", \"from\": \"a@b\"}, \"notifications\":"
		  " [{\"name\": \"r\", \"to\": [\"x@y\"], \"device_groups\": [3]}]}",
		  "notifications[0].device_groups[0]");
	parse_bad("{\"smtp\": {\"url\": \"smtp://m:25\", \"from\": \"a@b\"}, \"notifications\":"
		  " [{\"name\": \"r\", \"to\": [\"x@y\"]}, {\"name\": \"r\", \"to\": [\"x@y\"]}]}",
		  "notifications[1].name");
	parse_bad("{\"smtp\": {\"url\": \"smtp://m:25\", \"from\": \"a@b\"}, \"notifications\":"
		  " [{\"name\": \"r\", \"to\": [\"x@y>\"]}]}", "notifications[0].to[0]");
	parse_bad("{\"state_dir\": \"a\", \"state_dir\": \"b\"}", "duplicate");
}

static void test_page_parse(void **state)
{
	static const char good[] =
		"{\"@odata.context\":\"x\",\"value\":[{\"id\":\"a1\",\"lastUpdateTime\":"
		"\"2026-11-28T20:33:59.2000000Z\"},{\"id\":\"a2\",\"lastUpdateTime\":\"2026-11-28T20:33:59Z\","
		"\"severity\":\"High\"}]}";
	const char *bad[][2] = {
		{ "<html>", "not JSON" },
		{ "{\"value\":{}}", "no \"value\" array" },
		{ "{\"value\":[1]}", "value[0] is not an object" },
		{ "{\"value\":[{\"lastUpdateTime\":\"2026-11-28T20:33:59Z\"}]}", "value[0] has no valid \"id\"" },
		{ "{\"value\":[{\"id\":\"x\"}]}", "alert x (value[0]) has no valid \"lastUpdateTime\"" },
		{ "{\"value\":[{\"id\":\"x\",\"lastUpdateTime\":\"yesterday\"}]}", "lastUpdateTime" },
		{ "{\"value\":[{\"id\":\"x\",\"lastUpdateTime\":\"2026-11-28T20:33:59Z\",\"severity\":3}]}",
		  "\"severity\" is not a string" },
		{ "{\"value\":[],\"value\":[]}", "not JSON" },
	};
	struct cerr e = { "" };
	json_t *a = NULL;

	(void)state;
	assert_int_equal(alerts_page_parse(good, strlen(good), &a, &e), 0);
	assert_int_equal(json_array_size(a), 2);
	json_decref(a);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		a = NULL;
		e.msg[0] = '\0';
		assert_int_equal(alerts_page_parse(bad[i][0], strlen(bad[i][0]), &a, &e), -EBADMSG);
		assert_null(a);
		if (strstr(e.msg, bad[i][1]) == NULL)
			fail_msg("case %zu: \"%s\" lacks \"%s\"", i, e.msg, bad[i][1]);
	}
}

static json_t *sample(void)
{
	return json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:I,s:{s:s,s:s},s:[{s:s,s:s,s:s,s:s}]}",
			 "id", "da1_2", "severity", "High", "status", "New",
			 "title", "Bad|thing=1\\x\r\nCEF:0|forged", "category", "Malware",
			 "detectionSource", "WindowsDefenderAtp", "computerDnsName", "pc1.contoso",
			 "alertCreationTime", "2026-11-28T20:33:57.7220239Z",
			 "lastUpdateTime", "2026-11-28T20:33:59.2Z", "rbacGroupName", "Servers",
			 "custody_tenant", "contoso", "custody_audit_seq", (json_int_t)42,
			 "relatedUser", "userName", "alice", "domainName", "CONTOSO",
			 "evidence", "entityType", "File", "fileName", "a=b.ps1",
			 "filePath", "C:\\Users\\alice", "sha1", "da39a3ee");
}

static void test_cef(void **state)
{
	json_t *a = sample();
	struct buf b = { 0 };

	(void)state;
	json_object_set_new(a, "custody_portal_link",
			    json_string("https://security.microsoft.com/alerts/da1_2?tid=t1"));
	cef_encode(a, &b);
	assert_false(b.oom);
	assert_null(strchr(b.p, '\n'));
	assert_null(strchr(b.p, '\r'));
	/* header: '|' and '\' escaped, the line break a space, severity 9 */
	assert_non_null(strstr(b.p, "CEF:0|Microsoft|Microsoft Defender ATP|2.0|Malware|"
				    "Bad\\|thing=1\\\\x  CEF:0\\|forged|9|externalId=da1_2 "));
	/* extension: '=' and '\' escaped, times in ms */
	assert_non_null(strstr(b.p, " fileName=a\\=b.ps1 "));
	assert_non_null(strstr(b.p, " filePath=C:\\\\Users\\\\alice "));
	assert_non_null(strstr(b.p, " deviceReceiptTime=1795898037722 "));
	assert_non_null(strstr(b.p, " flexString1=https://security.microsoft.com/alerts/da1_2?tid\\=t1 "));
	assert_non_null(strstr(b.p, " sourceUserName=alice sourceNtDomain=CONTOSO "));
	assert_non_null(strstr(b.p, " cn1=42 cn1Label=custody_audit_seq"));
	assert_int_equal(cef_severity("Informational"), 3);
	assert_int_equal(cef_severity("nonsense"), 0);
	buf_free(&b);
	json_decref(a);
}

static void test_syslog_frame(void **state)
{
	json_t *a = sample();
	struct buf b = { 0 };
	char *sp;
	unsigned long n;

	(void)state;
	json_object_set_new(a, "custody_tenant", json_string("con\"to]so"));
	syslog_frame(a, true, "host1", &b);
	n = strtoul(b.p, &sp, 10);
	assert_int_equal(*sp, ' ');
	assert_int_equal(n, b.len - (size_t)(sp + 1 - b.p));
	/* local0 + crit for High; SD values escaped */
	assert_non_null(strstr(sp + 1, "<130>1 "));
	assert_non_null(strstr(b.p, " host1 custody-alerts - alert [custody@32473 tenant=\"con\\\"to\\]so\""));
	assert_non_null(strstr(b.p, "audit_seq=\"42\"] {\"id\":\"da1_2\""));
	buf_free(&b);
	json_decref(a);
}

static void test_rules(void **state)
{
	char *tenants[] = { "fabrikam", "contoso" }, *groups[] = { "servers" };
	struct rule_config r = { .name = "r", .min_severity = SEV_MEDIUM };
	json_t *a = sample();

	(void)state;
	json_object_set_new(a, "custody_tenant_id", json_string("72f9"));
	assert_true(rule_matches(&r, a));
	r.min_severity = SEV_HIGH;
	assert_true(rule_matches(&r, a));
	json_object_set_new(a, "severity", json_string("Medium"));
	assert_false(rule_matches(&r, a));
	r.min_severity = SEV_INFORMATIONAL;
	r.tenants = tenants;
	r.n_tenants = 2;
	assert_true(rule_matches(&r, a));            /* by name, without case */
	tenants[1] = "72F9";
	assert_true(rule_matches(&r, a));            /* by id */
	tenants[1] = "northwind";
	assert_false(rule_matches(&r, a));
	r.n_tenants = 0;
	r.device_groups = groups;
	r.n_device_groups = 1;
	assert_true(rule_matches(&r, a));
	json_object_set_new(a, "rbacGroupName", json_string("Workstations"));
	assert_false(rule_matches(&r, a));
	json_object_del(a, "rbacGroupName");
	assert_false(rule_matches(&r, a));
	json_decref(a);
}

static void test_message(void **state)
{
	char *to[] = { "soc@mssp.example", "b@mssp.example" };
	struct alerts_config c = { .smtp = { .from = "alerts@mssp.example" } };
	struct rule_config r = { .name = "SOC", .include_org_name = true,
				 .include_portal_link = false, .include_device_info = true,
				 .to = to, .n_to = 2 };
	json_t *a = sample();
	char *m, *body;

	(void)state;
	json_object_set_new(a, "custody_portal_link", json_string("https://security.microsoft.com/x"));
	json_object_set_new(a, "title", json_string("Verd\xc3\xa4" "chtig"));
	m = notice_message(&c, &r, a, false);
	assert_non_null(m);
	for (const char *p = m; *p; p++)
		if (*p == '\n')
			assert_int_equal(p[-1], '\r');
	assert_non_null(strstr(m, "\r\nFrom: custody-alerts <alerts@mssp.example>\r\n"));
	assert_non_null(strstr(m, "\r\nTo: <soc@mssp.example>,\r\n <b@mssp.example>\r\n"));
	assert_non_null(strstr(m, "\r\nSubject: =?UTF-8?B?"));
	assert_non_null(strstr(m, "\r\nMessage-ID: <"));
	assert_non_null(strstr(m, "@mssp.example>\r\nMIME-Version: 1.0\r\n"
				  "Content-Type: text/plain; charset=UTF-8\r\n"
				  "Content-Transfer-Encoding: base64\r\n"));
	assert_int_equal(strncmp(m, "Date: ", 6), 0);
	assert_non_null(strstr(m, "X-Custody-Alert-Id: da1_2\r\n"));
	/* the subject, decoded: "[High] Verdächtig — contoso" */
	{
		const char *s = strstr(m, "Subject: =?UTF-8?B?") + 19;
		unsigned char bin[128];
		size_t n = 0;

		assert_int_equal(sodium_base642bin(bin, sizeof(bin), s, strcspn(s, "?"), NULL, &n, NULL,
						   sodium_base64_VARIANT_ORIGINAL), 0);
		bin[n] = '\0';
		assert_string_equal((char *)bin, "[High] Verd\xc3\xa4" "chtig \xe2\x80\x94 contoso");
	}
	/* the body: device info in, portal link out */
	{
		const char *b64 = strstr(m, "\r\n\r\n") + 4;
		char clean[4096];
		size_t k = 0, n = 0;

		for (; *b64 && k < sizeof(clean) - 1; b64++)
			if (*b64 != '\r' && *b64 != '\n')
				clean[k++] = *b64;
		clean[k] = '\0';
		body = calloc(1, 4096);
		assert_int_equal(sodium_base642bin((unsigned char *)body, 4095, clean, k, NULL, &n, NULL,
						   sodium_base64_VARIANT_ORIGINAL), 0);
		assert_non_null(strstr(body, "Device:         pc1.contoso\r\n"));
		assert_non_null(strstr(body, "Alert id:       da1_2\r\n"));
		assert_non_null(strstr(body, "Organization:   contoso\r\n"));
		assert_null(strstr(body, "security.microsoft.com"));
		free(body);
	}
	free(m);
	json_decref(a);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_config_defaults), cmocka_unit_test(test_config_errors),
		cmocka_unit_test(test_page_parse),      cmocka_unit_test(test_cef),
		cmocka_unit_test(test_syslog_frame),    cmocka_unit_test(test_rules),
		cmocka_unit_test(test_message),
	};

	if (sodium_init() < 0)
		return 1;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
