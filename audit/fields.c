/* fields.c — a record from a flat member list instead of a jansson tree.
 *
 * Why: a token from the cache is the busiest thing custodyd does, and
 * building its record as a tree (a hash table, an allocation per member
 * and per string, then walking and freeing it) was a third of the loop
 * thread's time per token. The list lives on the caller's stack, the
 * values are borrowed, and the canonical body is written in one pass:
 * the members sorted by key (insertion sort, a few dozen at most), each
 * encoded by the same functions as audit_canonical_json (canon.c). The
 * result is byte for byte what audit_item_new makes of the equivalent
 * object, placeholders for the store's own members included
 * (tests/unit/test_audit_canon.c compares the two).
 *
 * Stricter than the tree path where that path is silent: a key given
 * twice or one of the store's own keys is an error, not an overwrite.
 */
#include "audit_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static const char *const store_keys[AUDIT_PH_COUNT] = {"seq", "tenant_prev", "tenant_seq", "time"};

static void add(struct audit_fields *f, struct audit_field e)
{
	if (f->n >= AUDIT_FIELDS_MAX) {
		f->overflow = true;
		return;
	}
	f->f[f->n++] = e;
}

void audit_fields_str(struct audit_fields *f, const char *key, const char *str)
{
	add(f, (struct audit_field){.key = key, .str = str});
}

void audit_fields_int(struct audit_fields *f, const char *key, int64_t v)
{
	add(f, (struct audit_field){.key = key, .num = v, .is_num = true});
}

void audit_fields_json(struct audit_fields *f, const char *key, json_t *v)
{
	add(f, (struct audit_field){.key = key, .json = v});
}

void audit_fields_raw(struct audit_fields *f, const char *key, const char *text, size_t len)
{
	add(f, (struct audit_field){.key = key, .raw = text, .raw_len = len});
}

/* One member of the body: a caller's field, or a placeholder (ph >= 0). */
struct member {
	const char *key;
	size_t klen;
	const struct audit_field *v;
	int ph;
};

/* A column's value: a string, NULL for null; -EINVAL for anything else. */
static int column(const struct audit_field *v, const char **out)
{
	*out = NULL;
	if (v->str != NULL) {
		*out = v->str;
		return 0;
	}
	if (v->json != NULL && json_is_string(v->json)) {
		*out = json_string_value(v->json);
		return 0;
	}
	if (v->is_num || v->raw != NULL || (v->json != NULL && !json_is_null(v->json)))
		return -EINVAL;
	return 0;
}

static int insert(struct member *m, size_t *n, struct member e)
{
	size_t j = (*n)++;

	while (j > 0) {
		/* the first byte decides most comparisons */
		int c = (unsigned char)m[j - 1].key[0] - (unsigned char)e.key[0];

		if (c == 0)
			c = audit_key_cmp(m[j - 1].key, m[j - 1].klen, e.key, e.klen);

		if (c == 0)
			return -EINVAL; /* a key twice */
		if (c < 0)
			break;
		m[j] = m[j - 1];
		j--;
	}
	m[j] = e;
	return 0;
}

static int put_member_value(struct audit_jbuf *b, const struct audit_field *v)
{
	if (v->str != NULL)
		return audit_jbuf_string(b, v->str, strlen(v->str));
	if (v->json != NULL)
		return audit_jbuf_value(b, v->json, true);
	if (v->raw != NULL)
		return audit_jbuf_raw(b, v->raw, v->raw_len);
	if (v->is_num)
		return audit_jbuf_int(b, v->num);
	return audit_jbuf_raw(b, "null", 4);
}

int audit_item_copy_columns(struct audit_item *it, const char *const s[4])
{
	size_t len[4], total = 0;
	char *p;

	for (int i = 0; i < 4; i++) {
		len[i] = s[i] ? strlen(s[i]) + 1 : 0;
		total += len[i];
	}
	it->strs = malloc(total ? total : 1);
	if (it->strs == NULL)
		return -ENOMEM;
	p = it->strs;
	for (int i = 0; i < 4; i++) {
		it->col[i] = s[i] ? p : NULL;
		if (s[i]) {
			memcpy(p, s[i], len[i]);
			p += len[i];
		}
	}
	return 0;
}

int audit_item_from_fields(struct audit *a, const struct audit_fields *f,
			   struct audit_item **out)
{
	static const char *const col_keys[4] = {"event", "outcome", "tenant", "principal"};
	struct member m[AUDIT_FIELDS_MAX + AUDIT_PH_COUNT];
	const char *col[4] = {NULL};
	bool has_event = false;
	struct audit_jbuf b = {0};
	struct audit_item *it = NULL;
	size_t n = 0;
	int rc = -EINVAL;

	if (f->overflow || f->n > AUDIT_FIELDS_MAX)
		return -EINVAL;
	for (size_t i = 0; i < f->n; i++) {
		const struct audit_field *v = &f->f[i];

		if (v->key == NULL)
			return -EINVAL;
		for (int k = 0; k < AUDIT_PH_COUNT; k++)
			if (v->key[0] == store_keys[k][0] && strcmp(v->key, store_keys[k]) == 0)
				return -EINVAL;
		for (int k = 0; k < 4; k++) {
			if (v->key[0] != col_keys[k][0] || strcmp(v->key, col_keys[k]) != 0)
				continue;
			if (column(v, &col[k]) < 0)
				return -EINVAL;
			if (k == 0)
				has_event = col[0] != NULL;
		}
		rc = insert(m, &n, (struct member){v->key, strlen(v->key), v, -1});
		if (rc < 0)
			return rc;
	}
	if (!has_event)
		return -EINVAL;
	for (int k = 0; k < AUDIT_PH_COUNT; k++) {
		/* tenant_prev and tenant_seq only on a tenant's records */
		if (col[2] == NULL && (k == AUDIT_PH_TPREV || k == AUDIT_PH_TSEQ))
			continue;
		rc = insert(m, &n, (struct member){store_keys[k], strlen(store_keys[k]), NULL, k});
		if (rc < 0)
			return rc;
	}
	rc = -ENOMEM;
	it = calloc(1, sizeof(*it));
	if (it == NULL)
		goto out;
	it->has_tenant = col[2] != NULL;
	rc = audit_item_copy_columns(it, col);
	if (rc == 0)
		rc = audit_jbuf_raw(&b, "{", 1);
	for (size_t i = 0; rc == 0 && i < n; i++) {
		if (i > 0)
			rc = audit_jbuf_raw(&b, ",", 1);
		if (rc == 0 && m[i].ph >= 0) {
			it->ph_off[m[i].ph] = b.len;
			rc = audit_jbuf_raw(&b, a->ph_member[m[i].ph], a->ph_member_len[m[i].ph]);
			continue;
		}
		if (rc == 0)
			rc = audit_jbuf_string(&b, m[i].key, m[i].klen);
		if (rc == 0)
			rc = audit_jbuf_raw(&b, ":", 1);
		if (rc == 0)
			rc = put_member_value(&b, m[i].v);
	}
	if (rc == 0)
		rc = audit_jbuf_raw(&b, "}", 1);
	if (rc < 0)
		goto out;
	it->body0 = audit_jbuf_finish(&b, &it->len0);
	rc = -ENOMEM;
	if (it->body0 == NULL)
		goto out;
	rc = -EINVAL;
	if (it->len0 > AUDIT_BODY_MAX)
		goto out;
	*out = it;
	it = NULL;
	rc = 0;
out:
	audit_jbuf_free(&b);
	audit_item_free(it);
	return rc;
}
