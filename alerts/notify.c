/* notify.c — the seed's e-mail notification rules: which alerts a rule
 * wants, and the message it sends (RFC 5322, MIME, UTF-8).
 *
 * The message is built once, when the alert is first seen, and stored
 * with the rule's record in the state database; smtp.c only carries it.
 * It holds alert facts only: never a token or a secret.
 */
#include "alerts.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <sodium.h>

static const char *str(const json_t *o, const char *key)
{
	const char *s = json_string_value(json_object_get(o, key));

	return s != NULL && s[0] != '\0' ? s : NULL;
}

bool rule_matches(const struct rule_config *r, const json_t *alert)
{
	const char *group = str(alert, "rbacGroupName");
	bool ok;

	if (severity_parse(str(alert, "severity")) < r->min_severity)
		return false;
	ok = r->n_tenants == 0;
	for (size_t i = 0; !ok && i < r->n_tenants; i++) {
		const char *name = str(alert, "custody_tenant"), *id = str(alert, "custody_tenant_id");

		ok = (name && strcasecmp(name, r->tenants[i]) == 0) ||
		     (id && strcasecmp(id, r->tenants[i]) == 0);
	}
	if (!ok)
		return false;
	ok = r->n_device_groups == 0;
	for (size_t i = 0; !ok && i < r->n_device_groups; i++)
		ok = group != NULL && strcasecmp(group, r->device_groups[i]) == 0;
	return ok;
}

/* A value on one line: control characters become spaces. */
static void add_clean(struct buf *b, const char *s)
{
	for (; s != NULL && *s != '\0'; s++)
		buf_add(b, (unsigned char)*s < 0x20 || *s == 0x7f ? " " : s, 1);
}

static void line(struct buf *b, const char *label, const char *value)
{
	if (value == NULL)
		return;
	buf_printf(b, "%-15s ", label);
	add_clean(b, value);
	buf_str(b, "\r\n");
}

/* RFC 2047 encoded words (UTF-8, base64), folded; each word holds whole
 * UTF-8 characters. */
static void encoded_header(struct buf *b, const char *name, const char *value)
{
	size_t len = strlen(value), i = 0;
	bool first = true;

	buf_printf(b, "%s:", name);
	while (i < len) {
		char b64[sodium_base64_ENCODED_LEN(45, sodium_base64_VARIANT_ORIGINAL)];
		size_t n = len - i > 45 ? 45 : len - i;

		while (n > 1 && i + n < len && ((unsigned char)value[i + n] & 0xc0) == 0x80)
			n--;
		sodium_bin2base64(b64, sizeof(b64), (const unsigned char *)value + i, n,
				  sodium_base64_VARIANT_ORIGINAL);
		buf_printf(b, "%s=?UTF-8?B?%s?=", first ? " " : "\r\n ", b64);
		first = false;
		i += n;
	}
	buf_str(b, "\r\n");
}

static bool header_safe(const char *s)
{
	if (s == NULL || strlen(s) > 200)
		return false;
	for (; *s != '\0'; s++)
		if ((unsigned char)*s < 0x21 || (unsigned char)*s > 0x7e)
			return false;
	return true;
}

char *notice_message(const struct alerts_config *c, const struct rule_config *r,
		     const json_t *alert, bool test)
{
	struct buf subj = { 0 }, body = { 0 }, m = { 0 };
	const char *sev = str(alert, "severity"), *title = str(alert, "title");
	const char *org = str(alert, "custody_tenant"), *domain = strchr(c->smtp.from, '@');
	char date[64], uuid[37], *b64 = NULL;
	time_t now = time(NULL);
	struct tm tm;

	/* Subject: "[<severity>] <title>" plus " — <org name>" */
	if (test) {
		buf_printf(&subj, "[Test] custody-alerts notification rule \"%s\"", r->name);
	} else {
		buf_str(&subj, "[");
		add_clean(&subj, sev ? sev : "UnSpecified");
		buf_str(&subj, "] ");
		add_clean(&subj, title ? title : "(no title)");
		if (r->include_org_name && org != NULL) {
			buf_str(&subj, " \xe2\x80\x94 ");
			add_clean(&subj, org);
		}
	}

	if (test) {
		buf_printf(&body, "This is a test message for the notification rule \"%s\" of "
			   "custody-alerts.\r\n\r\nIt sends one message per new alert of severity "
			   "%s or higher", r->name, severity_name(r->min_severity));
		buf_str(&body, r->n_tenants ? " from the tenants " : " from every tenant");
		for (size_t i = 0; i < r->n_tenants; i++)
			buf_printf(&body, "%s%s", i ? ", " : "", r->tenants[i]);
		buf_str(&body, r->n_device_groups ? ", device groups " : ", every device group");
		for (size_t i = 0; i < r->n_device_groups; i++)
			buf_printf(&body, "%s%s", i ? ", " : "", r->device_groups[i]);
		buf_str(&body, ".\r\n");
	} else {
		add_clean(&body, title ? title : "(no title)");
		buf_str(&body, "\r\n\r\n");
		line(&body, "Severity:", sev ? sev : "UnSpecified");
		line(&body, "Category:", str(alert, "category"));
		line(&body, "Status:", str(alert, "status"));
		line(&body, "Created:", str(alert, "alertCreationTime"));
		line(&body, "Alert id:", str(alert, "id"));
		if (r->include_org_name)
			line(&body, "Organization:", org);
		if (r->include_device_info) {
			line(&body, "Device:", str(alert, "computerDnsName"));
			line(&body, "Device group:", str(alert, "rbacGroupName"));
		}
		if (r->include_portal_link)
			line(&body, "Portal:", str(alert, "custody_portal_link"));
	}
	buf_printf(&body, "\r\n-- \r\nSent by custody-alerts, notification rule \"%s\".\r\n",
		   r->name);
	if (subj.oom || body.oom)
		goto out;

	b64 = malloc(sodium_base64_ENCODED_LEN(body.len, sodium_base64_VARIANT_ORIGINAL));
	if (b64 == NULL)
		goto out;
	sodium_bin2base64(b64, sodium_base64_ENCODED_LEN(body.len, sodium_base64_VARIANT_ORIGINAL),
			  (const unsigned char *)body.p, body.len, sodium_base64_VARIANT_ORIGINAL);

	gmtime_r(&now, &tm);
	strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S +0000", &tm);
	util_uuid4(uuid);
	buf_printf(&m, "Date: %s\r\n", date);
	buf_printf(&m, "From: custody-alerts <%s>\r\n", c->smtp.from);
	buf_str(&m, "To: ");
	for (size_t i = 0; i < r->n_to; i++)
		buf_printf(&m, "%s<%s>", i ? ",\r\n " : "", r->to[i]);
	buf_str(&m, "\r\n");
	encoded_header(&m, "Subject", subj.p);
	buf_printf(&m, "Message-ID: <%s@%s>\r\n", uuid, domain ? domain + 1 : "custody-alerts");
	buf_str(&m, "MIME-Version: 1.0\r\n"
		    "Content-Type: text/plain; charset=UTF-8\r\n"
		    "Content-Transfer-Encoding: base64\r\n"
		    "Auto-Submitted: auto-generated\r\n");
	if (!test && header_safe(str(alert, "id")))
		buf_printf(&m, "X-Custody-Alert-Id: %s\r\n", str(alert, "id"));
	if (!test && header_safe(str(alert, "custody_tenant_id")))
		buf_printf(&m, "X-Custody-Tenant-Id: %s\r\n", str(alert, "custody_tenant_id"));
	buf_str(&m, "\r\n");
	for (size_t i = 0, len = strlen(b64); i < len; i += 76) {
		buf_add(&m, b64 + i, len - i > 76 ? 76 : len - i);
		buf_str(&m, "\r\n");
	}
out:
	free(b64);
	buf_free(&subj);
	buf_free(&body);
	if (m.oom || m.p == NULL) {
		buf_free(&m);
		return NULL;
	}
	return m.p;
}
