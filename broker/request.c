/* request.c — framing and validation of request lines, and the life of a
 * request: parsed → audited → (durable) → answered.
 *
 * A line must be valid UTF-8 and exactly one JSON object with nothing after
 * it; duplicate keys, unknown fields and wrong types are bad_request naming
 * the field. A line that is not JSON at all (an HTTP request line sent to
 * the socket by mistake, say) is answered once and the connection closed:
 * whatever sent it does not speak this protocol.
 */
#include "broker_int.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

json_t *reply_new(json_t *id, bool ok)
{
	return json_pack("{s:i,s:O,s:b}", "v", 1, "id", id ? id : json_null(), "ok", ok);
}

json_t *reply_error(json_t *id, const char *code, const char *fmt, ...)
{
	char msg[512];
	json_t *r;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	r = reply_new(id, false);
	if (r == NULL)
		return NULL;
	json_object_set_new(r, "error", json_string(code));
	/* messages may quote client input: keep them valid JSON strings */
	json_object_set_new(r, "message",
			    util_utf8_valid(msg, strlen(msg)) ? json_string(msg)
							      : json_string("(message not shown)"));
	return r;
}

json_t *record_new(struct broker *b, const char *event, const char *outcome,
		   struct conn *c, const char *principal, json_t *id)
{
	json_t *r = json_pack("{s:s,s:s}", "event", event, "outcome", outcome);

	if (r == NULL)
		return NULL;
	if (c != NULL) {
		json_object_set_new(r, "peer", peer_json(&c->peer));
		if (c->admin)
			json_object_set_new(r, "actor", json_string(c->peer.user));
	}
	if (principal != NULL && principal[0] != '\0')
		json_object_set_new(r, "principal", json_string(principal));
	if (id != NULL && !json_is_null(id))
		json_object_set(r, "request_id", id);
	return r;
}

struct pending *pending_new(struct broker *b, struct conn *c)
{
	struct pending *p = calloc(1, sizeof(*p));

	if (p == NULL)
		return NULL;
	p->b = b;
	p->principal_ix = -1;
	p->conn = c;
	if (c != NULL) {
		c->refs++;
		c->inflight++;
	}
	/* link at the tail: completions come back in order */
	p->prev = b->pend_tail;
	if (b->pend_tail != NULL)
		b->pend_tail->next = p;
	else
		b->pend_head = p;
	b->pend_tail = p;
	b->n_pending++;
	return p;
}

/* The token copy lives only between the upstream answer and the reply:
 * plain malloc, wiped before it is freed (sodium_malloc's guard pages cost
 * an mmap/mprotect/munmap per token, with TLB shootdowns across threads). */
void pending_token_wipe(struct pending *p)
{
	if (p->token != NULL) {
		sodium_memzero(p->token, p->token_len + 1);
		free(p->token);
		p->token = NULL;
		p->token_len = 0;
	}
}

void pending_free(struct pending *p)
{
	struct broker *b = p->b;
	struct conn *c = p->conn;

	if (p->wait != NULL)
		tokens_cancel(p->wait);
	pending_token_wipe(p);
	if (p->prev != NULL)
		p->prev->next = p->next;
	else
		b->pend_head = p->next;
	if (p->next != NULL)
		p->next->prev = p->prev;
	else
		b->pend_tail = p->prev;
	b->n_pending--;
	json_decref(p->reply);
	json_decref(p->request);
	grant_free(p->grant);
	free(p->scope);
	free(p);
	if (c != NULL) {
		conn_request_done(c);
		conn_unref(c);
	}
	broker_check_stopped(b);
}

/* Send p's reply (with audit_seq when durable) and free p. */
static void pending_answer(struct pending *p, uint64_t seq, bool with_seq)
{
	if (p->log[0] != '\0')
		broker_log("%s%s", p->log, with_seq ? "" : " (not audited)");
	if (p->conn != NULL && !p->conn->dead && p->reply != NULL) {
		if (with_seq)
			json_object_set_new(p->reply, "audit_seq", json_integer((json_int_t)seq));
		conn_send_json(p->conn, p->reply);
		p->reply = NULL;
	}
	pending_free(p);
}

static void pending_fail_audit(struct pending *p)
{
	json_t *id = p->reply ? json_object_get(p->reply, "id") : NULL;
	json_t *r = reply_error(id, "audit_unavailable",
				"the audit store cannot write, so nothing is issued: free disk space or fix the store; custodyd recovers by itself");

	pending_token_wipe(p);
	broker_count_outcome(p->b, "audit_unavailable");
	json_decref(p->reply);
	p->reply = r;
	snprintf(p->log, sizeof(p->log), "request refused: audit_unavailable");
	pending_answer(p, 0, false);
}

void pending_audit(struct pending *p, json_t *rec)
{
	struct broker *b = p->b;
	int rc;

	if (rec == NULL) {
		pending_fail_audit(p);
		return;
	}
	p->cookie = ++b->next_cookie;
	rc = audit_append_async(b->audit, rec, p->cookie);
	if (rc < 0) {
		p->cookie = 0;
		pending_fail_audit(p);
	}
}

void pending_complete(struct pending *p, int rc, uint64_t seq)
{
	p->cookie = 0;
	if (rc < 0) {
		pending_fail_audit(p);
		return;
	}
	switch (p->kind) {
	case PENDING_TOKEN:
		token_recheck_and_send(p, seq);
		return;
	case PENDING_OFFICER:
		officer_done(p, seq);
		pending_answer(p, seq, true);
		return;
	case PENDING_PLAIN:
		if (p->follow_start && p->conn != NULL && !p->conn->dead)
			p->conn->following = true;
		pending_answer(p, seq, true);
		return;
	}
}

void broker_audit_ready(struct loop *l, int fd, uint32_t events, void *ctx)
{
	struct broker *b = ctx;
	struct audit_done done[64];
	size_t n;

	while ((n = audit_poll(b->audit, done, 64)) > 0) {
		for (size_t i = 0; i < n; i++) {
			struct pending *p;

			for (p = b->pend_head; p != NULL; p = p->next)
				if (p->cookie == done[i].cookie)
					break;
			if (p != NULL)
				pending_complete(p, done[i].rc, done[i].seq);
		}
		if (n < 64)
			break;
	}
}

/* ---- parsing ------------------------------------------------------------ */

/* Answer a request that never reached an op: audited as event "request". */
static void answer_bad_extra(struct conn *c, json_t *id, const char *code, const char *msg,
			     bool close_after, json_t *extra)
{
	struct broker *b = c->b;
	struct pending *p;
	json_t *rec;

	if (!guard_refusal(c, id)) {
		json_decref(extra);
		return;
	}
	if (close_after)
		c->closing = true;
	p = pending_new(b, c);
	if (p == NULL) {
		conn_close(c);
		return;
	}
	p->reply = reply_error(id, code, "%s", msg);
	broker_count_outcome(b, code);
	snprintf(p->log, sizeof(p->log), "request refused: %s (uid %u pid %d)", code,
		 (unsigned)c->peer.uid, (int)c->peer.pid);
	rec = record_new(b, "request", code, c, NULL, id);
	if (rec != NULL) {
		json_object_set_new(rec, "error", json_string(code));
		json_object_set_new(rec, "socket", json_string(c->admin ? "admin" : "tool"));
		if (extra != NULL)
			json_object_update(rec, extra);
	}
	json_decref(extra);
	pending_audit(p, rec);
}

static void answer_bad(struct conn *c, json_t *id, const char *code, const char *msg,
		       bool close_after)
{
	answer_bad_extra(c, id, code, msg, close_after, NULL);
}

void request_foreign_sender(struct conn *c, const struct ucred *sender)
{
	json_t *extra = sender != NULL
		? json_pack("{s:{s:I,s:I,s:I}}", "sender", "pid", (json_int_t)sender->pid, "uid",
			    (json_int_t)sender->uid, "gid", (json_int_t)sender->gid)
		: json_pack("{s:n}", "sender");

	broker_log("request from pid %d on the connection of pid %d (uid %u): refused, connection closed",
		   sender ? (int)sender->pid : 0, (int)c->peer.pid, (unsigned)c->peer.uid);
	/* a half line already buffered may be the other half of it */
	c->in_len = 0;
	answer_bad_extra(c, NULL, "unauthenticated",
			 "this request was sent by another process than the one that connected: each process must open its own connection",
			 true, extra);
}

void request_too_large(struct conn *c)
{
	char msg[160];

	snprintf(msg, sizeof(msg),
		 "request line longer than %zu bytes: send one JSON object per line, at most that long",
		 c->max_line);
	c->in_len = 0;
	answer_bad(c, NULL, "too_large", msg, true);
}

static bool field_allowed(const char *const *fields, const char *key)
{
	static const char *const common[] = {"v", "id", "op", NULL};

	for (size_t i = 0; common[i] != NULL; i++)
		if (strcmp(common[i], key) == 0)
			return true;
	for (size_t i = 0; fields != NULL && fields[i] != NULL; i++)
		if (strcmp(fields[i], key) == 0)
			return true;
	return false;
}

void request_parsed_clear(struct request_parsed *r)
{
	json_decref(r->req);
	*r = (struct request_parsed){0};
}

static int parse_fail(struct request_parsed *r, json_t *id, const char *code, bool close,
		      const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static int parse_fail(struct request_parsed *r, json_t *id, const char *code, bool close,
		      const char *fmt, ...)
{
	va_list ap;

	r->id = id;
	r->error = code;
	r->close = close;
	va_start(ap, fmt);
	vsnprintf(r->message, sizeof(r->message), fmt, ap);
	va_end(ap);
	return -EINVAL;
}

int request_parse(const char *line, size_t len, bool admin, struct request_parsed *r)
{
	json_error_t jerr;
	json_t *id, *v, *op, *val;
	const char *ops, *key;
	const char *const *fields;

	*r = (struct request_parsed){0};
	if (len == 0)
		return parse_fail(r, NULL, "bad_request", false,
				  "empty line: send one JSON object per line");
	if (!util_utf8_valid(line, len))
		return parse_fail(r, NULL, "bad_request", true,
				  "request is not valid UTF-8 text: send one JSON object per line");
	/* json_loadb refuses anything after the object (no DISABLE_EOF_CHECK) */
	r->req = json_loadb(line, len, JSON_REJECT_DUPLICATES, &jerr);
	if (r->req == NULL) {
		if (json_error_code(&jerr) == json_error_duplicate_key)
			return parse_fail(r, NULL, "bad_request", false,
					  "duplicate key in request: %.100s", jerr.text);
		return parse_fail(r, NULL, "bad_request", true,
				  "request is not JSON: send one JSON object per line with \"v\":1 (see docs/PROTOCOL.md)");
	}
	if (!json_is_object(r->req))
		return parse_fail(r, NULL, "bad_request", false, "request must be a JSON object");
	id = json_object_get(r->req, "id");
	if (id != NULL && !json_is_integer(id) &&
	    !(json_is_string(id) && json_string_length(id) <= 128))
		return parse_fail(r, NULL, "bad_request", false,
				  "id: expected an integer or a string of at most 128 bytes");
	v = json_object_get(r->req, "v");
	if (v == NULL)
		return parse_fail(r, id, "bad_request", false, "v: required (send \"v\":1)");
	if (!json_is_integer(v) || json_integer_value(v) != 1)
		return parse_fail(r, id, "unsupported_version", false,
				  "this custodyd speaks protocol version 1 only: send \"v\":1");
	if (id == NULL)
		return parse_fail(r, NULL, "bad_request", false,
				  "id: required (an integer or a string)");
	op = json_object_get(r->req, "op");
	if (op == NULL || !json_is_string(op))
		return parse_fail(r, id, "bad_request", false, "op: required (a string)");
	ops = json_string_value(op);
	if (admin ? !admin_op_known(ops) : !tool_op_known(ops))
		return parse_fail(r, id, "unknown_op", false,
				  "unknown op \"%.64s\" on the %s socket (see docs/PROTOCOL.md)", ops,
				  admin ? "admin" : "tool");
	fields = admin ? admin_op_fields(ops) : tool_op_fields(ops);
	json_object_foreach(r->req, key, val) {
		if (!field_allowed(fields, key))
			return parse_fail(r, id, "bad_request", false,
					  "unknown field \"%.64s\" for op %s", key, ops);
	}
	r->id = id;
	r->op = ops;
	return 0;
}

void request_line(struct conn *c, const char *line, size_t len)
{
	struct request_parsed r;
	struct pending *p;

	if (c->b->stopping) {
		/* answered without an audit record: the store is closing */
		json_t *reply = reply_error(NULL, "internal", "custodyd is stopping: try again shortly");

		c->closing = true;
		conn_send_json(c, reply);
		return;
	}
	if (request_parse(line, len, c->admin, &r) < 0) {
		answer_bad(c, r.id, r.error, r.message, r.close);
		goto out;
	}
	p = pending_new(c->b, c);
	if (p == NULL) {
		conn_close(c);
		goto out;
	}
	if (c->admin)
		admin_op(c, p, r.op, r.req);
	else
		tool_op(c, p, r.op, r.req);
out:
	request_parsed_clear(&r);
}
