/* vault_state.c — officer state that must survive a restart: suspended
 * principals and lockdown. Encrypted records like the grants, so they are
 * authenticated too (a changed suspension fails to decrypt). */
#include "vault_private.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#define SUSPEND_PREFIX "suspend/"
#define LOCKDOWN_KEY "lockdown"
#define ACTOR_MAX 127
#define REASON_MAX 511
#define NAME_MAX_LEN 255

static int state_put(struct vault *v, const char *k, bool on, const char *actor,
		     const char *reason, int64_t at)
{
	json_t *o;
	char *s = NULL;
	int rc;

	actor = actor != NULL ? actor : "";
	reason = reason != NULL ? reason : "";
	if (strlen(actor) > ACTOR_MAX || strlen(reason) > REASON_MAX)
		return -EINVAL;
	o = json_pack("{s:b, s:s, s:s, s:I}", "on", on, "actor", actor, "reason", reason, "at",
		      (json_int_t)at);
	if (o == NULL)
		return -EINVAL; /* invalid UTF-8 in actor or reason */
	s = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(o);
	if (s == NULL)
		return -ENOMEM;
	rc = vault_put(v, v->db_state, REC_STATE, k, (const uint8_t *)s, strlen(s), 0);
	free(s);
	return rc;
}

/* Decode a state record; actor/reason buffers are 128 and 512 bytes. */
static int state_decode(const uint8_t *pt, size_t len, bool *on, char *actor, char *reason,
			int64_t *at)
{
	json_t *o, *jon, *ja, *jr, *jat;
	json_error_t jerr;
	int rc = -EBADMSG;

	o = json_loadb((const char *)pt, len, JSON_REJECT_DUPLICATES, &jerr);
	if (o == NULL)
		return -EBADMSG;
	jon = json_object_get(o, "on");
	ja = json_object_get(o, "actor");
	jr = json_object_get(o, "reason");
	jat = json_object_get(o, "at");
	if (!json_is_boolean(jon) || !json_is_string(ja) || !json_is_string(jr) ||
	    !json_is_integer(jat) || json_string_length(ja) > ACTOR_MAX ||
	    json_string_length(jr) > REASON_MAX)
		goto out;
	if (on != NULL)
		*on = json_is_true(jon);
	if (actor != NULL)
		snprintf(actor, ACTOR_MAX + 1, "%s", json_string_value(ja));
	if (reason != NULL)
		snprintf(reason, REASON_MAX + 1, "%s", json_string_value(jr));
	if (at != NULL)
		*at = json_integer_value(jat);
	rc = 0;
out:
	json_decref(o);
	return rc;
}

static int suspend_key(const char *name, char **k)
{
	size_t n;

	if (name == NULL)
		return -EINVAL;
	n = strlen(name);
	if (n == 0 || n > NAME_MAX_LEN || !util_utf8_valid(name, n))
		return -EINVAL;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)name[i] < 0x20 || name[i] == 0x7f)
			return -EINVAL;
	if (asprintf(k, "%s%s", SUSPEND_PREFIX, name) < 0)
		return -ENOMEM;
	return 0;
}

int vault_principal_suspend(struct vault *v, const char *name, const char *actor,
			    const char *reason, int64_t now_s)
{
	char *k = NULL;
	int rc;

	rc = suspend_key(name, &k);
	if (rc < 0)
		return rc;
	rc = state_put(v, k, true, actor, reason, now_s);
	free(k);
	return rc;
}

int vault_principal_resume(struct vault *v, const char *name)
{
	MDB_txn *txn = NULL;
	MDB_val key;
	char *k = NULL;
	int rc;

	rc = suspend_key(name, &k);
	if (rc < 0)
		return rc == -EINVAL ? -ENOENT : rc;
	key.mv_data = k;
	key.mv_size = strlen(k);
	rc = mdb_txn_begin(v->env, NULL, 0, &txn);
	if (rc == 0)
		rc = mdb_del(txn, v->db_state, &key, NULL);
	if (rc == 0) {
		rc = mdb_txn_commit(txn);
		txn = NULL;
	}
	if (txn != NULL)
		mdb_txn_abort(txn);
	free(k);
	return vault_mdb_errno(rc);
}

struct suspended {
	char *name;
	char actor[ACTOR_MAX + 1];
	char reason[REASON_MAX + 1];
	int64_t at;
};

int vault_principal_foreach_suspended(struct vault *v,
				      int (*cb)(void *ctx, const char *name, const char *actor,
						const char *reason, int64_t at),
				      void *ctx)
{
	const size_t plen = strlen(SUSPEND_PREFIX);
	MDB_txn *txn = NULL;
	MDB_cursor *cur = NULL;
	MDB_val k, val;
	struct suspended *all = NULL;
	size_t n = 0, cap = 0;
	int rc, mrc;

	rc = vault_mdb_errno(mdb_txn_begin(v->env, NULL, MDB_RDONLY, &txn));
	if (rc < 0)
		return rc;
	rc = vault_mdb_errno(mdb_cursor_open(txn, v->db_state, &cur));
	if (rc < 0)
		goto out;
	k.mv_data = (void *)SUSPEND_PREFIX;
	k.mv_size = plen;
	for (mrc = mdb_cursor_get(cur, &k, &val, MDB_SET_RANGE); mrc == 0;
	     mrc = mdb_cursor_get(cur, &k, &val, MDB_NEXT)) {
		uint8_t *pt = NULL;
		size_t ptlen = 0;
		bool on = false;

		if (k.mv_size < plen || memcmp(k.mv_data, SUSPEND_PREFIX, plen) != 0)
			break;
		if (n == cap) {
			size_t ncap = cap == 0 ? 8 : cap * 2;
			struct suspended *na = realloc(all, ncap * sizeof(*na));

			if (na == NULL) {
				rc = -ENOMEM;
				goto out;
			}
			all = na;
			cap = ncap;
		}
		all[n].name = strndup((const char *)k.mv_data + plen, k.mv_size - plen);
		if (all[n].name == NULL) {
			rc = -ENOMEM;
			goto out;
		}
		n++;
		rc = vault_record_open(v->sec->rec, REC_STATE, k.mv_data, k.mv_size, val.mv_data,
				       val.mv_size, &pt, &ptlen);
		if (rc == 0)
			rc = state_decode(pt, ptlen, &on, all[n - 1].actor, all[n - 1].reason,
					  &all[n - 1].at);
		vault_plain_free(pt, ptlen);
		if (rc < 0)
			goto out;
	}
	if (mrc != 0 && mrc != MDB_NOTFOUND) {
		rc = vault_mdb_errno(mrc);
		goto out;
	}
	mdb_cursor_close(cur);
	cur = NULL;
	mdb_txn_abort(txn);
	txn = NULL;
	rc = 0;
	for (size_t i = 0; i < n && rc == 0; i++)
		rc = cb(ctx, all[i].name, all[i].actor, all[i].reason, all[i].at);
out:
	if (cur != NULL)
		mdb_cursor_close(cur);
	if (txn != NULL)
		mdb_txn_abort(txn);
	for (size_t i = 0; i < n; i++)
		free(all[i].name);
	free(all);
	return rc;
}

int vault_lockdown_set(struct vault *v, bool on, const char *actor, const char *reason,
		       int64_t now_s)
{
	return state_put(v, LOCKDOWN_KEY, on, actor, reason, now_s);
}

int vault_lockdown_get(struct vault *v, bool *on, char *actor, char *reason, int64_t *at)
{
	uint8_t *pt = NULL;
	size_t ptlen = 0;
	bool o = false;
	int64_t t = 0;
	int rc;

	rc = vault_get(v, v->db_state, REC_STATE, LOCKDOWN_KEY, &pt, &ptlen);
	if (rc == -ENOENT) {
		/* never set: not locked down */
		*on = false;
		if (actor != NULL)
			actor[0] = '\0';
		if (reason != NULL)
			reason[0] = '\0';
		if (at != NULL)
			*at = 0;
		return 0;
	}
	if (rc < 0)
		return rc;
	rc = state_decode(pt, ptlen, &o, actor, reason, &t);
	vault_plain_free(pt, ptlen);
	if (rc < 0)
		return rc;
	*on = o;
	if (at != NULL)
		*at = t;
	return 0;
}
