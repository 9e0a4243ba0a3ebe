/* grant_record.c — a stored grant: the plaintext inside its record.
 *
 *   version (1) || secret length (u32 LE) || secret || metadata JSON
 *
 * The metadata JSON (compact, sorted keys) holds the validated grant minus
 * its secret, plus import and revocation data. A revoked grant is stored
 * with secret length 0. The record's id is its LMDB key, bound to it by the
 * record's associated data. */
#include "vault_private.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#define GRANT_RECORD_VERSION 1

static json_t *list_json(char **l, size_t n)
{
	json_t *a = json_array();

	if (a == NULL)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		if (json_array_append_new(a, json_string(l[i])) < 0) {
			json_decref(a);
			return NULL;
		}
	}
	return a;
}

static json_t *time_json(int64_t t, int64_t absent)
{
	return t == absent ? json_null() : json_integer((json_int_t)t);
}

static char *meta_encode(const struct grant *g)
{
	json_t *o = json_object();
	char *s = NULL;

	if (o == NULL)
		return NULL;
	if (json_object_set_new(o, "v", json_integer(GRANT_RECORD_VERSION)) == 0 &&
	    json_object_set_new(o, "tenant_id", json_string(g->tenant_id)) == 0 &&
	    json_object_set_new(o, "tenant_name", json_string(g->tenant_name)) == 0 &&
	    json_object_set_new(o, "token_endpoint", json_string(g->token_endpoint)) == 0 &&
	    json_object_set_new(o, "client_id", json_string(g->client_id)) == 0 &&
	    json_object_set_new(o, "scopes", list_json(g->scopes, g->n_scopes)) == 0 &&
	    json_object_set_new(o, "principals", list_json(g->principals, g->n_principals)) == 0 &&
	    json_object_set_new(o, "not_before", time_json(g->not_before, INT64_MIN)) == 0 &&
	    json_object_set_new(o, "not_after", time_json(g->not_after, INT64_MAX)) == 0 &&
	    json_object_set_new(o, "imported_at", json_integer(g->imported_at)) == 0 &&
	    json_object_set_new(o, "imported_us", json_integer(g->imported_us)) == 0 &&
	    json_object_set_new(o, "revoked", json_boolean(g->revoked)) == 0 &&
	    json_object_set_new(o, "revoked_at", json_integer(g->revoked_at)) == 0 &&
	    json_object_set_new(o, "revoked_by", json_string(g->revoked_by)) == 0 &&
	    json_object_set_new(o, "reason", json_string(g->reason)) == 0 &&
	    /* only once tried: records of untried grants read as before */
	    (g->credential == GRANT_CRED_UNTRIED ||
	     (json_object_set_new(o, "credential",
				  json_string(grant_credential_name(g->credential))) == 0 &&
	      json_object_set_new(o, "credential_at", json_integer(g->credential_at)) == 0 &&
	      json_object_set_new(o, "credential_error", json_string(g->credential_error)) == 0)))
		s = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(o);
	return s;
}

static int meta_str(json_t *o, const char *name, char *dst, size_t dstlen)
{
	json_t *j = json_object_get(o, name);

	if (!json_is_string(j) || json_string_length(j) >= dstlen ||
	    strlen(json_string_value(j)) != json_string_length(j))
		return -EBADMSG;
	memcpy(dst, json_string_value(j), json_string_length(j) + 1);
	return 0;
}

static int meta_int(json_t *o, const char *name, bool nullable, int64_t null_value,
		    int64_t *out)
{
	json_t *j = json_object_get(o, name);

	if (nullable && json_is_null(j)) {
		*out = null_value;
		return 0;
	}
	if (!json_is_integer(j))
		return -EBADMSG;
	*out = json_integer_value(j);
	return 0;
}

static int meta_list(json_t *o, const char *name, char ***out, size_t *n_out)
{
	json_t *a = json_object_get(o, name), *it;
	char **l = NULL;
	size_t n, i;

	if (!json_is_array(a))
		return -EBADMSG;
	n = json_array_size(a);
	if (n > 0) {
		l = calloc(n, sizeof(*l));
		if (l == NULL)
			return -ENOMEM;
	}
	json_array_foreach(a, i, it) {
		if (!json_is_string(it) || (l[i] = strdup(json_string_value(it))) == NULL) {
			for (size_t k = 0; k < i; k++)
				free(l[k]);
			free(l);
			return json_is_string(it) ? -ENOMEM : -EBADMSG;
		}
	}
	*out = l;
	*n_out = n;
	return 0;
}

/* Absent (a grant never tried, or stored before custody kept this): untried. */
static int meta_credential(json_t *o, struct grant *g)
{
	json_t *c = json_object_get(o, "credential");
	int rc;

	if (c == NULL)
		return 0;
	if (!json_is_string(c))
		return -EBADMSG;
	if (strcmp(json_string_value(c), "works") == 0)
		g->credential = GRANT_CRED_WORKS;
	else if (strcmp(json_string_value(c), "failed") == 0)
		g->credential = GRANT_CRED_FAILED;
	else
		return -EBADMSG;
	if ((rc = meta_int(o, "credential_at", false, 0, &g->credential_at)) < 0 ||
	    (rc = meta_str(o, "credential_error", g->credential_error,
			   sizeof(g->credential_error))) < 0)
		return rc;
	return 0;
}

static int meta_decode(const char *s, size_t len, const char *id, struct grant **out)
{
	json_t *o, *v;
	json_error_t jerr;
	struct grant *g = NULL;
	int rc = -EBADMSG;

	o = json_loadb(s, len, JSON_REJECT_DUPLICATES, &jerr);
	if (o == NULL)
		return -EBADMSG;
	v = json_object_get(o, "v");
	if (!json_is_object(o) || !json_is_integer(v) ||
	    json_integer_value(v) != GRANT_RECORD_VERSION)
		goto out;
	g = grant_new();
	if (g == NULL) {
		rc = -ENOMEM;
		goto out;
	}
	if (strlen(id) >= sizeof(g->id))
		goto out;
	strcpy(g->id, id);
	if ((rc = meta_str(o, "tenant_id", g->tenant_id, sizeof(g->tenant_id))) < 0 ||
	    (rc = meta_str(o, "tenant_name", g->tenant_name, sizeof(g->tenant_name))) < 0 ||
	    (rc = meta_str(o, "token_endpoint", g->token_endpoint, sizeof(g->token_endpoint))) < 0 ||
	    (rc = meta_str(o, "client_id", g->client_id, sizeof(g->client_id))) < 0 ||
	    (rc = meta_str(o, "revoked_by", g->revoked_by, sizeof(g->revoked_by))) < 0 ||
	    (rc = meta_str(o, "reason", g->reason, sizeof(g->reason))) < 0 ||
	    (rc = meta_int(o, "not_before", true, INT64_MIN, &g->not_before)) < 0 ||
	    (rc = meta_int(o, "not_after", true, INT64_MAX, &g->not_after)) < 0 ||
	    (rc = meta_int(o, "imported_at", false, 0, &g->imported_at)) < 0 ||
	    /* absent in records stored before it was kept: 0 */
	    (json_object_get(o, "imported_us") != NULL &&
	     (rc = meta_int(o, "imported_us", false, 0, &g->imported_us)) < 0) ||
	    (rc = meta_int(o, "revoked_at", false, 0, &g->revoked_at)) < 0 ||
	    (rc = meta_list(o, "scopes", &g->scopes, &g->n_scopes)) < 0 ||
	    (rc = meta_list(o, "principals", &g->principals, &g->n_principals)) < 0)
		goto out;
	if (!json_is_boolean(json_object_get(o, "revoked")) || g->n_scopes == 0) {
		rc = -EBADMSG;
		goto out;
	}
	g->revoked = json_is_true(json_object_get(o, "revoked"));
	rc = meta_credential(o, g);
	if (rc < 0)
		goto out;
	*out = g;
	g = NULL;
	rc = 0;
out:
	grant_free(g);
	json_decref(o);
	return rc;
}

int grant_record_build(const struct grant *g, const char *secret, size_t slen, uint8_t **out,
		       size_t *outlen)
{
	char *meta = meta_encode(g);
	size_t mlen, n;
	uint8_t *p;

	if (meta == NULL)
		return -ENOMEM;
	mlen = strlen(meta);
	n = 1 + 4 + slen + mlen;
	p = malloc(n + 1); /* holds the secret: vault_plain_free wipes it */
	if (p == NULL) {
		free(meta);
		return -ENOMEM;
	}
	p[0] = GRANT_RECORD_VERSION;
	for (int i = 0; i < 4; i++)
		p[1 + i] = (uint8_t)((uint32_t)slen >> (8 * i));
	if (slen > 0)
		memcpy(p + 5, secret, slen);
	memcpy(p + 5 + slen, meta, mlen);
	p[n] = 0;
	free(meta);
	*out = p;
	*outlen = n;
	return 0;
}

/* g and secret are optional. *secret points into pt. */
int grant_record_parse(const uint8_t *pt, size_t len, const char *id, struct grant **g,
		       const uint8_t **secret, size_t *slen)
{
	uint32_t n = 0;
	int rc;

	if (len < 5 || pt[0] != GRANT_RECORD_VERSION)
		return -EBADMSG;
	for (int i = 3; i >= 0; i--)
		n = (n << 8) | pt[1 + i];
	if (n > len - 5)
		return -EBADMSG;
	if (g != NULL) {
		rc = meta_decode((const char *)pt + 5 + n, len - 5 - n, id, g);
		if (rc < 0)
			return rc;
	}
	if (secret != NULL) {
		*secret = pt + 5;
		*slen = n;
	}
	return 0;
}
