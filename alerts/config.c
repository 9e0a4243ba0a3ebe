/* config.c — custody-alerts' configuration file (DESIGN.md §12).
 *
 * Strict, as custodyd's: unknown keys and values of the wrong type are
 * errors that name the key's path ("outputs[1].url: …"), so a typo never
 * silently drops an output or a notification rule. Relative paths are
 * relative to the file's own directory.
 */
#include "alerts.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define CONFIG_MAX_BYTES (1024 * 1024)

struct cfgctx {
	struct cerr *err;
	const char *file;
	const char *base_dir;
};

static const char *const severities[] = { "Informational", "Low", "Medium", "High" };

enum severity severity_parse(const char *s)
{
	for (size_t i = 0; s != NULL && i < sizeof(severities) / sizeof(severities[0]); i++)
		if (strcasecmp(s, severities[i]) == 0)
			return (enum severity)i;
	return SEV_UNKNOWN;
}

const char *severity_name(enum severity s)
{
	return s >= SEV_INFORMATIONAL && s <= SEV_HIGH ? severities[s] : "UnSpecified";
}

static int bad(struct cfgctx *x, const char *path, const char *what)
{
	return cerr_set(x->err, -EINVAL, "%s: %s: %s", x->file, path, what);
}

static int check_object(struct cfgctx *x, json_t *obj, const char *path,
			const char *const *allowed)
{
	const char *key;
	json_t *val;

	if (!json_is_object(obj))
		return bad(x, path, "expected an object");
	json_object_foreach(obj, key, val) {
		bool ok = false;

		for (size_t i = 0; allowed[i] != NULL; i++)
			if (strcmp(key, allowed[i]) == 0)
				ok = true;
		if (!ok)
			return cerr_set(x->err, -EINVAL, "%s: unknown key: %s%s%s", x->file, path,
					path[0] ? "." : "", key);
	}
	return 0;
}

static int set_str(char **out, const char *s)
{
	char *p = strdup(s);

	if (p == NULL)
		return -ENOMEM;
	free(*out);
	*out = p;
	return 0;
}

static int get_string(struct cfgctx *x, json_t *v, const char *path, char **out)
{
	if (!json_is_string(v) || json_string_length(v) == 0)
		return bad(x, path, "expected a non-empty string");
	if (strlen(json_string_value(v)) != json_string_length(v))
		return bad(x, path, "holds a NUL byte");
	return set_str(out, json_string_value(v));
}

/* A string or null (null: the default, kept as NULL). */
static int get_opt_string(struct cfgctx *x, json_t *v, const char *path, char **out)
{
	if (v == NULL || json_is_null(v)) {
		free(*out);
		*out = NULL;
		return 0;
	}
	return get_string(x, v, path, out);
}

static int get_path(struct cfgctx *x, json_t *v, const char *path, char **out)
{
	char *p;

	if (v == NULL || json_is_null(v)) {
		free(*out);
		*out = NULL;
		return 0;
	}
	if (!json_is_string(v) || json_string_length(v) == 0 ||
	    json_string_length(v) >= PATH_MAX ||
	    strlen(json_string_value(v)) != json_string_length(v))
		return bad(x, path, "expected a non-empty string (a file path)");
	p = util_path_join(x->base_dir, json_string_value(v));
	if (p == NULL)
		return -ENOMEM;
	free(*out);
	*out = p;
	return 0;
}

static int get_int(struct cfgctx *x, json_t *v, const char *path, int lo, int hi, int *out)
{
	char msg[96];

	if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi) {
		snprintf(msg, sizeof(msg), "expected an integer from %d to %d", lo, hi);
		return bad(x, path, msg);
	}
	*out = (int)json_integer_value(v);
	return 0;
}

static int get_bool(struct cfgctx *x, json_t *v, const char *path, bool *out)
{
	if (!json_is_boolean(v))
		return bad(x, path, "expected true or false");
	*out = json_is_true(v);
	return 0;
}

static void strv_free(char **v, size_t n)
{
	for (size_t i = 0; v != NULL && i < n; i++)
		free(v[i]);
	free(v);
}

static int get_strv(struct cfgctx *x, json_t *v, const char *path, char ***out, size_t *n)
{
	char sub[256], **arr;
	size_t i;
	json_t *e;
	int rc;

	if (!json_is_array(v))
		return bad(x, path, "expected an array of strings");
	arr = calloc(json_array_size(v) + 1, sizeof(*arr));
	if (arr == NULL)
		return -ENOMEM;
	json_array_foreach(v, i, e) {
		snprintf(sub, sizeof(sub), "%s[%zu]", path, i);
		rc = get_string(x, e, sub, &arr[i]);
		if (rc < 0) {
			strv_free(arr, i);
			return rc;
		}
	}
	strv_free(*out, *n);
	*out = arr;
	*n = json_array_size(v);
	return 0;
}

static bool url_has_scheme(const char *url, const char *scheme)
{
	size_t n = strlen(scheme);

	return strncasecmp(url, scheme, n) == 0 && url[n] != '\0' && url[n] != '/';
}

static int parse_output(struct cfgctx *x, json_t *o, size_t i, struct output_config *oc)
{
	static const char *const keys[] = { "type", "path", "url", "ca_file", "format",
					    "token_file", NULL };
	char path[64], sub[96];
	const char *type;
	json_t *v;
	int rc;

	snprintf(path, sizeof(path), "outputs[%zu]", i);
	rc = check_object(x, o, path, keys);
	if (rc < 0)
		return rc;
	snprintf(sub, sizeof(sub), "%s.type", path);
	v = json_object_get(o, "type");
	type = json_string_value(v);
	if (type == NULL)
		return bad(x, sub, "expected \"file\", \"syslog\" or \"splunk_hec\"");
	if (strcmp(type, "file") == 0) {
		oc->type = OUTPUT_FILE;
	} else if (strcmp(type, "syslog") == 0) {
		oc->type = OUTPUT_SYSLOG;
	} else if (strcmp(type, "splunk_hec") == 0) {
		oc->type = OUTPUT_HEC;
	} else {
		return bad(x, sub, "expected \"file\", \"syslog\" or \"splunk_hec\"");
	}
	/* keys that belong to another type are errors, not silently ignored */
	{
		static const char *const only[][2] = {
			{ "path", "file" }, { "url", "syslog splunk_hec" },
			{ "ca_file", "syslog splunk_hec" }, { "format", "syslog" },
			{ "token_file", "splunk_hec" },
		};
		for (size_t k = 0; k < sizeof(only) / sizeof(only[0]); k++) {
			if (json_object_get(o, only[k][0]) == NULL ||
			    strstr(only[k][1], type) != NULL)
				continue;
			snprintf(sub, sizeof(sub), "%s.%s", path, only[k][0]);
			return bad(x, sub, oc->type == OUTPUT_FILE ?
				   "not a key of a \"file\" output" :
				   "not a key of this output type");
		}
	}
	switch (oc->type) {
	case OUTPUT_FILE:
		snprintf(sub, sizeof(sub), "%s.path", path);
		if (json_object_get(o, "path") == NULL)
			return bad(x, sub, "missing (the NDJSON file to append to)");
		rc = get_path(x, json_object_get(o, "path"), sub, &oc->path);
		if (rc < 0)
			return rc;
		snprintf(oc->label, sizeof(oc->label), "%s (file %.100s)", path, oc->path);
		return 0;
	case OUTPUT_SYSLOG:
		snprintf(sub, sizeof(sub), "%s.url", path);
		rc = get_string(x, json_object_get(o, "url"), sub, &oc->url);
		if (rc < 0)
			return rc;
		if (!url_has_scheme(oc->url, "tls://") || strchr(oc->url + 6, ':') == NULL)
			return bad(x, sub, "expected tls://host:port (syslog over TLS, RFC 5425)");
		v = json_object_get(o, "format");
		snprintf(sub, sizeof(sub), "%s.format", path);
		if (v != NULL && (!json_is_string(v) ||
				  (strcmp(json_string_value(v), "cef") != 0 &&
				   strcmp(json_string_value(v), "json") != 0)))
			return bad(x, sub, "expected \"cef\" or \"json\"");
		oc->json = v != NULL && strcmp(json_string_value(v), "json") == 0;
		break;
	case OUTPUT_HEC:
		snprintf(sub, sizeof(sub), "%s.url", path);
		rc = get_string(x, json_object_get(o, "url"), sub, &oc->url);
		if (rc < 0)
			return rc;
		if (!url_has_scheme(oc->url, "https://"))
			return bad(x, sub, "expected an https:// URL (…/services/collector/event)");
		snprintf(sub, sizeof(sub), "%s.token_file", path);
		if (json_object_get(o, "token_file") == NULL)
			return bad(x, sub, "missing (the file holding the HEC token)");
		rc = get_path(x, json_object_get(o, "token_file"), sub, &oc->token_file);
		if (rc < 0)
			return rc;
		if (oc->token_file == NULL)
			return bad(x, sub, "expected a file path");
		break;
	}
	snprintf(sub, sizeof(sub), "%s.ca_file", path);
	rc = get_path(x, json_object_get(o, "ca_file"), sub, &oc->ca_file);
	if (rc < 0)
		return rc;
	snprintf(oc->label, sizeof(oc->label), "%s (%s %.100s)", path,
		 oc->type == OUTPUT_SYSLOG ? "syslog" : "splunk_hec", oc->url);
	return 0;
}

static int parse_smtp(struct cfgctx *x, json_t *o, struct smtp_config *s)
{
	static const char *const keys[] = { "url", "from", "tls", "username", "password_file",
					    "ca_file", NULL };
	const char *tls;
	json_t *v;
	int rc;

	rc = check_object(x, o, "smtp", keys);
	if (rc < 0)
		return rc;
	s->present = true;
	rc = get_string(x, json_object_get(o, "url"), "smtp.url", &s->url);
	if (rc < 0)
		return rc;
	if (!url_has_scheme(s->url, "smtp://") && !url_has_scheme(s->url, "smtps://"))
		return bad(x, "smtp.url", "expected smtp://host:port or smtps://host:port");
	rc = get_string(x, json_object_get(o, "from"), "smtp.from", &s->from);
	if (rc < 0)
		return rc;
	if (strchr(s->from, '@') == NULL || strpbrk(s->from, "<>\r\n \t\",") != NULL)
		return bad(x, "smtp.from", "expected a plain address (name@domain)");
	v = json_object_get(o, "tls");
	tls = v == NULL ? "required" : json_string_value(v);
	if (tls != NULL && strcmp(tls, "required") == 0)
		s->tls = SMTP_TLS_REQUIRED;
	else if (tls != NULL && strcmp(tls, "try") == 0)
		s->tls = SMTP_TLS_TRY;
	else if (tls != NULL && strcmp(tls, "none") == 0)
		s->tls = SMTP_TLS_NONE;
	else
		return bad(x, "smtp.tls", "expected \"required\", \"try\" or \"none\"");
	rc = get_opt_string(x, json_object_get(o, "username"), "smtp.username", &s->username);
	if (rc == 0)
		rc = get_path(x, json_object_get(o, "password_file"), "smtp.password_file",
			      &s->password_file);
	if (rc == 0)
		rc = get_path(x, json_object_get(o, "ca_file"), "smtp.ca_file", &s->ca_file);
	if (rc == 0 && (s->username == NULL) != (s->password_file == NULL))
		return bad(x, s->username ? "smtp.password_file" : "smtp.username",
			   "username and password_file go together");
	return rc;
}

static bool address_ok(const char *a)
{
	const char *at = strchr(a, '@');

	return at != NULL && at != a && at[1] != '\0' && strpbrk(a, "<>\r\n \t\",;") == NULL;
}

static int parse_rule(struct cfgctx *x, json_t *o, size_t i, struct rule_config *r)
{
	static const char *const keys[] = { "name", "min_severity", "tenants", "device_groups",
					    "include_org_name", "include_portal_link",
					    "include_device_info", "to", NULL };
	char path[64], sub[96];
	json_t *v;
	int rc;

	snprintf(path, sizeof(path), "notifications[%zu]", i);
	rc = check_object(x, o, path, keys);
	if (rc < 0)
		return rc;
	snprintf(sub, sizeof(sub), "%s.name", path);
	rc = get_string(x, json_object_get(o, "name"), sub, &r->name);
	if (rc < 0)
		return rc;
	r->min_severity = SEV_INFORMATIONAL;
	v = json_object_get(o, "min_severity");
	snprintf(sub, sizeof(sub), "%s.min_severity", path);
	if (v != NULL) {
		r->min_severity = severity_parse(json_string_value(v));
		if (r->min_severity == SEV_UNKNOWN)
			return bad(x, sub, "expected \"Informational\", \"Low\", \"Medium\" or \"High\"");
	}
	if ((v = json_object_get(o, "tenants")) != NULL) {
		snprintf(sub, sizeof(sub), "%s.tenants", path);
		if ((rc = get_strv(x, v, sub, &r->tenants, &r->n_tenants)) < 0)
			return rc;
	}
	if ((v = json_object_get(o, "device_groups")) != NULL) {
		snprintf(sub, sizeof(sub), "%s.device_groups", path);
		if ((rc = get_strv(x, v, sub, &r->device_groups, &r->n_device_groups)) < 0)
			return rc;
	}
	r->include_org_name = r->include_portal_link = true;
	r->include_device_info = false;
	if ((v = json_object_get(o, "include_org_name")) != NULL) {
		snprintf(sub, sizeof(sub), "%s.include_org_name", path);
		if ((rc = get_bool(x, v, sub, &r->include_org_name)) < 0)
			return rc;
	}
	if ((v = json_object_get(o, "include_portal_link")) != NULL) {
		snprintf(sub, sizeof(sub), "%s.include_portal_link", path);
		if ((rc = get_bool(x, v, sub, &r->include_portal_link)) < 0)
			return rc;
	}
	if ((v = json_object_get(o, "include_device_info")) != NULL) {
		snprintf(sub, sizeof(sub), "%s.include_device_info", path);
		if ((rc = get_bool(x, v, sub, &r->include_device_info)) < 0)
			return rc;
	}
	snprintf(sub, sizeof(sub), "%s.to", path);
	if (json_object_get(o, "to") == NULL)
		return bad(x, sub, "missing (the recipients' addresses)");
	if ((rc = get_strv(x, json_object_get(o, "to"), sub, &r->to, &r->n_to)) < 0)
		return rc;
	if (r->n_to == 0)
		return bad(x, sub, "expected at least one address");
	for (size_t k = 0; k < r->n_to; k++) {
		if (!address_ok(r->to[k])) {
			snprintf(sub, sizeof(sub), "%s.to[%zu]", path, k);
			return bad(x, sub, "expected a plain address (name@domain)");
		}
	}
	return 0;
}

static int parse_root(struct cfgctx *x, json_t *root, struct alerts_config *c)
{
	static const char *const keys[] = { "socket", "state_dir", "api_base", "ca_file", "scope",
					    "tenants", "interval_s", "initial_lookback_h",
					    "page_size", "purpose", "timeout_s", "outputs", "smtp",
					    "notifications", NULL };
	json_t *v, *e;
	size_t i;
	int rc;

	if (!json_is_object(root))
		return cerr_set(x->err, -EINVAL, "%s: expected a JSON object", x->file);
	rc = check_object(x, root, "", keys);
	if (rc < 0)
		return rc;
	if ((v = json_object_get(root, "socket")) != NULL && (rc = get_path(x, v, "socket", &c->socket)) < 0)
		return rc;
	if ((v = json_object_get(root, "state_dir")) != NULL &&
	    ((rc = get_path(x, v, "state_dir", &c->state_dir)) < 0 || c->state_dir == NULL))
		return rc < 0 ? rc : bad(x, "state_dir", "expected a directory path");
	if ((v = json_object_get(root, "api_base")) != NULL &&
	    (rc = get_string(x, v, "api_base", &c->api_base)) < 0)
		return rc;
	if (!url_has_scheme(c->api_base, "https://"))
		return bad(x, "api_base", "expected an https:// URL");
	while (strlen(c->api_base) > 8 && c->api_base[strlen(c->api_base) - 1] == '/')
		c->api_base[strlen(c->api_base) - 1] = '\0';
	if ((rc = get_path(x, json_object_get(root, "ca_file"), "ca_file", &c->ca_file)) < 0)
		return rc;
	if ((v = json_object_get(root, "scope")) != NULL && (rc = get_string(x, v, "scope", &c->scope)) < 0)
		return rc;
	if ((v = json_object_get(root, "tenants")) != NULL &&
	    (rc = get_strv(x, v, "tenants", &c->tenants, &c->n_tenants)) < 0)
		return rc;
	if ((v = json_object_get(root, "interval_s")) != NULL &&
	    (rc = get_int(x, v, "interval_s", 10, 86400, &c->interval_s)) < 0)
		return rc;
	if ((v = json_object_get(root, "initial_lookback_h")) != NULL &&
	    (rc = get_int(x, v, "initial_lookback_h", 0, 24 * 180, &c->initial_lookback_h)) < 0)
		return rc;
	if ((v = json_object_get(root, "page_size")) != NULL &&
	    (rc = get_int(x, v, "page_size", 1, 10000, &c->page_size)) < 0)
		return rc;
	if ((v = json_object_get(root, "timeout_s")) != NULL &&
	    (rc = get_int(x, v, "timeout_s", 1, 600, &c->timeout_s)) < 0)
		return rc;
	if ((v = json_object_get(root, "purpose")) != NULL) {
		if ((rc = get_string(x, v, "purpose", &c->purpose)) < 0)
			return rc;
		if (strlen(c->purpose) > 256)
			return bad(x, "purpose", "at most 256 bytes (the broker's limit)");
	}
	if ((v = json_object_get(root, "outputs")) != NULL) {
		if (!json_is_array(v))
			return bad(x, "outputs", "expected an array of outputs");
		c->outputs = calloc(json_array_size(v) + 1, sizeof(*c->outputs));
		if (c->outputs == NULL)
			return -ENOMEM;
		json_array_foreach(v, i, e) {
			c->n_outputs = i + 1;
			if ((rc = parse_output(x, e, i, &c->outputs[i])) < 0)
				return rc;
		}
	}
	return 0;
}

static int parse_rest(struct cfgctx *x, json_t *root, struct alerts_config *c)
{
	json_t *v, *e;
	size_t i;
	int rc;

	if ((v = json_object_get(root, "smtp")) != NULL && !json_is_null(v) &&
	    (rc = parse_smtp(x, v, &c->smtp)) < 0)
		return rc;
	if ((v = json_object_get(root, "notifications")) != NULL) {
		if (!json_is_array(v))
			return bad(x, "notifications", "expected an array of rules");
		c->rules = calloc(json_array_size(v) + 1, sizeof(*c->rules));
		if (c->rules == NULL)
			return -ENOMEM;
		json_array_foreach(v, i, e) {
			c->n_rules = i + 1;
			if ((rc = parse_rule(x, e, i, &c->rules[i])) < 0)
				return rc;
			for (size_t k = 0; k < i; k++) {
				char sub[64];

				if (strcmp(c->rules[k].name, c->rules[i].name) != 0)
					continue;
				snprintf(sub, sizeof(sub), "notifications[%zu].name", i);
				return bad(x, sub, "another rule has this name");
			}
		}
		if (c->n_rules > 0 && !c->smtp.present)
			return bad(x, "smtp", "missing: notification rules need an SMTP server");
	}
	return 0;
}

static int set_defaults(struct alerts_config *c)
{
	c->interval_s = 300;
	c->initial_lookback_h = 24;
	c->page_size = 1000;
	c->timeout_s = 60;
	if (set_str(&c->state_dir, "/var/lib/custody-alerts") < 0 ||
	    set_str(&c->api_base, "https://api.securitycenter.microsoft.com") < 0 ||
	    set_str(&c->scope, "https://api.securitycenter.microsoft.com/.default") < 0 ||
	    set_str(&c->purpose, "SIEM alert pull") < 0)
		return -ENOMEM;
	return 0;
}

int alerts_config_parse(const char *text, size_t len, const char *file, const char *base_dir,
			struct alerts_config **out, struct cerr *err)
{
	struct cfgctx x = { .err = err, .file = file, .base_dir = base_dir };
	struct alerts_config *c;
	json_error_t je;
	json_t *root;
	int rc;

	c = calloc(1, sizeof(*c));
	if (c == NULL)
		return -ENOMEM;
	root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
	if (root == NULL) {
		rc = cerr_set(err, -EINVAL, "%s: line %d: %s", file, je.line, je.text);
		goto out;
	}
	rc = set_defaults(c);
	if (rc == 0)
		rc = parse_root(&x, root, c);
	if (rc == 0)
		rc = parse_rest(&x, root, c);
	json_decref(root);
out:
	if (rc < 0) {
		if (rc == -ENOMEM)
			cerr_set(err, rc, "%s: out of memory", file);
		alerts_config_free(c);
		return rc;
	}
	*out = c;
	return 0;
}

int alerts_config_load(const char *path, struct alerts_config **out, struct cerr *err)
{
	char *text = NULL, *dir, *slash;
	size_t len = 0;
	int rc;

	rc = util_read_file(path, CONFIG_MAX_BYTES, &text, &len);
	if (rc < 0)
		return cerr_set(err, rc, "%s: cannot read the config: %s", path,
				rc == -EFBIG ? "larger than 1 MiB" : strerror(-rc));
	dir = strdup(path);
	if (dir == NULL) {
		free(text);
		return -ENOMEM;
	}
	slash = strrchr(dir, '/');
	if (slash == NULL)
		strcpy(dir, ".");
	else if (slash == dir)
		dir[1] = '\0';
	else
		*slash = '\0';
	rc = alerts_config_parse(text, len, path, dir, out, err);
	free(dir);
	free(text);
	return rc;
}

void alerts_config_free(struct alerts_config *c)
{
	if (c == NULL)
		return;
	free(c->socket);
	free(c->state_dir);
	free(c->api_base);
	free(c->ca_file);
	free(c->scope);
	strv_free(c->tenants, c->n_tenants);
	free(c->purpose);
	for (size_t i = 0; c->outputs != NULL && i < c->n_outputs; i++) {
		free(c->outputs[i].path);
		free(c->outputs[i].url);
		free(c->outputs[i].ca_file);
		free(c->outputs[i].token_file);
	}
	free(c->outputs);
	free(c->smtp.url);
	free(c->smtp.from);
	free(c->smtp.username);
	free(c->smtp.password_file);
	free(c->smtp.ca_file);
	for (size_t i = 0; c->rules != NULL && i < c->n_rules; i++) {
		free(c->rules[i].name);
		strv_free(c->rules[i].tenants, c->rules[i].n_tenants);
		strv_free(c->rules[i].device_groups, c->rules[i].n_device_groups);
		strv_free(c->rules[i].to, c->rules[i].n_to);
	}
	free(c->rules);
	free(c);
}
