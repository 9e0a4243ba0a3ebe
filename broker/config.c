/* config.c — custodyd's configuration file (DESIGN §8).
 *
 * Strict by design: unknown keys, duplicate keys and values of the wrong
 * type are errors that name the key's path, so a typo in a security policy
 * never silently widens it. Names of users and groups are resolved here,
 * once, so a missing one is a config error rather than a principal that
 * silently matches nobody.
 */
#include "broker.h"

#include <errno.h>
#include <grp.h>
#include <limits.h>
#include <math.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#define CONFIG_MAX_BYTES (1024 * 1024)

static const char *const default_hosts[] = {
	"login.microsoftonline.com",
	"login.microsoftonline.us",
	"login.partner.microsoftonline.cn",
	NULL,
};

struct cfgctx {
	struct cerr *err;
	const char *file;
	const char *base_dir;
	/* `custody config check`: every error, not just the first. NULL when
	 * loading for use, which stops at the first. */
	void (*each)(void *ctx, const char *msg);
	void *each_ctx;
	size_t n_errors;
};

/* After a section (or a principal, or a key) failed: when every error is
 * wanted, report this one and go on with the next; else stop here. A
 * section that failed is left at what it had, which is never used: the
 * parse fails in the end. */
static int go_on(struct cfgctx *x, int rc)
{
	if (rc != -EINVAL || x->each == NULL)
		return rc;
	x->each(x->each_ctx, x->err->msg);
	x->n_errors++;
	x->err->msg[0] = '\0';
	return 0;
}

static int bad(struct cfgctx *x, const char *path, const char *what)
{
	return cerr_set(x->err, -EINVAL, "%s: %s: %s", x->file, path, what);
}

static int check_keys(struct cfgctx *x, json_t *obj, const char *path,
		      const char *const *allowed)
{
	const char *key;
	json_t *val;

	json_object_foreach(obj, key, val) {
		bool ok = false;

		for (size_t i = 0; allowed[i] != NULL; i++)
			if (strcmp(key, allowed[i]) == 0)
				ok = true;
		if (!ok && go_on(x, cerr_set(x->err, -EINVAL, "%s: unknown key: %s%s%s", x->file,
					      path, path[0] ? "." : "", key)) < 0)
			return -EINVAL;
	}
	return 0;
}

/* An object whose keys are all in allowed: the first check of every
 * section, so a section of the wrong type or with a typo is an error. */
static int check_object(struct cfgctx *x, json_t *obj, const char *path,
			const char *const *allowed)
{
	if (!json_is_object(obj))
		return bad(x, path, "expected an object");
	return check_keys(x, obj, path, allowed);
}

static char *subpath(const char *path, const char *key)
{
	char *s;

	if (asprintf(&s, "%s%s%s", path, path[0] ? "." : "", key) < 0)
		return NULL;
	return s;
}

/* Resolve a path value: relative to the config file's directory. */
static int get_path(struct cfgctx *x, json_t *v, const char *path, char **out)
{
	const char *s;
	char *p;

	if (!json_is_string(v))
		return bad(x, path, "expected a string (a file path)");
	s = json_string_value(v);
	if (s[0] == '\0' || strlen(s) >= PATH_MAX)
		return bad(x, path, "expected a non-empty path");
	p = util_path_join(x->base_dir, s);
	if (p == NULL)
		return -ENOMEM;
	free(*out);
	*out = p;
	return 0;
}

static int get_string(struct cfgctx *x, json_t *v, const char *path, char **out)
{
	char *s;

	if (!json_is_string(v) || json_string_length(v) == 0)
		return bad(x, path, "expected a non-empty string");
	s = strdup(json_string_value(v));
	if (s == NULL)
		return -ENOMEM;
	free(*out);
	*out = s;
	return 0;
}

static int get_int(struct cfgctx *x, json_t *v, const char *path, json_int_t lo, json_int_t hi,
		   json_int_t *out)
{
	char msg[128];

	if (!json_is_integer(v))
		return bad(x, path, "expected an integer");
	if (json_integer_value(v) < lo || json_integer_value(v) > hi) {
		snprintf(msg, sizeof(msg), "expected an integer from %lld to %lld", (long long)lo,
			 (long long)hi);
		return bad(x, path, msg);
	}
	*out = json_integer_value(v);
	return 0;
}

static int lookup_group(struct cfgctx *x, const char *path, const char *name, gid_t *gid)
{
	struct group gr, *res = NULL;
	char buf[16384];
	char msg[CERR_MAX / 2];

	if (getgrnam_r(name, &gr, buf, sizeof(buf), &res) != 0 || res == NULL) {
		snprintf(msg, sizeof(msg), "no such group \"%.100s\" (create it or fix the name)",
			 name);
		return bad(x, path, msg);
	}
	*gid = gr.gr_gid;
	return 0;
}

static int lookup_user(struct cfgctx *x, const char *path, const char *name, uid_t *uid)
{
	struct passwd pw, *res = NULL;
	char buf[16384];
	char msg[CERR_MAX / 2];

	if (getpwnam_r(name, &pw, buf, sizeof(buf), &res) != 0 || res == NULL) {
		snprintf(msg, sizeof(msg), "no such user \"%.100s\" (create it or fix the name)",
			 name);
		return bad(x, path, msg);
	}
	*uid = pw.pw_uid;
	return 0;
}

static void strv_free(char **v, size_t n)
{
	if (v == NULL)
		return;
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

/* An array of non-empty strings; *out NULL-terminated, *n its length. */
static int get_strv(struct cfgctx *x, json_t *v, const char *path, char ***out, size_t *n)
{
	char **arr;
	size_t len, i;
	json_t *e;
	char ep[256];

	if (!json_is_array(v))
		return bad(x, path, "expected an array of strings");
	len = json_array_size(v);
	arr = calloc(len + 1, sizeof(*arr));
	if (arr == NULL)
		return -ENOMEM;
	json_array_foreach(v, i, e) {
		if (!json_is_string(e) || json_string_length(e) == 0) {
			snprintf(ep, sizeof(ep), "%.200s[%zu]", path, i);
			strv_free(arr, i);
			return bad(x, ep, "expected a non-empty string");
		}
		arr[i] = strdup(json_string_value(e));
		if (arr[i] == NULL) {
			strv_free(arr, i);
			return -ENOMEM;
		}
	}
	if (*out != NULL)
		strv_free(*out, *n);
	*out = arr;
	*n = len;
	return 0;
}

static int parse_socket(struct cfgctx *x, json_t *o, const char *path, const char *runtime_dir,
			struct broker_socket_config *s)
{
	static const char *const keys[] = {"path", "mode", "group", NULL};
	char *p, *sp = NULL;
	json_t *v;
	int rc;

	rc = check_object(x, o, path, keys);
	if (rc < 0)
		return rc;
	if ((v = json_object_get(o, "path")) != NULL) {
		char *rel = NULL;

		sp = subpath(path, "path");
		if (sp == NULL)
			return -ENOMEM;
		rc = get_string(x, v, sp, &rel);
		if (rc < 0)
			goto out;
		p = util_path_join(runtime_dir, rel);
		free(rel);
		if (p == NULL) {
			rc = -ENOMEM;
			goto out;
		}
		if (strlen(p) >= 108) {
			free(p);
			rc = bad(x, sp, "socket path too long (at most 107 bytes after joining runtime_dir)");
			goto out;
		}
		free(s->path);
		s->path = p;
		free(sp);
		sp = NULL;
	}
	if ((v = json_object_get(o, "mode")) != NULL) {
		const char *m;
		char *end;
		unsigned long mode;

		sp = subpath(path, "mode");
		if (sp == NULL)
			return -ENOMEM;
		m = json_string_value(v);
		if (m == NULL || m[0] == '\0' || strspn(m, "01234567") != strlen(m)) {
			rc = bad(x, sp, "expected an octal mode string such as \"0660\"");
			goto out;
		}
		mode = strtoul(m, &end, 8);
		if (mode > 0777) {
			rc = bad(x, sp, "expected permission bits only (at most \"0777\")");
			goto out;
		}
		s->mode = (mode_t)mode;
		free(sp);
		sp = NULL;
	}
	if ((v = json_object_get(o, "group")) != NULL && !json_is_null(v)) {
		sp = subpath(path, "group");
		if (sp == NULL)
			return -ENOMEM;
		rc = get_string(x, v, sp, &s->group);
		if (rc < 0)
			goto out;
		rc = lookup_group(x, sp, s->group, &s->gid);
		if (rc < 0)
			goto out;
	}
	rc = 0;
out:
	free(sp);
	return rc;
}

static int parse_role(struct cfgctx *x, json_t *o, const char *path, struct broker_role_config *r)
{
	static const char *const keys[] = {"uids", "groups", NULL};
	char ep[256];
	json_t *v, *e;
	size_t i;
	int rc;

	rc = check_object(x, o, path, keys);
	if (rc < 0)
		return rc;
	if ((v = json_object_get(o, "uids")) != NULL) {
		snprintf(ep, sizeof(ep), "%.200s.uids", path);
		if (!json_is_array(v))
			return bad(x, ep, "expected an array of integers");
		free(r->uids);
		r->uids = calloc(json_array_size(v) + 1, sizeof(uid_t));
		r->n_uids = 0;
		if (r->uids == NULL)
			return -ENOMEM;
		json_array_foreach(v, i, e) {
			json_int_t u;

			snprintf(ep, sizeof(ep), "%.200s.uids[%zu]", path, i);
			rc = get_int(x, e, ep, 0, UINT32_MAX - 1, &u);
			if (rc < 0)
				return rc;
			r->uids[r->n_uids++] = (uid_t)u;
		}
	}
	if ((v = json_object_get(o, "groups")) != NULL) {
		snprintf(ep, sizeof(ep), "%.200s.groups", path);
		if (!json_is_array(v))
			return bad(x, ep, "expected an array of group names");
		free(r->gids);
		r->gids = calloc(json_array_size(v) + 1, sizeof(gid_t));
		r->n_gids = 0;
		if (r->gids == NULL)
			return -ENOMEM;
		json_array_foreach(v, i, e) {
			snprintf(ep, sizeof(ep), "%.200s.groups[%zu]", path, i);
			if (!json_is_string(e))
				return bad(x, ep, "expected a group name");
			rc = lookup_group(x, ep, json_string_value(e), &r->gids[r->n_gids]);
			if (rc < 0)
				return rc;
			r->n_gids++;
		}
	}
	return 0;
}

static int parse_roles(struct cfgctx *x, json_t *o, struct broker_config *c)
{
	static const char *const keys[] = {"admin", "officer", "auditor", NULL};
	int rc;

	rc = check_object(x, o, "roles", keys);
	if (rc < 0)
		return rc;
	for (int r = 0; r < ROLE_COUNT; r++) {
		json_t *v = json_object_get(o, broker_role_name(r));
		char path[64];

		if (v == NULL)
			continue;
		/* A role given replaces the default (root only anyway). */
		free(c->roles[r].uids);
		free(c->roles[r].gids);
		c->roles[r] = (struct broker_role_config){0};
		snprintf(path, sizeof(path), "roles.%s", broker_role_name(r));
		rc = parse_role(x, v, path, &c->roles[r]);
		if (rc < 0)
			return rc;
	}
	return 0;
}

static int hex_nibble(char ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

static int parse_match(struct cfgctx *x, json_t *o, const char *path, struct principal_match *m)
{
	static const char *const keys[] = {"uid", "gid", "user", "group", "exe", "exe_sha256", NULL};
	char ep[256];
	json_t *v;
	json_int_t n;
	int rc;

	rc = check_object(x, o, path, keys);
	if (rc < 0)
		return rc;
	if (json_object_size(o) == 0)
		return bad(x, path, "give at least one of uid, gid, user, group, exe, exe_sha256");
	if ((v = json_object_get(o, "uid")) != NULL) {
		snprintf(ep, sizeof(ep), "%.200s.uid", path);
		rc = get_int(x, v, ep, 0, UINT32_MAX - 1, &n);
		if (rc < 0)
			return rc;
		m->has_uid = true;
		m->uid = (uid_t)n;
	}
	if ((v = json_object_get(o, "gid")) != NULL) {
		snprintf(ep, sizeof(ep), "%.200s.gid", path);
		rc = get_int(x, v, ep, 0, UINT32_MAX - 1, &n);
		if (rc < 0)
			return rc;
		m->has_gid = true;
		m->gid = (gid_t)n;
	}
	if ((v = json_object_get(o, "user")) != NULL) {
		snprintf(ep, sizeof(ep), "%.200s.user", path);
		rc = get_string(x, v, ep, &m->user);
		if (rc < 0)
			return rc;
		rc = lookup_user(x, ep, m->user, &m->user_uid);
		if (rc < 0)
			return rc;
		m->has_user = true;
	}
	if ((v = json_object_get(o, "group")) != NULL) {
		snprintf(ep, sizeof(ep), "%.200s.group", path);
		rc = get_string(x, v, ep, &m->group);
		if (rc < 0)
			return rc;
		rc = lookup_group(x, ep, m->group, &m->group_gid);
		if (rc < 0)
			return rc;
		m->has_group = true;
	}
	if ((v = json_object_get(o, "exe")) != NULL) {
		snprintf(ep, sizeof(ep), "%.200s.exe", path);
		if (!json_is_string(v) || json_string_value(v)[0] != '/')
			return bad(x, ep, "expected an absolute path");
		m->exe = strdup(json_string_value(v));
		if (m->exe == NULL)
			return -ENOMEM;
	}
	if ((v = json_object_get(o, "exe_sha256")) != NULL) {
		const char *s = json_string_value(v);

		snprintf(ep, sizeof(ep), "%.200s.exe_sha256", path);
		if (s == NULL || strlen(s) != 64)
			return bad(x, ep, "expected 64 hex digits (sha256sum of the executable)");
		for (int i = 0; i < 32; i++) {
			int hi = hex_nibble(s[2 * i]), lo = hex_nibble(s[2 * i + 1]);

			if (hi < 0 || lo < 0)
				return bad(x, ep, "expected 64 hex digits (sha256sum of the executable)");
			m->exe_sha256[i] = (uint8_t)(hi << 4 | lo);
		}
		m->has_exe_sha256 = true;
	}
	return 0;
}

static int parse_principal(struct cfgctx *x, json_t *o, const char *path,
			   struct principal_config *p)
{
	static const char *const keys[] = {"name", "match", "tenants", "scopes", "rate",
					   "require_purpose", NULL};
	static const char *const rate_keys[] = {"per_second", "burst", NULL};
	char ep[256];
	json_t *v;
	int rc;

	rc = check_object(x, o, path, keys);
	if (rc < 0)
		return rc;
	snprintf(ep, sizeof(ep), "%.200s.name", path);
	if ((v = json_object_get(o, "name")) == NULL)
		return bad(x, ep, "required");
	rc = get_string(x, v, ep, &p->name);
	if (rc < 0)
		return rc;
	if (strlen(p->name) > 64 || strchr(p->name, '\n') != NULL)
		return bad(x, ep, "expected a name of at most 64 bytes on one line");
	snprintf(ep, sizeof(ep), "%.200s.match", path);
	if ((v = json_object_get(o, "match")) == NULL)
		return bad(x, ep, "required");
	rc = parse_match(x, v, ep, &p->match);
	if (rc < 0)
		return rc;
	if ((v = json_object_get(o, "tenants")) != NULL) {
		snprintf(ep, sizeof(ep), "%.200s.tenants", path);
		rc = get_strv(x, v, ep, &p->tenants, &p->n_tenants);
		if (rc < 0)
			return rc;
	} else {
		p->tenants = calloc(2, sizeof(char *));
		if (p->tenants == NULL || (p->tenants[0] = strdup("*")) == NULL)
			return -ENOMEM;
		p->n_tenants = 1;
	}
	if ((v = json_object_get(o, "scopes")) != NULL) {
		snprintf(ep, sizeof(ep), "%.200s.scopes", path);
		rc = get_strv(x, v, ep, &p->scopes, &p->n_scopes);
		if (rc < 0)
			return rc;
	}
	if ((v = json_object_get(o, "rate")) != NULL) {
		json_t *r;

		snprintf(ep, sizeof(ep), "%.200s.rate", path);
		rc = check_object(x, v, ep, rate_keys);
		if (rc < 0)
			return rc;
		snprintf(ep, sizeof(ep), "%.200s.rate.per_second", path);
		r = json_object_get(v, "per_second");
		if (r == NULL || !json_is_number(r) || !(json_number_value(r) > 0) ||
		    json_number_value(r) > 1e6)
			return bad(x, ep, "expected a number greater than 0");
		p->rate_per_second = json_number_value(r);
		snprintf(ep, sizeof(ep), "%.200s.rate.burst", path);
		r = json_object_get(v, "burst");
		if (r == NULL) {
			p->rate_burst = p->rate_per_second < 1 ? 1 : p->rate_per_second;
		} else {
			if (!json_is_number(r) || !(json_number_value(r) >= 1) ||
			    json_number_value(r) > 1e6)
				return bad(x, ep, "expected a number of at least 1");
			p->rate_burst = json_number_value(r);
		}
		p->has_rate = true;
	}
	if ((v = json_object_get(o, "require_purpose")) != NULL) {
		snprintf(ep, sizeof(ep), "%.200s.require_purpose", path);
		if (!json_is_boolean(v))
			return bad(x, ep, "expected true or false");
		p->require_purpose = json_is_true(v);
	}
	return 0;
}

static int parse_principals(struct cfgctx *x, json_t *a, struct broker_config *c)
{
	char path[64];
	size_t i;
	json_t *e;
	int rc;

	if (!json_is_array(a))
		return bad(x, "principals", "expected an array");
	c->principals = calloc(json_array_size(a) + 1, sizeof(*c->principals));
	if (c->principals == NULL)
		return -ENOMEM;
	json_array_foreach(a, i, e) {
		snprintf(path, sizeof(path), "principals[%zu]", i);
		c->n_principals = i + 1;
		rc = parse_principal(x, e, path, &c->principals[i]);
		if (rc < 0) {
			if ((rc = go_on(x, rc)) < 0)
				return rc;
			continue;
		}
		for (size_t j = 0; j < i; j++)
			if (c->principals[j].name != NULL &&
			    strcmp(c->principals[j].name, c->principals[i].name) == 0) {
				snprintf(path, sizeof(path), "principals[%zu].name", i);
				if ((rc = go_on(x, bad(x, path, "duplicate principal name"))) < 0)
					return rc;
			}
	}
	return 0;
}

static int parse_upstream(struct cfgctx *x, json_t *o, struct upstream_config *u)
{
	static const char *const keys[] = {"ca_file", "timeout_ms", "retries", "allowed_hosts",
					   "probe_wait_s", NULL};
	json_t *v;
	json_int_t n;
	size_t cnt = 0;
	int rc;

	rc = check_object(x, o, "upstream", keys);
	if (rc < 0)
		return rc;
	if ((v = json_object_get(o, "ca_file")) != NULL && !json_is_null(v)) {
		rc = get_path(x, v, "upstream.ca_file", &u->ca_file);
		if (rc < 0)
			return rc;
	}
	if ((v = json_object_get(o, "timeout_ms")) != NULL) {
		rc = get_int(x, v, "upstream.timeout_ms", 100, 600000, &n);
		if (rc < 0)
			return rc;
		u->timeout_ms = (long)n;
	}
	if ((v = json_object_get(o, "retries")) != NULL) {
		rc = get_int(x, v, "upstream.retries", 0, 10, &n);
		if (rc < 0)
			return rc;
		u->retries = (int)n;
	}
	if ((v = json_object_get(o, "probe_wait_s")) != NULL) {
		rc = get_int(x, v, "upstream.probe_wait_s", 0, 3600, &n);
		if (rc < 0)
			return rc;
		u->probe_wait_s = (int)n;
	}
	if ((v = json_object_get(o, "allowed_hosts")) != NULL) {
		char **hosts = NULL;

		rc = get_strv(x, v, "upstream.allowed_hosts", &hosts, &cnt);
		if (rc < 0)
			return rc;
		for (size_t i = 0; u->allowed_hosts != NULL && u->allowed_hosts[i] != NULL; i++)
			free(u->allowed_hosts[i]);
		free(u->allowed_hosts);
		u->allowed_hosts = hosts;
	}
	return 0;
}

/* audit.witnesses: [{"name", "url", "key", "ca_file"}] */
static int parse_witnesses(struct cfgctx *x, json_t *arr, struct broker_config *c)
{
	static const char *const keys[] = {"name", "url", "key", "ca_file", NULL};
	size_t n = json_array_size(arr), i;
	json_t *o;
	char path[64], sub[96];
	int rc;

	if (!json_is_array(arr))
		return bad(x, "audit.witnesses", "expected an array of witness objects");
	if (n > AUDIT_WITNESS_MAX)
		return bad(x, "audit.witnesses", "at most 16 witnesses");
	c->witnesses = calloc(n ? n : 1, sizeof(*c->witnesses));
	if (c->witnesses == NULL)
		return -ENOMEM;
	json_array_foreach(arr, i, o) {
		struct broker_witness_config *w = &c->witnesses[i];
		struct cerr e2 = {{0}};
		json_t *v;

		c->n_witnesses = i + 1;
		snprintf(path, sizeof(path), "audit.witnesses[%zu]", i);
		rc = check_object(x, o, path, keys);
		if (rc < 0)
			return rc;
		snprintf(sub, sizeof(sub), "%s.name", path);
		if ((v = json_object_get(o, "name")) == NULL)
			return bad(x, sub, "required (a label for status and log lines)");
		rc = get_string(x, v, sub, &w->name);
		if (rc < 0)
			return rc;
		if (strlen(w->name) > 64 || strpbrk(w->name, "\n\r\t") != NULL)
			return bad(x, sub, "expected a short label (at most 64 bytes, one line)");
		for (size_t k = 0; k < i; k++)
			if (strcmp(c->witnesses[k].name, w->name) == 0)
				return bad(x, sub, "two witnesses with the same name");
		snprintf(sub, sizeof(sub), "%s.url", path);
		if ((v = json_object_get(o, "url")) == NULL)
			return bad(x, sub, "required (the witness's add-checkpoint URL)");
		rc = get_string(x, v, sub, &w->url);
		if (rc < 0)
			return rc;
		if ((strncmp(w->url, "https://", 8) != 0 && strncmp(w->url, "http://", 7) != 0) ||
		    strpbrk(w->url, " \n\r\t") != NULL || strlen(w->url) > 2048)
			return bad(x, sub, "expected an https:// (or http://) URL");
		snprintf(sub, sizeof(sub), "%s.key", path);
		if ((v = json_object_get(o, "key")) == NULL)
			return bad(x, sub, "required (the witness's verifier key, type 0x04)");
		rc = get_string(x, v, sub, &w->key);
		if (rc < 0)
			return rc;
		if (audit_vkey_parse(w->key, AUDIT_SIG_TYPE_COSIG_V1, &w->vkey, &e2) < 0)
			return bad(x, sub, e2.msg);
		for (size_t k = 0; k < i; k++)
			if (strcmp(c->witnesses[k].vkey.name, w->vkey.name) == 0)
				return bad(x, sub, "two witnesses with the same key name");
		if ((v = json_object_get(o, "ca_file")) != NULL && !json_is_null(v)) {
			snprintf(sub, sizeof(sub), "%s.ca_file", path);
			rc = get_path(x, v, sub, &w->ca_file);
			if (rc < 0)
				return rc;
		}
	}
	return 0;
}

/* audit.ship: [{"type": "syslog", "url", "ca_file", "cert_file", "key_file"} |
 *              {"type": "file", "path"}] */
static int parse_ship(struct cfgctx *x, json_t *arr, struct broker_config *c)
{
	static const char *const skeys[] = {"type", "url", "ca_file", "cert_file", "key_file", NULL};
	static const char *const fkeys[] = {"type", "path", NULL};
	size_t n = json_array_size(arr), i;
	json_t *o;
	char path[64], sub[96];
	int rc;

	if (!json_is_array(arr))
		return bad(x, "audit.ship", "expected an array of sink objects");
	if (n > 8)
		return bad(x, "audit.ship", "at most 8 sinks");
	c->ship = calloc(n ? n : 1, sizeof(*c->ship));
	if (c->ship == NULL)
		return -ENOMEM;
	json_array_foreach(arr, i, o) {
		struct broker_ship_config *sk = &c->ship[i];
		const char *type = json_string_value(json_object_get(o, "type"));
		json_t *v;

		c->n_ship = i + 1;
		snprintf(path, sizeof(path), "audit.ship[%zu]", i);
		if (!json_is_object(o))
			return bad(x, path, "expected an object");
		snprintf(sub, sizeof(sub), "%s.type", path);
		if (type == NULL || (strcmp(type, "syslog") != 0 && strcmp(type, "file") != 0))
			return bad(x, sub, "expected \"syslog\" or \"file\"");
		sk->syslog = strcmp(type, "syslog") == 0;
		rc = check_object(x, o, path, sk->syslog ? skeys : fkeys);
		if (rc < 0)
			return rc;
		if (sk->syslog) {
			const char *u;

			snprintf(sub, sizeof(sub), "%s.url", path);
			if ((v = json_object_get(o, "url")) == NULL)
				return bad(x, sub, "required (tls://host:port)");
			rc = get_string(x, v, sub, &sk->url);
			if (rc < 0)
				return rc;
			u = sk->url;
			if (strncmp(u, "tls://", 6) != 0 || strchr(u + 6, ':') == NULL ||
			    strpbrk(u + 6, " \n\r\t/@?#") != NULL || strlen(u) > 512)
				return bad(x, sub, "expected tls://host:port (RFC 5425 syslog over TLS)");
			{
				static const char *const files[] = {"ca_file", "cert_file", "key_file"};
				char **dst[] = {&sk->ca_file, &sk->cert_file, &sk->key_file};

				for (size_t k = 0; k < 3; k++) {
					v = json_object_get(o, files[k]);
					if (v == NULL || json_is_null(v))
						continue;
					snprintf(sub, sizeof(sub), "%s.%s", path, files[k]);
					rc = get_path(x, v, sub, dst[k]);
					if (rc < 0)
						return rc;
				}
			}
			if ((sk->cert_file == NULL) != (sk->key_file == NULL))
				return bad(x, path, "give cert_file and key_file together, or neither");
			if (asprintf(&sk->name, "syslog %s", sk->url) < 0) {
				sk->name = NULL;
				return -ENOMEM;
			}
		} else {
			snprintf(sub, sizeof(sub), "%s.path", path);
			if ((v = json_object_get(o, "path")) == NULL)
				return bad(x, sub, "required (the file to append to)");
			rc = get_path(x, v, sub, &sk->path);
			if (rc < 0)
				return rc;
			if (asprintf(&sk->name, "file %s", sk->path) < 0) {
				sk->name = NULL;
				return -ENOMEM;
			}
		}
		for (size_t k = 0; k < i; k++)
			if (strcmp(c->ship[k].name, sk->name) == 0)
				return bad(x, path, "the same sink twice");
	}
	return 0;
}

static int parse_audit(struct cfgctx *x, json_t *o, struct broker_config *c)
{
	static const char *const keys[] = {"origin", "checkpoint_every", "checkpoint_interval_s",
					   "witnesses", "witness_quorum", "ship", NULL};
	json_t *v;
	json_int_t n;
	int rc;

	rc = check_object(x, o, "audit", keys);
	if (rc < 0)
		return rc;
	if ((v = json_object_get(o, "origin")) != NULL) {
		rc = get_string(x, v, "audit.origin", &c->audit_origin);
		if (rc < 0)
			return rc;
		/* The origin is the first line of a signed note and the key name
		 * in "<name>+<hex>+<base64>": no line breaks, no '+', no spaces. */
		if (strpbrk(c->audit_origin, "\n\r+ \t") != NULL || strlen(c->audit_origin) > 200)
			return bad(x, "audit.origin",
				   "expected a name without spaces, '+' or line breaks (at most 200 bytes)");
	}
	if ((v = json_object_get(o, "checkpoint_every")) != NULL) {
		rc = get_int(x, v, "audit.checkpoint_every", 0, 100000000, &n);
		if (rc < 0)
			return rc;
		c->checkpoint_every = (uint64_t)n;
	}
	if ((v = json_object_get(o, "checkpoint_interval_s")) != NULL) {
		rc = get_int(x, v, "audit.checkpoint_interval_s", 0, 86400, &n);
		if (rc < 0)
			return rc;
		c->checkpoint_interval_s = (unsigned)n;
	}
	if ((v = json_object_get(o, "witnesses")) != NULL) {
		rc = parse_witnesses(x, v, c);
		if (rc < 0)
			return rc;
	}
	if ((v = json_object_get(o, "ship")) != NULL) {
		rc = parse_ship(x, v, c);
		if (rc < 0)
			return rc;
	}
	c->witness_quorum = (unsigned)c->n_witnesses;
	if ((v = json_object_get(o, "witness_quorum")) != NULL) {
		if (c->n_witnesses == 0)
			return bad(x, "audit.witness_quorum", "no audit.witnesses are configured");
		rc = get_int(x, v, "audit.witness_quorum", 1, (json_int_t)c->n_witnesses, &n);
		if (rc < 0)
			return rc;
		c->witness_quorum = (unsigned)n;
	}
	return 0;
}

static int parse_limits(struct cfgctx *x, json_t *o, struct broker_limits *l)
{
	static const char *const keys[] = {"max_connections", "max_connections_per_uid",
					   "max_request_bytes", "idle_timeout_s", "max_exe_bytes",
					   "max_refusals", "refusal_window_s", NULL};
	json_t *v;
	json_int_t n;
	int rc;

	rc = check_object(x, o, "limits", keys);
	if (rc < 0)
		return rc;
	if ((v = json_object_get(o, "max_connections")) != NULL) {
		rc = get_int(x, v, "limits.max_connections", 1, 1000000, &n);
		if (rc < 0)
			return rc;
		l->max_connections = (unsigned)n;
	}
	if ((v = json_object_get(o, "max_connections_per_uid")) != NULL) {
		rc = get_int(x, v, "limits.max_connections_per_uid", 1, 1000000, &n);
		if (rc < 0)
			return rc;
		l->max_connections_per_uid = (unsigned)n;
	}
	if ((v = json_object_get(o, "max_request_bytes")) != NULL) {
		rc = get_int(x, v, "limits.max_request_bytes", 1024, 16 * 1024 * 1024, &n);
		if (rc < 0)
			return rc;
		l->max_request_bytes = (size_t)n;
	}
	if ((v = json_object_get(o, "idle_timeout_s")) != NULL) {
		rc = get_int(x, v, "limits.idle_timeout_s", 1, 86400, &n);
		if (rc < 0)
			return rc;
		l->idle_timeout_s = (unsigned)n;
	}
	if ((v = json_object_get(o, "max_exe_bytes")) != NULL) {
		rc = get_int(x, v, "limits.max_exe_bytes", 1024, (json_int_t)1 << 40, &n);
		if (rc < 0)
			return rc;
		l->max_exe_bytes = (uint64_t)n;
	}
	if ((v = json_object_get(o, "max_refusals")) != NULL) {
		rc = get_int(x, v, "limits.max_refusals", 1, 1000000, &n);
		if (rc < 0)
			return rc;
		l->max_refusals = (unsigned)n;
	}
	if ((v = json_object_get(o, "refusal_window_s")) != NULL) {
		rc = get_int(x, v, "limits.refusal_window_s", 1, 86400, &n);
		if (rc < 0)
			return rc;
		l->refusal_window_s = (unsigned)n;
	}
	return 0;
}

/* key_file: a relative name found in $CREDENTIALS_DIRECTORY (systemd
 * credentials) is taken from there; otherwise relative to the config. */
static int resolve_key_path(struct cfgctx *x, json_t *v, const char *path, char **out)
{
	const char *creds = getenv("CREDENTIALS_DIRECTORY");
	const char *s = json_string_value(v);

	if (s != NULL && s[0] != '/' && s[0] != '\0' && creds != NULL && creds[0] == '/') {
		char *p = util_path_join(creds, s);
		struct stat st;

		if (p == NULL)
			return -ENOMEM;
		if (stat(p, &st) == 0) {
			free(*out);
			*out = p;
			return 0;
		}
		free(p);
	}
	return get_path(x, v, path, out);
}

static int set_defaults(struct broker_config *c)
{
	c->runtime_dir = strdup("/run/custody");
	c->key_file = strdup("/etc/custody/master.key");
	c->tool_socket.mode = 0660;
	c->admin_socket.mode = 0660;
	c->upstream.timeout_ms = 10000;
	c->upstream.retries = 3;
	c->upstream.probe_wait_s = 90;
	c->upstream.allowed_hosts = calloc(4, sizeof(char *));
	c->audit_origin = strdup("custody.example.net/audit");
	c->checkpoint_every = 1000;
	c->checkpoint_interval_s = 60;
	c->limits = (struct broker_limits){
		.max_connections = 1024,
		.max_connections_per_uid = 64,
		.max_request_bytes = 65536,
		.idle_timeout_s = 60,
		.max_exe_bytes = 256 * 1024 * 1024,
		.max_refusals = 20,
		.refusal_window_s = 10,
	};
	if (c->runtime_dir == NULL || c->key_file == NULL || c->upstream.allowed_hosts == NULL ||
	    c->audit_origin == NULL)
		return -ENOMEM;
	for (int i = 0; default_hosts[i] != NULL; i++)
		if ((c->upstream.allowed_hosts[i] = strdup(default_hosts[i])) == NULL)
			return -ENOMEM;
	for (int r = 0; r < ROLE_COUNT; r++) {
		c->roles[r].uids = calloc(1, sizeof(uid_t));
		if (c->roles[r].uids == NULL)
			return -ENOMEM;
		c->roles[r].uids[0] = 0;
		c->roles[r].n_uids = 1;
	}
	return 0;
}

static int parse_root(struct cfgctx *x, json_t *root, struct broker_config *c)
{
	static const char *const keys[] = {"state_dir", "runtime_dir", "key_file", "passphrase_file",
					   "tool_socket", "admin_socket", "roles", "principals",
					   "upstream", "audit", "limits", NULL};
	json_t *v, *kf, *pf;
	int rc;

	if (!json_is_object(root))
		return cerr_set(x->err, -EINVAL, "%s: expected a JSON object at the top", x->file);
	rc = check_keys(x, root, "", keys);
	if (rc < 0)
		return rc;
	rc = set_defaults(c);
	if (rc < 0)
		return rc;
	if ((v = json_object_get(root, "state_dir")) == NULL)
		rc = bad(x, "state_dir", "required (the directory for the vault and the audit store)");
	else
		rc = get_path(x, v, "state_dir", &c->state_dir);
	if ((rc = go_on(x, rc)) < 0)
		return rc;
	/* checking every error: go on with a stand-in (the file is refused) */
	if (c->state_dir == NULL && (c->state_dir = strdup("/")) == NULL)
		return -ENOMEM;
	if ((v = json_object_get(root, "runtime_dir")) != NULL) {
		rc = get_path(x, v, "runtime_dir", &c->runtime_dir);
		if ((rc = go_on(x, rc)) < 0)
			return rc;
	}
	kf = json_object_get(root, "key_file");
	pf = json_object_get(root, "passphrase_file");
	if (kf != NULL && pf != NULL &&
	    (rc = go_on(x, bad(x, "passphrase_file",
			       "give either key_file or passphrase_file, not both"))) < 0)
		return rc;
	if (kf != NULL) {
		rc = resolve_key_path(x, kf, "key_file", &c->key_file);
		if ((rc = go_on(x, rc)) < 0)
			return rc;
	}
	if (pf != NULL && kf == NULL) {
		free(c->key_file);
		c->key_file = NULL;
		rc = resolve_key_path(x, pf, "passphrase_file", &c->passphrase_file);
		if ((rc = go_on(x, rc)) < 0)
			return rc;
		if (c->passphrase_file == NULL && (c->key_file = strdup("/")) == NULL)
			return -ENOMEM;   /* a stand-in while checking every error */
	}
	c->tool_socket.path = util_path_join(c->runtime_dir, "custody.sock");
	c->admin_socket.path = util_path_join(c->runtime_dir, "admin.sock");
	c->vault_dir = util_path_join(c->state_dir, "vault");
	c->audit_db = util_path_join(c->state_dir, "audit.db");
	if (c->tool_socket.path == NULL || c->admin_socket.path == NULL || c->vault_dir == NULL ||
	    c->audit_db == NULL)
		return -ENOMEM;
	if ((v = json_object_get(root, "tool_socket")) != NULL) {
		rc = parse_socket(x, v, "tool_socket", c->runtime_dir, &c->tool_socket);
		if ((rc = go_on(x, rc)) < 0)
			return rc;
	}
	if ((v = json_object_get(root, "admin_socket")) != NULL) {
		rc = parse_socket(x, v, "admin_socket", c->runtime_dir, &c->admin_socket);
		if ((rc = go_on(x, rc)) < 0)
			return rc;
	}
	if (strcmp(c->tool_socket.path, c->admin_socket.path) == 0 &&
	    (rc = go_on(x, bad(x, "admin_socket.path", "must differ from tool_socket.path"))) < 0)
		return rc;
	if ((v = json_object_get(root, "roles")) != NULL) {
		rc = parse_roles(x, v, c);
		if ((rc = go_on(x, rc)) < 0)
			return rc;
	}
	if ((v = json_object_get(root, "principals")) != NULL) {
		rc = parse_principals(x, v, c);
		if ((rc = go_on(x, rc)) < 0)
			return rc;
	}
	if ((v = json_object_get(root, "upstream")) != NULL) {
		rc = parse_upstream(x, v, &c->upstream);
		if ((rc = go_on(x, rc)) < 0)
			return rc;
	}
	if ((v = json_object_get(root, "audit")) != NULL) {
		rc = parse_audit(x, v, c);
		if ((rc = go_on(x, rc)) < 0)
			return rc;
	}
	if ((v = json_object_get(root, "limits")) != NULL) {
		rc = parse_limits(x, v, &c->limits);
		if ((rc = go_on(x, rc)) < 0)
			return rc;
	}
	return 0;
}

static int config_parse(struct cfgctx *x0, const char *text, size_t len, const char *path,
			struct broker_config **out);

int broker_config_parse(const char *text, size_t len, const char *path, const char *base_dir,
			struct broker_config **out, struct cerr *err)
{
	struct cfgctx x = {.err = err, .file = path ? path : "config", .base_dir = base_dir};

	return config_parse(&x, text, len, path, out);
}

static int config_parse(struct cfgctx *x0, const char *text, size_t len, const char *path,
			struct broker_config **out)
{
	struct cfgctx x = *x0;
	struct cerr *err = x.err;
	struct broker_config *c = NULL;
	json_error_t jerr;
	json_t *root;
	int rc;

	if (!util_utf8_valid(text, len))
		return cerr_set(err, -EINVAL, "%s: not valid UTF-8 text", x.file);
	root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
	if (root == NULL)
		return cerr_set(err, -EINVAL, "%s: line %d column %d: %s", x.file, jerr.line,
				jerr.column, jerr.text);
	c = calloc(1, sizeof(*c));
	if (c == NULL) {
		rc = -ENOMEM;
		goto out;
	}
	rc = parse_root(&x, root, c);
	/* an error that stopped the parse: go_on clears those it reported */
	if (rc == -EINVAL && x.each != NULL && err->msg[0] != '\0')
		go_on(&x, rc);
	if (x.n_errors > 0)
		rc = cerr_set(err, -EINVAL, "%s: %zu error%s", x.file, x.n_errors,
			      x.n_errors == 1 ? "" : "s");
	x0->n_errors = x.n_errors;
	if (rc < 0)
		goto out;
	if (path != NULL && (c->path = strdup(path)) == NULL) {
		rc = -ENOMEM;
		goto out;
	}
	*out = c;
	c = NULL;
	rc = 0;
out:
	if (rc == -ENOMEM)
		cerr_set(err, rc, "%s: out of memory", x.file);
	broker_config_free(c);
	json_decref(root);
	return rc;
}

static int config_load(const char *path, struct broker_config **out, struct cerr *err,
		       void (*each)(void *ctx, const char *msg), void *each_ctx);

int broker_config_load(const char *path, struct broker_config **out, struct cerr *err)
{
	return config_load(path, out, err, NULL, NULL);
}

int broker_config_check(const char *path, void (*each)(void *ctx, const char *msg), void *ctx,
			struct cerr *err)
{
	struct broker_config *c = NULL;
	int rc = config_load(path, &c, err, each, ctx);

	broker_config_free(c);
	return rc;
}

static int config_load(const char *path, struct broker_config **out, struct cerr *err,
		       void (*each)(void *ctx, const char *msg), void *each_ctx)
{
	char *text = NULL, *abs = NULL, *dir = NULL, *slash;
	size_t len;
	int rc;

	if (path[0] == '/') {
		abs = strdup(path);
	} else {
		char cwd[PATH_MAX];

		if (getcwd(cwd, sizeof(cwd)) == NULL)
			return cerr_set(err, -errno, "cannot find the current directory: %s",
					strerror(errno));
		abs = util_path_join(cwd, path);
	}
	if (abs == NULL)
		return cerr_set(err, -ENOMEM, "out of memory");
	rc = util_read_file(abs, CONFIG_MAX_BYTES, &text, &len);
	if (rc < 0) {
		cerr_set(err, rc, "cannot read config %s: %s%s", abs, strerror(-rc),
			 rc == -ENOENT ? " (run `custody init` or pass --config FILE)" : "");
		goto out;
	}
	dir = strdup(abs);
	if (dir == NULL) {
		rc = cerr_set(err, -ENOMEM, "out of memory");
		goto out;
	}
	slash = strrchr(dir, '/');
	if (slash == dir)
		slash[1] = '\0';
	else
		*slash = '\0';
	{
		struct cfgctx x = {.err = err, .file = abs, .base_dir = dir, .each = each,
				   .each_ctx = each_ctx};

		rc = config_parse(&x, text, len, abs, out);
		/* one error that stopped the parse (bad JSON, say) is reported
		 * like the others */
		if (rc == -EINVAL && each != NULL && x.n_errors == 0)
			each(each_ctx, err->msg);
	}
out:
	free(text);
	free(abs);
	free(dir);
	return rc;
}

const char *broker_config_path(const char *arg)
{
	const char *env = getenv("CUSTODY_CONFIG");

	if (arg != NULL)
		return arg;
	if (env != NULL && env[0] != '\0')
		return env;
	return BROKER_DEFAULT_CONFIG;
}

static void socket_free(struct broker_socket_config *s)
{
	free(s->path);
	free(s->group);
}

void broker_config_free(struct broker_config *c)
{
	if (c == NULL)
		return;
	free(c->path);
	free(c->state_dir);
	free(c->runtime_dir);
	free(c->vault_dir);
	free(c->audit_db);
	free(c->key_file);
	free(c->passphrase_file);
	socket_free(&c->tool_socket);
	socket_free(&c->admin_socket);
	for (int r = 0; r < ROLE_COUNT; r++) {
		free(c->roles[r].uids);
		free(c->roles[r].gids);
	}
	for (size_t i = 0; i < c->n_principals; i++) {
		struct principal_config *p = &c->principals[i];

		free(p->name);
		free(p->match.user);
		free(p->match.group);
		free(p->match.exe);
		strv_free(p->tenants, p->n_tenants);
		strv_free(p->scopes, p->n_scopes);
	}
	free(c->principals);
	free(c->upstream.ca_file);
	for (size_t i = 0; c->upstream.allowed_hosts != NULL && c->upstream.allowed_hosts[i]; i++)
		free(c->upstream.allowed_hosts[i]);
	free(c->upstream.allowed_hosts);
	free(c->audit_origin);
	for (size_t i = 0; i < c->n_witnesses; i++) {
		free(c->witnesses[i].name);
		free(c->witnesses[i].url);
		free(c->witnesses[i].key);
		free(c->witnesses[i].ca_file);
	}
	free(c->witnesses);
	for (size_t i = 0; i < c->n_ship; i++) {
		free(c->ship[i].url);
		free(c->ship[i].ca_file);
		free(c->ship[i].cert_file);
		free(c->ship[i].key_file);
		free(c->ship[i].path);
		free(c->ship[i].name);
	}
	free(c->ship);
	free(c);
}

void broker_config_key_source(const struct broker_config *c, struct vault_key_source *src)
{
	src->key_file = c->key_file;
	src->passphrase_file = c->passphrase_file;
}

const char *broker_role_name(enum broker_role r)
{
	switch (r) {
	case ROLE_ADMIN:
		return "admin";
	case ROLE_OFFICER:
		return "officer";
	case ROLE_AUDITOR:
		return "auditor";
	default:
		return "?";
	}
}

/* The system config (custody init at the default path) names the groups
 * the package creates (dist/custody.sysusers) where they exist, so the
 * admin socket's officers and auditors hold their roles out of the box. */
static void default_groups(json_t *root)
{
	static const char *const role_groups[][2] = {
		{"admin", "custody-admin"},
		{"officer", "custody-officers"},
		{"auditor", "custody-auditors"},
	};
	json_t *roles = json_object_get(root, "roles");

	if (getgrnam("custody-tools") != NULL)
		json_object_set_new(json_object_get(root, "tool_socket"), "group",
				    json_string("custody-tools"));
	if (getgrnam("custody-admin") != NULL)
		json_object_set_new(json_object_get(root, "admin_socket"), "group",
				    json_string("custody-admin"));
	for (size_t i = 0; i < sizeof(role_groups) / sizeof(role_groups[0]); i++)
		if (getgrnam(role_groups[i][1]) != NULL)
			json_object_set_new(json_object_get(roles, role_groups[i][0]), "groups",
					    json_pack("[s]", role_groups[i][1]));
}

char *broker_config_default_text(const char *state_dir, const char *runtime_dir,
				 const char *key_file)
{
	json_t *root, *hosts, *roles;
	char *text = NULL, *nl = NULL;

	hosts = json_array();
	for (int i = 0; hosts != NULL && default_hosts[i] != NULL; i++)
		json_array_append_new(hosts, json_string(default_hosts[i]));
	roles = json_pack("{s:{s:[i]},s:{s:[i]},s:{s:[i]}}", "admin", "uids", 0, "officer", "uids",
			  0, "auditor", "uids", 0);
	root = json_pack(
		"{s:s,s:s,s:s,s:{s:s,s:s},s:{s:s,s:s},s:o,s:[],s:{s:n,s:i,s:i,s:i,s:o},"
		"s:{s:s,s:i,s:i},s:{s:i,s:i,s:i,s:i,s:I,s:i,s:i}}",
		"state_dir", state_dir ? state_dir : "/var/lib/custody",
		"runtime_dir", runtime_dir ? runtime_dir : "/run/custody",
		/* relative: /etc/custody/master.key for the CLI, the systemd
		 * credential of that name for the service (custodyd(8)) */
		"key_file", key_file ? key_file : "master.key",
		"tool_socket", "path", "custody.sock", "mode", "0660",
		"admin_socket", "path", "admin.sock", "mode", "0660",
		"roles", roles,
		"principals",
		"upstream", "ca_file", "timeout_ms", 10000, "retries", 3, "probe_wait_s", 90,
		"allowed_hosts", hosts,
		"audit", "origin", "custody.example.net/audit", "checkpoint_every", 1000,
		"checkpoint_interval_s", 60,
		"limits", "max_connections", 1024, "max_connections_per_uid", 64,
		"max_request_bytes", 65536, "idle_timeout_s", 60, "max_exe_bytes", (json_int_t)256 * 1024 * 1024,
		"max_refusals", 20, "refusal_window_s", 10);
	if (root == NULL)
		return NULL;
	if (state_dir == NULL)
		default_groups(root);
	text = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	json_decref(root);
	if (text == NULL)
		return NULL;
	if (asprintf(&nl, "%s\n", text) < 0)
		nl = NULL;
	free(text);
	return nl;
}
