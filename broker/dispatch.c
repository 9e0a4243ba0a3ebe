/* dispatch.c — one request line from a connection to its op.
 *
 * A line must be valid UTF-8 and exactly one JSON object with nothing after
 * it (protocol.c checks it against the socket's op table); a line that
 * fails is answered here and audited as event "request". A line that is
 * not JSON at all (an HTTP request sent to the socket by mistake, say) is
 * answered once and the connection closed: whatever sent it does not
 * speak this protocol. The server calls in through the handlers the
 * daemon gives it (b->on_line, b->on_too_large).
 */
#include "broker_int.h"

#include <stdio.h>
#include <string.h>

/* Answer a request that never reached an op: audited as event "request"
 * (with extra's fields; stolen). */
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
		conn_stop_reading(c);
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

void dispatch_foreign_sender(struct conn *c, const struct ucred *sender)
{
	json_t *extra = sender != NULL
		? json_pack("{s:{s:I,s:I,s:I}}", "sender", "pid", (json_int_t)sender->pid, "uid",
			    (json_int_t)sender->uid, "gid", (json_int_t)sender->gid)
		: json_pack("{s:n}", "sender");

	broker_log("request from pid %d on the connection of pid %d (uid %u): refused, connection closed",
		   sender ? (int)sender->pid : 0, (int)c->peer.pid, (unsigned)c->peer.uid);
	answer_bad_extra(c, NULL, "unauthenticated",
			 "this request was sent by another process than the one that connected: each process must open its own connection",
			 true, extra);
}

void dispatch_too_large(struct conn *c)
{
	char msg[160];

	snprintf(msg, sizeof(msg),
		 "request line longer than %zu bytes: send one JSON object per line, at most that long",
		 c->max_line);
	answer_bad(c, NULL, "too_large", msg, true);
}

void dispatch_line(struct conn *c, const char *line, size_t len)
{
	const struct op_table *t = c->admin ? &admin_op_table : &tool_op_table;
	struct request_parsed r;
	struct pending *p;

	if (c->b->stopping) {
		/* answered without an audit record: the store is closing */
		json_t *reply = reply_error(NULL, "internal", "custodyd is stopping: try again shortly");

		conn_stop_reading(c);
		conn_send_json(c, reply);
		return;
	}
	if (request_parse(line, len, t, &r) < 0) {
		answer_bad(c, r.id, r.error, r.message, r.close);
		goto out;
	}
	p = pending_new(c->b, c);
	if (p == NULL) {
		conn_close(c);
		goto out;
	}
	p->request = json_incref(r.req);
	t->begin(p, r.def, r.id);
out:
	request_parsed_clear(&r);
}
