/* reload.c — a new config in force without a restart (SIGHUP or the
 * admin socket's reload op: both call down here). The principals, roles,
 * limits and upstream settings change at once; settings that cannot
 * change in a running broker are named and wait for the next start. */
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
	if (str_differs(nc->key_file, b->cfg->key_file))
		not_applied(list, "key_file", b->cfg->key_file, nc->key_file);
	if (str_differs(nc->passphrase_file, b->cfg->passphrase_file))
		not_applied(list, "passphrase_file", b->cfg->passphrase_file, nc->passphrase_file);
	socket_not_applied(list, "tool_socket", &b->cfg->tool_socket, &nc->tool_socket);
	socket_not_applied(list, "admin_socket", &b->cfg->admin_socket, &nc->admin_socket);
	if (str_differs(nc->audit_origin, b->cfg->audit_origin))
		not_applied(list, "audit.origin", b->cfg->audit_origin, nc->audit_origin);
	policy_set_config(b->policy, nc);
	broker_config_free(b->cfg);
	b->cfg = nc;
	broker_log("reloaded %s: %zu principals", b->config_path, nc->n_principals);
	return 0;
}
