/* reload.c — a new config in force without a restart (SIGHUP or the
 * admin socket's reload op: both call down here). The principals, roles,
 * limits and upstream settings change at once; settings that cannot
 * change in a running broker are named and wait for the next start.
 *
 * Among those: the audit store's checkpoint settings and witnesses (the
 * store is opened with them: exports end at what the quorum cosigned), the
 * witness client (its requests and jobs in flight point at each witness)
 * and the sinks (a sink's thread must have stopped, which can take seconds,
 * before another may take its cursor). */
#include "broker_int.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static bool str_differs(const char *a, const char *b)
{
	if (a == NULL || b == NULL)
		return a != b;
	return strcmp(a, b) != 0;
}

/* A setting that changed in the file but cannot change in a running
 * broker: named in the reload's reply, its audit record and the log, so
 * nobody believes a socket moved when it did not. */
static void not_applied(json_t *list, const char *key, const char *was, const char *now)
{
	broker_log("reload: %s changed (%s -> %s) but takes effect only at the next start",
		   key, was ? was : "(default)", now ? now : "(default)");
	if (list != NULL)
		json_array_append_new(list, json_sprintf("%s (%s -> %s)", key, was ? was : "(default)",
							 now ? now : "(default)"));
}

static void socket_not_applied(json_t *list, const char *name,
			       const struct broker_socket_config *was,
			       const struct broker_socket_config *now)
{
	char key[64], a[16], c[16];

	snprintf(key, sizeof(key), "%s.path", name);
	if (str_differs(was->path, now->path))
		not_applied(list, key, was->path, now->path);
	snprintf(key, sizeof(key), "%s.mode", name);
	snprintf(a, sizeof(a), "%04o", (unsigned)was->mode);
	snprintf(c, sizeof(c), "%04o", (unsigned)now->mode);
	if (was->mode != now->mode)
		not_applied(list, key, a, c);
	snprintf(key, sizeof(key), "%s.group", name);
	if (str_differs(was->group, now->group))
		not_applied(list, key, was->group, now->group);
}

/* "a, b, c" or "(none)", cut to the buffer. */
static const char *names(char *buf, size_t len, size_t n, const char *(*name)(const void *, size_t),
			 const void *arr)
{
	size_t at = 0;

	snprintf(buf, len, "(none)");
	for (size_t i = 0; i < n && at < len; i++)
		at += (size_t)snprintf(buf + at, len - at, "%s%s", i ? ", " : "", name(arr, i));
	return buf;
}

static const char *witness_name(const void *arr, size_t i)
{
	return ((const struct broker_witness_config *)arr)[i].name;
}

static const char *sink_name(const void *arr, size_t i)
{
	return ((const struct broker_ship_config *)arr)[i].name;
}

/* Is every name of a (n of them) among b's m? */
static bool names_within(size_t n, const void *a, size_t m, const void *b,
			 const char *(*name)(const void *, size_t))
{
	for (size_t i = 0; i < n; i++) {
		size_t k = 0;

		while (k < m && strcmp(name(a, i), name(b, k)) != 0)
			k++;
		if (k == m)
			return false;
	}
	return true;
}

/* A number that cannot change in a running broker. */
static void num_not_applied(json_t *list, const char *key, unsigned long long was,
			    unsigned long long now)
{
	char a[24], c[24];

	if (was == now)
		return;
	snprintf(a, sizeof(a), "%llu", was);
	snprintf(c, sizeof(c), "%llu", now);
	not_applied(list, key, a, c);
}

/* A setting of a list element that keeps its name: "audit.ship[NAME].ca_file". */
static void member_not_applied(json_t *list, const char *section, const char *name,
			       const char *field, const char *was, const char *now)
{
	char key[640];

	if (!str_differs(was, now))
		return;
	snprintf(key, sizeof(key), "%s[%s].%s", section, name, field);
	not_applied(list, key, was, now);
}

/* Witnesses added or removed (by name), then each kept one's settings. */
static void witnesses_not_applied(json_t *list, const struct broker_config *was,
				  const struct broker_config *now)
{
	char a[512], c[512];

	if (was->n_witnesses != now->n_witnesses ||
	    !names_within(was->n_witnesses, was->witnesses, now->n_witnesses, now->witnesses,
			  witness_name))
		not_applied(list, "audit.witnesses",
			    names(a, sizeof(a), was->n_witnesses, witness_name, was->witnesses),
			    names(c, sizeof(c), now->n_witnesses, witness_name, now->witnesses));
	for (size_t i = 0; i < was->n_witnesses; i++)
		for (size_t k = 0; k < now->n_witnesses; k++) {
			const struct broker_witness_config *w = &was->witnesses[i], *v = &now->witnesses[k];

			if (strcmp(w->name, v->name) != 0)
				continue;
			member_not_applied(list, "audit.witnesses", w->name, "url", w->url, v->url);
			member_not_applied(list, "audit.witnesses", w->name, "key", w->key, v->key);
			member_not_applied(list, "audit.witnesses", w->name, "ca_file", w->ca_file,
					   v->ca_file);
		}
	num_not_applied(list, "audit.witness_quorum", was->witness_quorum, now->witness_quorum);
}

/* Sinks added or removed (a sink's name is its type and URL or path), then
 * each kept one's TLS files. */
static void ship_not_applied(json_t *list, const struct broker_config *was,
			     const struct broker_config *now)
{
	char a[1024], c[1024];

	if (was->n_ship != now->n_ship ||
	    !names_within(was->n_ship, was->ship, now->n_ship, now->ship, sink_name))
		not_applied(list, "audit.ship", names(a, sizeof(a), was->n_ship, sink_name, was->ship),
			    names(c, sizeof(c), now->n_ship, sink_name, now->ship));
	for (size_t i = 0; i < was->n_ship; i++)
		for (size_t k = 0; k < now->n_ship; k++) {
			const struct broker_ship_config *w = &was->ship[i], *v = &now->ship[k];

			if (strcmp(w->name, v->name) != 0)
				continue;
			member_not_applied(list, "audit.ship", w->name, "ca_file", w->ca_file,
					   v->ca_file);
			member_not_applied(list, "audit.ship", w->name, "cert_file", w->cert_file,
					   v->cert_file);
			member_not_applied(list, "audit.ship", w->name, "key_file", w->key_file,
					   v->key_file);
		}
}

static void audit_not_applied(json_t *list, const struct broker_config *was,
			      const struct broker_config *now)
{
	if (str_differs(now->audit_origin, was->audit_origin))
		not_applied(list, "audit.origin", was->audit_origin, now->audit_origin);
	num_not_applied(list, "audit.checkpoint_every", was->checkpoint_every,
			now->checkpoint_every);
	num_not_applied(list, "audit.checkpoint_interval_s", was->checkpoint_interval_s,
			now->checkpoint_interval_s);
	witnesses_not_applied(list, was, now);
	ship_not_applied(list, was, now);
}

#define SWAP(a, b) do { __typeof__(a) t_ = (a); (a) = (b); (b) = t_; } while (0)

/* The settings that run stay in the config the broker keeps (the new
 * file's go with the old config, to be freed): the next reload compares
 * against what runs and names a change again until a restart applies it. */
static void keep_running(struct broker_config *was, struct broker_config *now)
{
	SWAP(was->state_dir, now->state_dir);   /* and the paths made from it */
	SWAP(was->vault_dir, now->vault_dir);
	SWAP(was->audit_db, now->audit_db);
	SWAP(was->runtime_dir, now->runtime_dir);
	SWAP(was->key_file, now->key_file);
	SWAP(was->passphrase_file, now->passphrase_file);
	SWAP(was->tool_socket, now->tool_socket);
	SWAP(was->admin_socket, now->admin_socket);
	SWAP(was->audit_origin, now->audit_origin);
	SWAP(was->checkpoint_every, now->checkpoint_every);
	SWAP(was->checkpoint_interval_s, now->checkpoint_interval_s);
	SWAP(was->witnesses, now->witnesses);
	SWAP(was->n_witnesses, now->n_witnesses);
	SWAP(was->witness_quorum, now->witness_quorum);
	SWAP(was->ship, now->ship);
	SWAP(was->n_ship, now->n_ship);
}

int broker_reload(struct broker *b, struct cerr *err, json_t *list)
{
	struct broker_config *nc = NULL;
	int rc;

	rc = broker_config_load(b->config_path, &nc, err);
	if (rc < 0) {
		broker_log("reload failed, the running policy stays: %s", err->msg);
		return -EINVAL;
	}
	rc = tokens_configure(b->tokens, &nc->upstream);
	if (rc < 0) {
		cerr_set(err, rc, "cannot apply the upstream settings: %s", strerror(-rc));
		broker_config_free(nc);
		return -EINVAL;
	}
	if (str_differs(nc->state_dir, b->cfg->state_dir))
		not_applied(list, "state_dir", b->cfg->state_dir, nc->state_dir);
	if (str_differs(nc->runtime_dir, b->cfg->runtime_dir))
		not_applied(list, "runtime_dir", b->cfg->runtime_dir, nc->runtime_dir);
	if (str_differs(nc->key_file, b->cfg->key_file))
		not_applied(list, "key_file", b->cfg->key_file, nc->key_file);
	if (str_differs(nc->passphrase_file, b->cfg->passphrase_file))
		not_applied(list, "passphrase_file", b->cfg->passphrase_file, nc->passphrase_file);
	socket_not_applied(list, "tool_socket", &b->cfg->tool_socket, &nc->tool_socket);
	socket_not_applied(list, "admin_socket", &b->cfg->admin_socket, &nc->admin_socket);
	audit_not_applied(list, b->cfg, nc);
	keep_running(b->cfg, nc);
	policy_set_config(b->policy, nc);
	broker_config_free(b->cfg);
	b->cfg = nc;
	broker_log("reloaded %s: %zu principals", b->config_path, nc->n_principals);
	return 0;
}
