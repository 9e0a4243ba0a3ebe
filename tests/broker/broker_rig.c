/* broker_rig.c — see broker_rig.h. */
#include "broker_rig.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <sodium.h>

static void rig_drained(struct broker *b)
{
	loop_stop(b->loop);
}

static int conn_new(struct rig *r)
{
	struct broker *b = &r->b;
	int sv[2];
	struct conn *c;

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0)
		return -errno;
	c = calloc(1, sizeof(*c));
	if (c == NULL || peer_from_socket(sv[0], &c->peer) < 0) {
		free(c);
		close(sv[0]);
		close(sv[1]);
		return -EIO;
	}
	c->b = b;
	c->fd = sv[0];
	c->admin = r->admin;
	c->max_line = b->cfg->limits.max_request_bytes;
	c->last_active_ms = loop_now_ms(b->loop);
	c->next = b->conns;
	if (b->conns != NULL)
		b->conns->prev = c;
	b->conns = c;
	if (r->admin)
		b->n_admin++;
	else
		b->n_tool++;
	r->c = c;
	r->peer_fd = sv[1];
	return 0;
}

int rig_open(struct rig *r, const char *config, bool admin)
{
	struct broker *b = &r->b;
	char tmpl[] = "/tmp/custody-rig-XXXXXX", *text = NULL, *db = NULL;
	struct audit_opts ao = {0};
	struct cerr err = {0};
	json_t *cfg = NULL;
	int rc;

	memset(r, 0, sizeof(*r));
	r->peer_fd = -1;
	r->admin = admin;
	b->sigfd = b->off_efd = b->tool_fd = b->admin_fd = -1;
	if (mkdtemp(tmpl) == NULL)
		return -errno;
	r->dir = strdup(tmpl);
	cfg = json_loads(config, 0, NULL);
	if (r->dir == NULL || cfg == NULL)
		return -EINVAL;
	json_object_set_new(cfg, "state_dir", json_string(r->dir));
	json_object_set_new(cfg, "runtime_dir", json_string(r->dir));
	if (sodium_init() < 0)
		return -EIO;
	if (asprintf(&b->config_path, "%s/custody.json", r->dir) < 0)
		return -ENOMEM;
	if (asprintf(&text, "%s/master.key", r->dir) < 0)
		return -ENOMEM;
	json_object_set_new(cfg, "key_file", json_string(text));
	free(text);
	/* the file too, so `reload` reads what is in force */
	rc = json_dump_file(cfg, b->config_path, 0) < 0 ? -EIO : 0;
	json_decref(cfg);
	if (rc == 0)
		rc = broker_config_load(b->config_path, &b->cfg, &err);
	if (rc < 0) {
		fprintf(stderr, "rig: config: %s\n", err.msg);
		return rc;
	}
	{
		struct vault_key_source src;

		broker_config_key_source(b->cfg, &src);
		if ((rc = vault_key_file_create(src.key_file, &err)) < 0 ||
		    (rc = vault_create(b->cfg->vault_dir, &src, &err)) < 0 ||
		    (rc = vault_open(b->cfg->vault_dir, &src, &b->vault, &err)) < 0) {
			fprintf(stderr, "rig: vault: %s\n", err.msg);
			return rc;
		}
	}
	if ((rc = loop_new(&b->loop)) < 0 || (rc = policy_new(&b->policy)) < 0)
		return rc;
	policy_set_config(b->policy, b->cfg);
	b->origin = strdup("custody.test/rig");
	if (b->origin == NULL)
		return -ENOMEM;
	b->signer.origin = b->origin;
	memcpy(b->signer.public_key, vault_public_keys(b->vault)->sign_pk, 32);
	b->signer.sign = vault_audit_sign;
	b->signer.ctx = b->vault;
	ao.signer = &b->signer;
	if (asprintf(&db, "%s/audit.db", r->dir) < 0)
		return -ENOMEM;
	rc = audit_open(db, &ao, &b->audit, &err);
	free(db);
	if (rc < 0)
		return rc;
	rc = loop_fd_add(b->loop, audit_event_fd(b->audit), EPOLLIN, pending_audit_ready, b);
	if (rc < 0)
		return rc;
	if ((rc = tokens_new(b->loop, b->vault, &b->cfg->upstream, &b->tokens)) < 0 ||
	    (rc = offload_init(b)) < 0)
		return rc;
	b->outcomes = json_object();
	b->on_line = dispatch_line;
	b->on_too_large = dispatch_too_large;
	b->on_foreign_sender = dispatch_foreign_sender;
	b->on_drained = rig_drained;
	b->started_us = util_now_us();
	return conn_new(r);
}

int rig_reconnect(struct rig *r)
{
	if (r->peer_fd >= 0)
		close(r->peer_fd);
	r->peer_fd = -1;
	if (r->c != NULL && !r->c->dead)
		conn_close(r->c);
	r->c = NULL;
	return conn_new(r);
}

void rig_line(struct rig *r, const char *line, size_t len)
{
	struct broker *b = &r->b;

	if (r->c == NULL || r->c->dead || r->c->closing)
		return;
	/* as the server does: a reference while the line is handled */
	r->c->refs++;
	b->on_line(r->c, line, len);
	if (b->n_pending > 0)
		loop_run(b->loop);
	if (r->c->dead) {
		conn_unref(r->c);
		r->c = NULL;
		return;
	}
	conn_unref(r->c);
}

json_t *rig_replies(struct rig *r)
{
	json_t *out = json_array();
	static char buf[1 << 20];
	size_t len = 0;
	ssize_t n;

	while (len < sizeof(buf) &&
	       (n = recv(r->peer_fd, buf + len, sizeof(buf) - len, MSG_DONTWAIT)) > 0)
		len += (size_t)n;
	for (size_t start = 0, i = 0; i < len; i++) {
		if (buf[i] != '\n')
			continue;
		json_t *v = json_loadb(buf + start, i - start, 0, NULL);

		json_array_append_new(out, v ? v : json_stringn(buf + start, i - start));
		start = i + 1;
	}
	return out;
}

void rig_close(struct rig *r)
{
	struct broker *b = &r->b;
	char cmd[256];

	offload_fini(b);
	if (r->c != NULL && !r->c->dead)
		conn_close(r->c);
	while (b->pend_head != NULL)
		pending_free(b->pend_head);
	if (b->tokens != NULL)
		tokens_free(b->tokens);
	if (r->peer_fd >= 0)
		close(r->peer_fd);
	if (b->audit != NULL) {
		loop_fd_del(b->loop, audit_event_fd(b->audit));
		(void)audit_close(b->audit);
	}
	if (b->vault != NULL)
		vault_close(b->vault);
	policy_free(b->policy);
	if (b->loop != NULL)
		loop_free(b->loop);
	json_decref(b->outcomes);
	free(b->origin);
	free(b->config_path);
	broker_config_free(b->cfg);
	peer_cache_free();
	if (r->dir != NULL) {
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", r->dir);
		if (system(cmd) != 0)
			fprintf(stderr, "rig: cannot remove %s\n", r->dir);
		free(r->dir);
	}
}
