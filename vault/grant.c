/* grant.c — the grant document (DESIGN §4): validation and the small
 * questions the broker asks of a grant.
 *
 * About the client secret and jansson: the secret passes through jansson
 * once, when a grant is validated. Its value string is wiped in place before
 * json_decref, and the copy handed out is wiped by vault_secret_free, but
 * jansson's lexer keeps its own scratch copy of the raw text that it frees
 * without wiping, and custody cannot reach it (json_set_alloc_funcs is
 * process-wide, so swapping in a wiping allocator here would change every
 * other user of jansson in the process). Metadata is stored apart from the
 * secret (grant_record.c), so later reads never parse the secret again. */
#include "vault_private.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#define GRANT_JSON_MAX (64 * 1024)
#define SECRET_MAX 1024
#define LIST_MAX 64
#define SCOPE_MAX 1023
#define DEFAULT_SCOPE "https://api.securitycenter.microsoft.com/.default"
#define DEFAULT_ENDPOINT "https://login.microsoftonline.com/%s/oauth2/v2.0/token"

struct grant *grant_new(void)
{
	struct grant *g = calloc(1, sizeof(*g));

	if (g == NULL)
		return NULL;
	g->not_before = INT64_MIN;
	g->not_after = INT64_MAX;
	return g;
}

static void list_free(char **l, size_t n)
{
	if (l == NULL)
		return;
	for (size_t i = 0; i < n; i++)
		free(l[i]);
	free(l);
}

void grant_free(struct grant *g)
{
	if (g == NULL)
		return;
	list_free(g->scopes, g->n_scopes);
	list_free(g->principals, g->n_principals);
	free(g);
}

static int list_dup(char **src, size_t n, char ***out)
{
	char **l;

	*out = NULL;
	if (n == 0)
		return 0;
	l = calloc(n, sizeof(*l));
	if (l == NULL)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		l[i] = strdup(src[i]);
		if (l[i] == NULL) {
			list_free(l, n);
			return -ENOMEM;
		}
	}
	*out = l;
	return 0;
}

struct grant *grant_dup(const struct grant *g)
{
	struct grant *d;

	if (g == NULL)
		return NULL;
	d = malloc(sizeof(*d));
	if (d == NULL)
		return NULL;
	*d = *g;
	d->scopes = NULL;
	d->principals = NULL;
	d->n_scopes = 0;
	d->n_principals = 0;
	if (list_dup(g->scopes, g->n_scopes, &d->scopes) < 0) {
		grant_free(d);
		return NULL;
	}
	d->n_scopes = g->n_scopes;
	if (list_dup(g->principals, g->n_principals, &d->principals) < 0) {
		grant_free(d);
		return NULL;
	}
	d->n_principals = g->n_principals;
	return d;
}

enum grant_state grant_state(const struct grant *g, int64_t now_s)
{
	if (g->revoked)
		return GRANT_REVOKED;
	if (now_s < g->not_before)
		return GRANT_PENDING;
	if (now_s >= g->not_after)
		return GRANT_EXPIRED;
	return GRANT_ACTIVE;
}

const char *grant_credential_name(enum grant_credential c)
{
	switch (c) {
	case GRANT_CRED_UNTRIED:
		return "untried";
	case GRANT_CRED_WORKS:
		return "works";
	case GRANT_CRED_FAILED:
		return "failed";
	}
	return "unknown";
}

const char *grant_state_name(enum grant_state s)
{
	switch (s) {
	case GRANT_PENDING:
		return "pending";
	case GRANT_ACTIVE:
		return "active";
	case GRANT_EXPIRED:
		return "expired";
	case GRANT_REVOKED:
		return "revoked";
	}
	return "unknown";
}

bool grant_has_scope(const struct grant *g, const char *scope)
{
	if (scope == NULL)
		return false;
	for (size_t i = 0; i < g->n_scopes; i++)
		if (strcmp(g->scopes[i], scope) == 0)
			return true;
	return false;
}

bool grant_allows_principal(const struct grant *g, const char *principal)
{
	if (g->n_principals == 0)
		return true;
	if (principal == NULL)
		return false;
	for (size_t i = 0; i < g->n_principals; i++)
		if (strcmp(g->principals[i], principal) == 0)
			return true;
	return false;
}

/* ---- validation ------------------------------------------------------ */

static const char *const known_fields[] = {
	"custody_grant", "tenant_id", "tenant_name", "token_endpoint", "client_id",
	"client_secret", "scopes", "not_before", "not_after", "principals", NULL,
};

/* A field name as it may appear in a message: only when it looks like a
 * field name (lowercase identifier) and is not the secret itself, so a
 * customer who pasted the secret as a key never sees it echoed. */
static void field_name_safe(const char *in, json_t *secret, char out[static 48])
{
	size_t n = strlen(in);
	bool plausible = n > 0 && n <= 32 && in[0] >= 'a' && in[0] <= 'z';

	for (size_t i = 0; plausible && i < n; i++)
		plausible = (in[i] >= 'a' && in[i] <= 'z') || (in[i] >= '0' && in[i] <= '9') ||
			    in[i] == '_';
	if (plausible && json_is_string(secret) && json_string_length(secret) > 0 &&
	    (strstr(in, json_string_value(secret)) != NULL ||
	     strstr(json_string_value(secret), in) != NULL))
		plausible = false;
	if (plausible)
		memcpy(out, in, n + 1);
	else
		strcpy(out, "(name not shown)");
}

static bool is_printable_token(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s <= 0x20 || (unsigned char)*s >= 0x7f)
			return false;
	return true;
}

static bool is_guid(const char *s)
{
	if (strlen(s) != 36)
		return false;
	for (int i = 0; i < 36; i++) {
		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (s[i] != '-')
				return false;
		} else if (!isxdigit((unsigned char)s[i])) {
			return false;
		}
	}
	return true;
}

static bool is_domain(const char *s);

bool vault_tenant_id_form(const char *s)
{
	return is_guid(s) || is_domain(s);
}

/* A DNS name with at least two labels (contoso.onmicrosoft.com). */
static bool is_domain(const char *s)
{
	size_t n = strlen(s), label = 0, labels = 1;

	if (n == 0 || n > 127)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];

		if (c == '.') {
			if (label == 0 || s[i - 1] == '-')
				return false;
			label = 0;
			labels++;
			continue;
		}
		if (!isalnum((unsigned char)c) && c != '-')
			return false;
		if (c == '-' && label == 0)
			return false;
		if (++label > 63)
			return false;
	}
	return label > 0 && s[n - 1] != '-' && labels >= 2;
}

static bool is_name(const char *s)
{
	if (*s == '\0')
		return false;
	for (; *s; s++)
		if (!isalnum((unsigned char)*s) && *s != '.' && *s != '_' && *s != '-')
			return false;
	return true;
}

/* Field lookup with type check. Returns 1 present, 0 absent, <0 error. */
static int get_string(json_t *root, const char *name, bool required, size_t max,
		      const char **out, struct cerr *err)
{
	json_t *j = json_object_get(root, name);

	if (j == NULL) {
		if (required)
			return cerr_set(err, -EINVAL, "%s: required", name);
		return 0;
	}
	if (!json_is_string(j))
		return cerr_set(err, -EINVAL, "%s: expected a string", name);
	if (json_string_length(j) > max)
		return cerr_set(err, -EINVAL, "%s: longer than %zu bytes", name, max);
	if (json_string_length(j) == 0)
		return cerr_set(err, -EINVAL, "%s: must not be empty", name);
	*out = json_string_value(j);
	return 1;
}

static int get_list(json_t *root, const char *name, bool allow_empty, size_t item_max,
		    char ***out, size_t *n_out, struct cerr *err)
{
	json_t *j = json_object_get(root, name), *it;
	char **l = NULL;
	size_t n, i;
	int rc;

	if (j == NULL)
		return 0;
	if (!json_is_array(j))
		return cerr_set(err, -EINVAL, "%s: expected an array of strings", name);
	n = json_array_size(j);
	if (n == 0 && !allow_empty)
		return cerr_set(err, -EINVAL, "%s: must not be empty", name);
	if (n > LIST_MAX)
		return cerr_set(err, -EINVAL, "%s: more than %d entries", name, LIST_MAX);
	if (n > 0) {
		l = calloc(n, sizeof(*l));
		if (l == NULL)
			return cerr_set(err, -ENOMEM, "out of memory");
	}
	json_array_foreach(j, i, it) {
		if (!json_is_string(it)) {
			rc = cerr_set(err, -EINVAL, "%s[%zu]: expected a string", name, i);
			goto fail;
		}
		if (json_string_length(it) == 0 || json_string_length(it) > item_max) {
			rc = cerr_set(err, -EINVAL, "%s[%zu]: must be 1 to %zu bytes long", name, i,
				      item_max);
			goto fail;
		}
		/* Scopes travel space-separated in OAuth: a space would smuggle
		 * in another scope. */
		if (!is_printable_token(json_string_value(it))) {
			rc = cerr_set(err, -EINVAL,
				      "%s[%zu]: must not contain spaces, control or non-ASCII characters",
				      name, i);
			goto fail;
		}
		l[i] = strdup(json_string_value(it));
		if (l[i] == NULL) {
			rc = cerr_set(err, -ENOMEM, "out of memory");
			goto fail;
		}
	}
	*out = l;
	*n_out = n;
	return 1;
fail:
	list_free(l, n);
	return rc;
}

static int get_time(json_t *root, const char *name, int64_t *out, struct cerr *err)
{
	const char *s = NULL;
	int64_t us;
	int rc;

	rc = get_string(root, name, false, 64, &s, err);
	if (rc <= 0)
		return rc;
	if (util_time_parse(s, &us) < 0)
		return cerr_set(err, -EINVAL, "%s: not an RFC 3339 time (like 2026-11-29T00:00:00Z)",
				name);
	/* whole seconds, rounding towards the past */
	*out = us >= 0 ? us / 1000000 : -((-us + 999999) / 1000000);
	return 1;
}

/* https://host[:port][/path...]: no user info, host from a small alphabet
 * so that what we check is what libcurl connects to. */
static int endpoint_check(const char *url, const char *const *allowed, struct cerr *err)
{
	const char *auth, *end, *host, *hend, *port = NULL;
	char hostbuf[256];
	size_t hlen;

	if (!is_printable_token(url))
		return cerr_set(err, -EINVAL,
				"token_endpoint: must not contain spaces, control or non-ASCII characters");
	if (strncmp(url, "https://", 8) != 0)
		return cerr_set(err, -EINVAL, "token_endpoint: must be https://");
	auth = url + 8;
	end = auth + strcspn(auth, "/?#");
	if (memchr(auth, '@', (size_t)(end - auth)) != NULL)
		return cerr_set(err, -EINVAL, "token_endpoint: must not contain user info (user@)");
	if (*auth == '[') {
		host = auth + 1;
		hend = memchr(host, ']', (size_t)(end - host));
		if (hend == NULL)
			return cerr_set(err, -EINVAL, "token_endpoint: unterminated IPv6 address");
		if (hend + 1 < end) {
			if (hend[1] != ':')
				return cerr_set(err, -EINVAL, "token_endpoint: bad host");
			port = hend + 2;
		}
		for (const char *p = host; p < hend; p++)
			if (!isxdigit((unsigned char)*p) && *p != ':' && *p != '.')
				return cerr_set(err, -EINVAL, "token_endpoint: bad host");
	} else {
		host = auth;
		hend = memchr(host, ':', (size_t)(end - host));
		if (hend != NULL)
			port = hend + 1;
		else
			hend = end;
		for (const char *p = host; p < hend; p++)
			if (!isalnum((unsigned char)*p) && *p != '.' && *p != '-')
				return cerr_set(err, -EINVAL, "token_endpoint: bad host");
	}
	hlen = (size_t)(hend - host);
	if (hlen == 0)
		return cerr_set(err, -EINVAL, "token_endpoint: has no host");
	if (hlen >= sizeof(hostbuf))
		return cerr_set(err, -EINVAL, "token_endpoint: host is too long");
	if (port != NULL) {
		long v = 0;

		if (port == end || end - port > 5)
			return cerr_set(err, -EINVAL, "token_endpoint: bad port");
		for (const char *p = port; p < end; p++) {
			if (!isdigit((unsigned char)*p))
				return cerr_set(err, -EINVAL, "token_endpoint: bad port");
			v = v * 10 + (*p - '0');
		}
		if (v < 1 || v > 65535)
			return cerr_set(err, -EINVAL, "token_endpoint: bad port");
	}
	memcpy(hostbuf, host, hlen);
	hostbuf[hlen] = '\0';
	if (allowed == NULL)
		return 0;
	for (size_t i = 0; allowed[i] != NULL; i++) {
		const char *a = allowed[i];
		size_t alen = strlen(a);

		/* "[::1]" and "::1" both name the IPv6 host */
		if (alen >= 2 && a[0] == '[' && a[alen - 1] == ']') {
			a++;
			alen -= 2;
		}
		if (alen == hlen && strncasecmp(a, hostbuf, hlen) == 0)
			return 0;
	}
	return cerr_set(err, -EINVAL, "token_endpoint: host %s is not in upstream.allowed_hosts",
			hostbuf);
}

static int copy_field(char *dst, size_t dstlen, const char *src)
{
	size_t n = strlen(src);

	if (n >= dstlen)
		return -EINVAL;
	memcpy(dst, src, n + 1);
	return 0;
}

/* Overwrite jansson's copy of a string value (see the comment at the top). */
static void json_string_wipe(json_t *j)
{
	if (json_is_string(j))
		sodium_memzero((char *)json_string_value(j), json_string_length(j));
}

int grant_validate(const char *json, size_t len, const char *const *allowed_hosts,
		   struct grant **out, char **secret_out, struct cerr *err)
{
	json_t *root = NULL, *cg;
	json_error_t jerr;
	struct grant *g = NULL;
	const char *key, *s = NULL;
	json_t *val;
	char *secret = NULL;
	size_t slen;
	int rc;

	if (len > GRANT_JSON_MAX)
		return cerr_set(err, -EINVAL, "grant: larger than %d bytes", GRANT_JSON_MAX);
	root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
	if (root == NULL) {
		/* jerr.text can quote the input (the secret, maybe): never use it. */
		if (json_error_code(&jerr) == json_error_duplicate_key)
			return cerr_set(err, -EINVAL, "grant: a field appears twice (line %d)",
					jerr.line);
		return cerr_set(err, -EINVAL, "grant: not valid JSON (line %d, column %d)",
				jerr.line, jerr.column);
	}
	if (!json_is_object(root)) {
		rc = cerr_set(err, -EINVAL, "grant: expected a JSON object");
		goto out;
	}
	json_object_foreach(root, key, val) {
		bool known = false;

		for (size_t i = 0; known_fields[i] != NULL; i++)
			known = known || strcmp(key, known_fields[i]) == 0;
		if (!known) {
			char safe[48];

			field_name_safe(key, json_object_get(root, "client_secret"), safe);
			rc = cerr_set(err, -EINVAL, "unknown field: %s", safe);
			goto out;
		}
	}
	cg = json_object_get(root, "custody_grant");
	if (cg == NULL) {
		rc = cerr_set(err, -EINVAL, "custody_grant: required (is this a custody grant?)");
		goto out;
	}
	if (!json_is_integer(cg)) {
		rc = cerr_set(err, -EINVAL, "custody_grant: expected the integer 1");
		goto out;
	}
	if (json_integer_value(cg) != 1) {
		rc = cerr_set(err, -EINVAL, "custody_grant: unsupported version %lld (this broker reads 1)",
			      (long long)json_integer_value(cg));
		goto out;
	}
	g = grant_new();
	if (g == NULL) {
		rc = cerr_set(err, -ENOMEM, "out of memory");
		goto out;
	}
	rc = get_string(root, "tenant_id", true, sizeof(g->tenant_id) - 1, &s, err);
	if (rc < 0)
		goto out;
	if (!is_guid(s) && !is_domain(s)) {
		rc = cerr_set(err, -EINVAL, "tenant_id: expected a GUID or a domain name");
		goto out;
	}
	copy_field(g->tenant_id, sizeof(g->tenant_id), s);
	rc = get_string(root, "tenant_name", false, 63, &s, err);
	if (rc < 0)
		goto out;
	if (rc > 0) {
		if (!is_name(s)) {
			rc = cerr_set(err, -EINVAL,
				      "tenant_name: only letters, digits, '.', '_' and '-' are allowed");
			goto out;
		}
		/* a name is matched wherever a tenant id is (policy entries,
		 * requests): one in the form of an id could stand for another
		 * customer's tenant */
		if (vault_tenant_id_form(s)) {
			rc = cerr_set(err, -EINVAL,
				      "tenant_name: \"%s\" has the form of a tenant id (a GUID or a domain name): choose a short name such as \"contoso\"",
				      s);
			goto out;
		}
		copy_field(g->tenant_name, sizeof(g->tenant_name), s);
	}
	rc = get_string(root, "client_id", true, sizeof(g->client_id) - 1, &s, err);
	if (rc < 0)
		goto out;
	if (!is_printable_token(s)) {
		rc = cerr_set(err, -EINVAL,
			      "client_id: must not contain spaces, control or non-ASCII characters");
		goto out;
	}
	copy_field(g->client_id, sizeof(g->client_id), s);
	rc = get_string(root, "client_secret", true, SECRET_MAX, &s, err);
	if (rc < 0)
		goto out;
	slen = json_string_length(json_object_get(root, "client_secret"));
	rc = get_list(root, "scopes", false, SCOPE_MAX, &g->scopes, &g->n_scopes, err);
	if (rc < 0)
		goto out;
	if (rc == 0) {
		g->scopes = calloc(1, sizeof(char *));
		if (g->scopes == NULL || (g->scopes[0] = strdup(DEFAULT_SCOPE)) == NULL) {
			rc = cerr_set(err, -ENOMEM, "out of memory");
			goto out;
		}
		g->n_scopes = 1;
	}
	rc = get_time(root, "not_before", &g->not_before, err);
	if (rc < 0)
		goto out;
	rc = get_time(root, "not_after", &g->not_after, err);
	if (rc < 0)
		goto out;
	if (g->not_after <= g->not_before) {
		rc = cerr_set(err, -EINVAL, "not_after: must be later than not_before");
		goto out;
	}
	rc = get_list(root, "principals", true, 127, &g->principals, &g->n_principals, err);
	if (rc < 0)
		goto out;
	rc = get_string(root, "token_endpoint", false, sizeof(g->token_endpoint) - 1, &s, err);
	if (rc < 0)
		goto out;
	if (rc > 0) {
		copy_field(g->token_endpoint, sizeof(g->token_endpoint), s);
	} else {
		snprintf(g->token_endpoint, sizeof(g->token_endpoint), DEFAULT_ENDPOINT,
			 g->tenant_id);
	}
	rc = endpoint_check(g->token_endpoint, allowed_hosts, err);
	if (rc < 0)
		goto out;
	if (secret_out != NULL) {
		/* plain malloc, wiped by vault_secret_free: see there */
		secret = malloc(slen + 1);
		if (secret == NULL) {
			rc = cerr_set(err, -ENOMEM, "out of memory");
			goto out;
		}
		memcpy(secret, json_string_value(json_object_get(root, "client_secret")), slen);
		secret[slen] = '\0';
		*secret_out = secret;
	}
	if (out != NULL) {
		*out = g;
		g = NULL;
	}
	rc = 0;
out:
	if (root != NULL) {
		json_string_wipe(json_object_get(root, "client_secret"));
		json_decref(root);
	}
	grant_free(g);
	return rc;
}
