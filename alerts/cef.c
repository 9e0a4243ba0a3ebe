/* cef.c — an alert as one ArcSight CEF line.
 *
 * Header and field names follow Microsoft's own ArcSight mapping for
 * Defender for Endpoint alerts (vendor "Microsoft", product "Microsoft
 * Defender ATP", version "2.0"; AlertId→externalId, Severity→
 * deviceSeverity, ...). Escaping follows the CEF specification: '\' as
 * "\\" everywhere, '|' as "\|" in the header, '=' as "\=" in the
 * extension, line breaks as "\n" / "\r" (in the header they become a
 * space: a header field is one line). Other control bytes are dropped so
 * a hostile title cannot forge a second syslog record.
 */
#include "alerts.h"

#include <string.h>
#include <strings.h>

int cef_severity(const char *severity)
{
	switch (severity_parse(severity)) {
	case SEV_INFORMATIONAL:
		return 3;
	case SEV_LOW:
		return 4;
	case SEV_MEDIUM:
		return 6;
	case SEV_HIGH:
		return 9;
	default:
		return 0;
	}
}

static void esc(struct buf *out, const char *s, bool header)
{
	const char *run = s;

	for (; *s != '\0'; s++) {
		const char *rep = NULL;
		unsigned char ch = (unsigned char)*s;

		if (ch == '\\')
			rep = "\\\\";
		else if (header && ch == '|')
			rep = "\\|";
		else if (!header && ch == '=')
			rep = "\\=";
		else if (ch == '\n')
			rep = header ? " " : "\\n";
		else if (ch == '\r')
			rep = header ? " " : "\\r";
		else if (ch < 0x20 || ch == 0x7f)
			rep = "";
		if (rep == NULL)
			continue;
		buf_add(out, run, (size_t)(s - run));
		buf_str(out, rep);
		run = s + 1;
	}
	buf_add(out, run, (size_t)(s - run));
}

static const char *str(const json_t *o, const char *key)
{
	const char *s = json_string_value(json_object_get(o, key));

	return s != NULL && s[0] != '\0' ? s : NULL;
}

/* The extension: key=value pairs separated by one space. */
struct ext {
	struct buf *out;
	bool started;
};

static void ext(struct ext *x, const char *key, const char *value)
{
	struct buf *out = x->out;

	if (value == NULL)
		return;
	if (x->started)
		buf_add(out, " ", 1);
	x->started = true;
	buf_str(out, key);
	buf_add(out, "=", 1);
	esc(out, value, false);
}

/* CEF timestamps: milliseconds since the epoch (one of the forms ArcSight
 * parses, and the one without a locale). */
static void ext_time(struct ext *out, const char *key, const char *rfc3339)
{
	char ms[32];
	int64_t us;

	if (rfc3339 == NULL || util_time_parse(rfc3339, &us) < 0)
		return;
	snprintf(ms, sizeof(ms), "%lld", (long long)(us / 1000));
	ext(out, key, ms);
}

/* The first evidence entry of a type, for the file fields. */
static const json_t *evidence(const json_t *alert, const char *type)
{
	const json_t *e;
	size_t i;

	json_array_foreach(json_object_get(alert, "evidence"), i, e) {
		const char *t = str(e, "entityType");

		if (t != NULL && strcasecmp(t, type) == 0)
			return e;
	}
	return NULL;
}

void cef_encode(const json_t *alert, struct buf *out)
{
	const json_t *user = json_object_get(alert, "relatedUser"), *file;
	const char *category = str(alert, "category"), *title = str(alert, "title");
	struct ext x = { .out = out, .started = false };
	char num[32];

	buf_str(out, "CEF:0|Microsoft|Microsoft Defender ATP|2.0|");
	esc(out, category ? category : "Unknown", true);
	buf_add(out, "|", 1);
	esc(out, title ? title : "(no title)", true);
	buf_printf(out, "|%d|", cef_severity(str(alert, "severity")));

	ext(&x, "externalId", str(alert, "id"));
	ext(&x, "deviceSeverity", str(alert, "severity"));
	ext(&x, "deviceEventCategory", category);
	ext(&x, "sourceServiceName", str(alert, "detectionSource"));
	ext(&x, "sourceHostName", str(alert, "computerDnsName"));
	ext(&x, "deviceExternalId", str(alert, "machineId"));
	ext_time(&x, "deviceReceiptTime", str(alert, "alertCreationTime"));
	ext_time(&x, "end", str(alert, "lastUpdateTime"));
	ext(&x, "flexString1", str(alert, "custody_portal_link"));
	ext(&x, "flexString1Label", "LinkToWDATP");
	ext(&x, "deviceCustomString1", str(alert, "threatName"));
	if (str(alert, "threatName") != NULL)
		ext(&x, "deviceCustomString1Label", "ThreatName");
	if (json_is_object(user)) {
		ext(&x, "sourceUserName", str(user, "userName"));
		ext(&x, "sourceNtDomain", str(user, "domainName"));
	}
	file = evidence(alert, "File");
	if (file != NULL) {
		ext(&x, "fileName", str(file, "fileName"));
		ext(&x, "filePath", str(file, "filePath"));
		ext(&x, "fileHash", str(file, "sha1"));
	}
	ext(&x, "cs2", str(alert, "status"));
	ext(&x, "cs2Label", "Status");
	ext(&x, "cs3", str(alert, "rbacGroupName"));
	ext(&x, "cs3Label", "DeviceGroup");
	ext(&x, "cs4", str(alert, "custody_tenant"));
	ext(&x, "cs4Label", "custody_tenant");
	ext(&x, "cs5", str(alert, "custody_tenant_id"));
	ext(&x, "cs5Label", "custody_tenant_id");
	if (json_is_integer(json_object_get(alert, "custody_audit_seq"))) {
		snprintf(num, sizeof(num), "%lld",
			 (long long)json_integer_value(json_object_get(alert, "custody_audit_seq")));
		ext(&x, "cn1", num);
		ext(&x, "cn1Label", "custody_audit_seq");
	}
	if (json_is_integer(json_object_get(alert, "incidentId"))) {
		snprintf(num, sizeof(num), "%lld",
			 (long long)json_integer_value(json_object_get(alert, "incidentId")));
		ext(&x, "cn2", num);
		ext(&x, "cn2Label", "IncidentId");
	}
}
