/* record.c — a record's canonical body, prepared on the appender's thread.
 *
 * Canonical JSON: the bytes of jansson's json_dumps with JSON_COMPACT |
 * JSON_SORT_KEYS | JSON_ENSURE_ASCII (keys in byte order, no spaces,
 * everything outside ASCII as \uXXXX escapes), written by
 * audit_canonical_json (canon.c), so the same record always gives the
 * same bytes and a re-encoding of a stored body gives it back unchanged.
 *
 * The store's own members (seq, time, tenant_seq, tenant_prev) are known
 * only to the writer. So that the writer does not serialise under its
 * lock-step, the appender serialises the record with placeholder strings
 * for them and the writer splices the values in. A placeholder is
 * "\u0001" + a random per-store nonce + a letter: no caller can produce
 * it, so each `"key":"<placeholder>"` occurs exactly once, at top level. */
#include "audit_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

static const char *const store_keys[AUDIT_PH_COUNT] = {"seq", "tenant_prev", "tenant_seq", "time"};

void audit_placeholders_init(struct audit *a)
{
	uint8_t r[16];
	char hex[33];

	randombytes_buf(r, sizeof(r));
	sodium_bin2hex(hex, sizeof(hex), r, sizeof(r));
	for (int i = 0; i < AUDIT_PH_COUNT; i++) {
		/* raw value, and how the canonical encoding writes its member */
		snprintf(a->ph[i], sizeof(a->ph[i]), "\x01%s%c", hex, 'A' + i);
		snprintf(a->ph_member[i], sizeof(a->ph_member[i]), "\"%s\":\"\\u0001%s%c\"",
			 store_keys[i], hex, 'A' + i);
		a->ph_member_len[i] = strlen(a->ph_member[i]);
	}
}

static bool string_or_null(json_t *v)
{
	return v == NULL || json_is_null(v) || json_is_string(v);
}

void audit_item_free(struct audit_item *it)
{
	if (it == NULL)
		return;
	free(it->body0);
	free(it->strs);
	free(it);
}

int audit_item_new(struct audit *a, json_t *fields, struct audit_item **out)
{
	json_t *ev = json_object_get(fields, "event"), *oc = json_object_get(fields, "outcome");
	json_t *tn = json_object_get(fields, "tenant"), *pr = json_object_get(fields, "principal");
	const char *s[4];
	struct audit_item *it = NULL;
	const char *key;
	json_t *v;
	int rc = -EINVAL;

	if (!json_is_object(fields) || !json_is_string(ev) || !string_or_null(oc) ||
	    !string_or_null(tn) || !string_or_null(pr))
		goto out;
	/* a key with an embedded NUL would sort differently than it reads */
	json_object_foreach(fields, key, v) {
		if (strlen(key) != json_object_iter_key_len(json_object_key_to_iter(key)))
			goto out;
	}
	rc = -ENOMEM;
	it = calloc(1, sizeof(*it));
	if (it == NULL)
		goto out;
	s[0] = json_string_value(ev);
	s[1] = json_string_value(oc);
	s[2] = json_string_value(tn);
	s[3] = json_string_value(pr);
	/* the indexed columns, copied so the JSON can go now */
	if (audit_item_copy_columns(it, s) < 0)
		goto out;
	it->has_tenant = s[2] != NULL;
	if (json_object_set_new(fields, "seq", json_string(a->ph[AUDIT_PH_SEQ])) < 0 ||
	    json_object_set_new(fields, "time", json_string(a->ph[AUDIT_PH_TIME])) < 0)
		goto out;
	if (it->has_tenant) {
		if (json_object_set_new(fields, "tenant_prev", json_string(a->ph[AUDIT_PH_TPREV])) < 0 ||
		    json_object_set_new(fields, "tenant_seq", json_string(a->ph[AUDIT_PH_TSEQ])) < 0)
			goto out;
	} else {
		json_object_del(fields, "tenant_prev");
		json_object_del(fields, "tenant_seq");
	}
	it->body0 = audit_canonical_json(fields, &it->len0);
	if (it->body0 == NULL)
		goto out;
	rc = -EINVAL;
	if (it->len0 > AUDIT_BODY_MAX || audit_item_find_placeholders(a, it) < 0)
		goto out;
	*out = it;
	it = NULL;
	rc = 0;
out:
	audit_item_free(it);
	json_decref(fields);
	return rc;
}

int audit_item_find_placeholders(const struct audit *a, struct audit_item *it)
{
	const char *pos = it->body0, *end = it->body0 + it->len0;

	/* sorted keys: the members come in the order seq, tenant_prev,
	 * tenant_seq, time, each exactly once (no caller can write one) */
	for (int i = 0; i < AUDIT_PH_COUNT; i++) {
		const char *hit;

		if (!it->has_tenant && (i == AUDIT_PH_TPREV || i == AUDIT_PH_TSEQ))
			continue;
		hit = memmem(pos, (size_t)(end - pos), a->ph_member[i], a->ph_member_len[i]);
		if (hit == NULL)
			return -EINVAL;
		it->ph_off[i] = (size_t)(hit - it->body0);
		pos = hit + a->ph_member_len[i];
	}
	return 0;
}

/* Append n bytes to the body buffer. */
static int put(char **buf, size_t *len, size_t *cap, const char *s, size_t n)
{
	if (*len + n + 1 > *cap) {
		size_t nc = (*len + n + 1) * 2;
		char *nb = realloc(*buf, nc);

		if (nb == NULL)
			return -ENOMEM;
		*buf = nb;
		*cap = nc;
	}
	memcpy(*buf + *len, s, n);
	*len += n;
	(*buf)[*len] = '\0';
	return 0;
}

/* "key": followed by a decimal, without printf (the writer's hot loop) */
static size_t member_num(char out[static 128], const char *key, uint64_t v)
{
	char tmp[24];
	size_t n = 0, o = strlen(key);

	memcpy(out, key, o);
	do {
		tmp[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v != 0);
	while (n > 0)
		out[o++] = tmp[--n];
	return o;
}

/* "key":"text" for text that needs no escaping (a time, hex) */
static size_t member_str(char out[static 128], const char *key, const char *text)
{
	size_t o = strlen(key), tl = strlen(text);

	memcpy(out, key, o);
	out[o++] = '"';
	memcpy(out + o, text, tl);
	o += tl;
	out[o++] = '"';
	return o;
}

int audit_body_splice(const struct audit *a, const struct audit_item *it, uint64_t seq,
		      const char *time, uint64_t tenant_seq, const char *tenant_prev_hex,
		      char **buf, size_t *cap, size_t *len_out)
{
	char member[AUDIT_PH_COUNT][128];
	size_t mlen[AUDIT_PH_COUNT];
	size_t pos = 0, len = 0;
	int rc;

	if (strlen(time) > 64 || (tenant_prev_hex != NULL && strlen(tenant_prev_hex) > 64))
		return -EINVAL;
	mlen[AUDIT_PH_SEQ] = member_num(member[AUDIT_PH_SEQ], "\"seq\":", seq);
	mlen[AUDIT_PH_TIME] = member_str(member[AUDIT_PH_TIME], "\"time\":", time);
	mlen[AUDIT_PH_TSEQ] = member_num(member[AUDIT_PH_TSEQ], "\"tenant_seq\":", tenant_seq);
	if (tenant_prev_hex)
		mlen[AUDIT_PH_TPREV] = member_str(member[AUDIT_PH_TPREV], "\"tenant_prev\":",
						  tenant_prev_hex);
	else {
		static const char tp_null[] = "\"tenant_prev\":null";

		memcpy(member[AUDIT_PH_TPREV], tp_null, sizeof(tp_null) - 1);
		mlen[AUDIT_PH_TPREV] = sizeof(tp_null) - 1;
	}
	/* the placeholders' places were found when the body was made; they
	 * come in key order, seq, tenant_prev, tenant_seq, time */
	for (int i = 0; i < AUDIT_PH_COUNT; i++) {
		size_t at = it->ph_off[i];

		if (!it->has_tenant && (i == AUDIT_PH_TPREV || i == AUDIT_PH_TSEQ))
			continue;
		if (at < pos || at + a->ph_member_len[i] > it->len0)
			return -EINVAL;
		rc = put(buf, &len, cap, it->body0 + pos, at - pos);
		if (rc == 0)
			rc = put(buf, &len, cap, member[i], mlen[i]);
		if (rc < 0)
			return rc;
		pos = at + a->ph_member_len[i];
	}
	rc = put(buf, &len, cap, it->body0 + pos, it->len0 - pos);
	if (rc < 0)
		return rc;
	*len_out = len;
	return 0;
}
