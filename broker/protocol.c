/* protocol.c — the wire protocol's builders and checks (docs/PROTOCOL.md):
 * request lines parsed and validated against an op table, replies, and
 * the skeleton of an audit record. Nothing here acts on a request.
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

void record_fields(struct audit_fields *f, const char *event, const char *outcome,
		   struct conn *c, const char *principal, json_t *id)
{
	audit_fields_str(f, "event", event);
	audit_fields_str(f, "outcome", outcome);
	if (c != NULL) {
		size_t len = 0;
		const char *canon = peer_json_canon(&c->peer, &len);

		if (canon != NULL)
			audit_fields_raw(f, "peer", canon, len);
		else
			audit_fields_json(f, "peer", NULL);
		if (c->admin)
			audit_fields_str(f, "actor", c->peer.user);
	}
	if (principal != NULL && principal[0] != '\0')
		audit_fields_str(f, "principal", principal);
	if (id != NULL && !json_is_null(id))
		audit_fields_json(f, "request_id", id);
}

/* ---- parsing ------------------------------------------------------------ */

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

const struct op_def *op_find(const struct op_table *t, const char *name)
{
	for (size_t i = 0; i < t->n; i++)
		if (strcmp(t->ops[i].name, name) == 0)
			return &t->ops[i];
	return NULL;
}

int request_parse(const char *line, size_t len, const struct op_table *t,
		  struct request_parsed *r)
{
	json_error_t jerr;
	json_t *id, *v, *op, *val;
	const char *ops, *key;
	const struct op_def *def;

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
	def = op_find(t, ops);
	if (def == NULL)
		return parse_fail(r, id, "unknown_op", false,
				  "unknown op \"%.64s\" on the %s socket (see docs/PROTOCOL.md)", ops,
				  t->socket);
	json_object_foreach(r->req, key, val) {
		if (!field_allowed(def->fields, key))
			return parse_fail(r, id, "bad_request", false,
					  "unknown field \"%.64s\" for op %s", key, ops);
	}
	r->id = id;
	r->op = ops;
	r->def = def;
	return 0;
}

