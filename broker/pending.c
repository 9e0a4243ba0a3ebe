/* pending.c — the life of a request once parsed: audited → (durable) →
 * answered (DESIGN §7: a reply leaves only once its record is synced).
 *
 * Owns (loop thread only): the pendings in flight, the FIFO of those whose
 * record is queued with the audit writer (completions come back in the
 * order records were queued, so each is found at the head: O(1)), and the
 * per-outcome request counts `status` reports. What happens once a record
 * is durable is the op's business: p->on_durable, or by default the reply
 * is sent with its audit_seq. Op-specific state hangs off p->op and is
 * freed by p->op_free.
 */
#include "broker_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void broker_count_outcome(struct broker *b, const char *outcome)
{
	json_t *v = json_object_get(b->outcomes, outcome);

	/* in place: no allocation per request (status sends a copy) */
	if (v != NULL)
		json_integer_set(v, json_integer_value(v) + 1);
	else
		json_object_set_new(b->outcomes, outcome, json_integer(1));
}

struct pending *pending_new(struct broker *b, struct conn *c)
{
	struct pending *p = calloc(1, sizeof(*p));

	if (p == NULL)
		return NULL;
	p->b = b;
	p->principal_ix = -1;
	p->conn = c;
	if (c != NULL)
		conn_request_begin(c);
	p->prev = b->pend_tail;
	if (b->pend_tail != NULL)
		b->pend_tail->next = p;
	else
		b->pend_head = p;
	b->pend_tail = p;
	b->n_pending++;
	return p;
}

void pending_op_free(struct pending *p)
{
	if (p->op_free != NULL)
		p->op_free(p->op);
	p->op = NULL;
	p->op_free = NULL;
}

/* Take p off the audit FIFO or the checkpoint list (it is on one while
 * p->cookie != 0). */
static void queued_unlink(struct pending *p)
{
	struct broker *b = p->b;
	struct pending **pp;

	if (p->cookie == 0)
		return;
	if (p->on_checkpoint != NULL) {
		for (pp = &b->cp_waiting; *pp != NULL && *pp != p; pp = &(*pp)->qnext)
			;
		if (*pp == p)
			*pp = p->qnext;
		p->qnext = NULL;
		p->cookie = 0;
		return;
	}
	/* almost always the head: completions come in order */
	for (pp = &b->queued_head; *pp != NULL && *pp != p; pp = &(*pp)->qnext)
		;
	if (*pp == p) {
		*pp = p->qnext;
		if (b->queued_tail == p) {
			struct pending *q = b->queued_head;

			while (q != NULL && q->qnext != NULL)
				q = q->qnext;
			b->queued_tail = q;
		}
	}
	p->qnext = NULL;
	p->cookie = 0;
}

void pending_free(struct pending *p)
{
	struct broker *b = p->b;
	struct conn *c = p->conn;

	queued_unlink(p);
	pending_op_free(p);
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
	free(p);
	if (c != NULL)
		conn_request_end(c);
	if (b->n_pending == 0 && b->on_drained != NULL)
		b->on_drained(b);
}

void pending_answer(struct pending *p, uint64_t seq, bool with_seq)
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
	/* the request's id (a token's reply is only made when it leaves) */
	json_t *id = p->reply ? json_object_get(p->reply, "id")
			      : p->request ? json_object_get(p->request, "id") : NULL;
	json_t *r = reply_error(id, "audit_unavailable",
				"the audit store cannot write, so nothing is issued: free disk space or fix the store; custodyd recovers by itself");

	/* nothing of the op survives (a token is wiped here) */
	pending_op_free(p);
	broker_count_outcome(p->b, "audit_unavailable");
	json_decref(p->reply);
	p->reply = r;
	snprintf(p->log, sizeof(p->log), "request refused: audit_unavailable");
	pending_answer(p, 0, false);
}

/* p's record was handed to the writer with cookie (rc 0), or not. */
static void queued_push(struct pending *p, int rc)
{
	struct broker *b = p->b;

	if (rc < 0) {
		p->cookie = 0;
		pending_fail_audit(p);
		return;
	}
	if (b->queued_tail != NULL)
		b->queued_tail->qnext = p;
	else
		b->queued_head = p;
	b->queued_tail = p;
}

void pending_audit(struct pending *p, json_t *rec)
{
	struct broker *b = p->b;

	if (rec == NULL) {
		pending_fail_audit(p);
		return;
	}
	p->cookie = ++b->next_cookie;
	queued_push(p, audit_append_async(b->audit, rec, p->cookie));
}

void pending_audit_fields(struct pending *p, const struct audit_fields *f)
{
	struct broker *b = p->b;

	p->cookie = ++b->next_cookie;
	queued_push(p, audit_append_fields_async(b->audit, f, p->cookie));
}

void pending_checkpoint(struct pending *p,
			void (*cb)(struct pending *p, int rc, char *note, uint64_t size))
{
	struct broker *b = p->b;
	uint64_t cookie = ++b->next_cookie;
	int rc = audit_checkpoint_async(b->audit, cookie);

	if (rc < 0) {
		cb(p, rc, NULL, 0);
		return;
	}
	p->cookie = cookie;
	p->on_checkpoint = cb;
	p->qnext = b->cp_waiting;
	b->cp_waiting = p;
}

static void checkpoint_complete(struct broker *b, const struct audit_done *d)
{
	void (*cb)(struct pending *p, int rc, char *note, uint64_t size);
	struct pending *p;

	for (p = b->cp_waiting; p != NULL && p->cookie != d->cookie; p = p->qnext)
		;
	if (p == NULL) {
		free(d->note);
		return;
	}
	queued_unlink(p);
	cb = p->on_checkpoint;
	p->on_checkpoint = NULL;
	cb(p, d->rc, d->note, d->seq);
}

static void pending_complete(struct pending *p, int rc, uint64_t seq)
{
	queued_unlink(p);
	if (rc < 0) {
		pending_fail_audit(p);
		return;
	}
	p->seq = seq;
	if (p->on_durable != NULL)
		p->on_durable(p, seq);
	else
		pending_answer(p, seq, true);
}

/* The pending a completion belongs to: the FIFO's head unless a pending
 * left it early (freed while its record was queued: its completion finds
 * nobody). */
static struct pending *queued_find(struct broker *b, uint64_t cookie)
{
	struct pending *p = b->queued_head;

	/* cookies rise along the FIFO */
	if (p == NULL || p->cookie == cookie || p->cookie > cookie)
		return p != NULL && p->cookie == cookie ? p : NULL;
	for (; p != NULL; p = p->qnext)
		if (p->cookie == cookie)
			return p;
	return NULL;
}

void pending_audit_ready(struct loop *l, int fd, uint32_t events, void *ctx)
{
	struct broker *b = ctx;
	struct audit_done done[64];
	size_t n;

	while ((n = audit_poll(b->audit, done, 64)) > 0) {
		for (size_t i = 0; i < n; i++) {
			struct pending *p;

			if (done[i].checkpoint) {
				checkpoint_complete(b, &done[i]);
				continue;
			}
			p = queued_find(b, done[i].cookie);

			if (p != NULL)
				pending_complete(p, done[i].rc, done[i].seq);
		}
		if (n < 64)
			break;
	}
}
