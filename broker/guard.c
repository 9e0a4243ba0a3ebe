/* guard.c — the refusal guard: a bound on what refused requests cost the
 * audit store, per uid.
 *
 * Every refusal is audited, and the store fails closed when it cannot
 * write: so, unbounded, one pipelined connection that sends garbage (or
 * asks as nobody) fills the disk and stops tokens for everyone. Here the
 * first limits.max_refusals refusals of a uid in limits.refusal_window_s
 * are audited one by one; past that, the connection that refused once
 * more gets one unaudited rate_limited line and is closed, and every
 * further refusal of that uid in the window is only counted. When the
 * window ends, one `refusals.limited` record carries the count. The
 * guard's state shows in `status`. Owned by the loop thread.
 */
#include "broker_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GUARD_SLOTS 256     /* uids tracked at once; the oldest window is flushed for a new one */
#define GUARD_TICK_MS 1000

struct guard_uid {
	bool used;
	uid_t uid;
	int64_t start_ms;         /* loop time the window began */
	int64_t start_us;         /* wall clock, for the record */
	uint64_t refused;         /* refusals in the window, audited or not */
	uint64_t suppressed;      /* not audited one by one */
	uint64_t dropped;         /* connections closed by the guard */
};

struct refusal_guard {
	struct guard_uid slots[GUARD_SLOTS];
	struct loop_timer *timer;
	uint64_t suppressed_total, dropped_total, summaries;
};

/* One record for a window in which refusals were not audited one by one. */
static void guard_summary(struct broker *b, struct guard_uid *g)
{
	struct pending *p;
	json_t *rec;
	char user[64], since[UTIL_TIME_LEN];

	if (g->suppressed == 0)
		return;
	broker_user_name(g->uid, user);
	if (util_time_format(g->start_us, false, since) < 0)
		since[0] = '\0';
	rec = json_pack("{s:s,s:s,s:{s:I,s:s},s:I,s:I,s:I,s:s,s:I}", "event", "refusals.limited",
			"outcome", "rate_limited", "peer", "uid", (json_int_t)g->uid, "user", user,
			"refused", (json_int_t)g->refused, "not_recorded", (json_int_t)g->suppressed,
			"connections_closed", (json_int_t)g->dropped, "since", since,
			"window_s", (json_int_t)b->cfg->limits.refusal_window_s);
	broker_log("refusals limited: uid %u refused %llu times in %u s, %llu not recorded one by one, %llu connections closed",
		   (unsigned)g->uid, (unsigned long long)g->refused,
		   b->cfg->limits.refusal_window_s, (unsigned long long)g->suppressed,
		   (unsigned long long)g->dropped);
	b->guard->summaries++;
	p = pending_new(b, NULL);
	if (p == NULL) {
		json_decref(rec);
		return;
	}
	pending_audit(p, rec);
}

static void guard_end(struct broker *b, struct guard_uid *g)
{
	guard_summary(b, g);
	*g = (struct guard_uid){0};
}

void guard_flush(struct broker *b, bool all)
{
	int64_t now = loop_now_ms(b->loop);
	int64_t window = (int64_t)b->cfg->limits.refusal_window_s * 1000;

	if (b->guard == NULL)
		return;
	for (size_t i = 0; i < GUARD_SLOTS; i++) {
		struct guard_uid *g = &b->guard->slots[i];

		if (g->used && (all || now - g->start_ms >= window))
			guard_end(b, g);
	}
}

static void guard_tick(struct loop *l, struct loop_timer *t, void *ctx)
{
	struct broker *b = ctx;

	guard_flush(b, false);
	if (!b->stopping)
		loop_timer_arm(t, GUARD_TICK_MS);
}

int guard_init(struct broker *b)
{
	int rc;

	b->guard = calloc(1, sizeof(*b->guard));
	if (b->guard == NULL)
		return -ENOMEM;
	rc = loop_timer_new(b->loop, guard_tick, b, &b->guard->timer);
	if (rc < 0)
		return rc;
	loop_timer_arm(b->guard->timer, GUARD_TICK_MS);
	return 0;
}

void guard_fini(struct broker *b)
{
	if (b->guard == NULL)
		return;
	loop_timer_free(b->guard->timer);
	free(b->guard);
	b->guard = NULL;
}

static struct guard_uid *guard_slot(struct broker *b, uid_t uid)
{
	struct guard_uid *g, *oldest = NULL;
	int64_t now = loop_now_ms(b->loop);
	int64_t window = (int64_t)b->cfg->limits.refusal_window_s * 1000;

	for (size_t i = 0; i < GUARD_SLOTS; i++) {
		g = &b->guard->slots[i];
		if (g->used && g->uid == uid) {
			if (now - g->start_ms < window)
				return g;
			guard_end(b, g);
			break;
		}
	}
	for (size_t i = 0; i < GUARD_SLOTS; i++) {
		g = &b->guard->slots[i];
		if (!g->used)
			break;
		if (oldest == NULL || g->start_ms < oldest->start_ms)
			oldest = g;
		g = NULL;
	}
	if (g == NULL) {
		/* all taken: the oldest window ends early (its summary is written) */
		g = oldest;
		guard_end(b, g);
	}
	*g = (struct guard_uid){.used = true, .uid = uid, .start_ms = now,
				.start_us = util_now_us()};
	return g;
}

bool guard_refusal(struct conn *c, json_t *id)
{
	struct broker *b = c->b;
	struct guard_uid *g;
	json_t *r;
	int64_t left;

	if (b->guard == NULL)
		return true;
	g = guard_slot(b, c->peer.uid);
	g->refused++;
	if (g->refused <= b->cfg->limits.max_refusals)
		return true;
	g->suppressed++;
	b->guard->suppressed_total++;
	broker_count_outcome(b, "refusal_limited");
	if (c->closing || c->dead)
		return false;
	/* this connection ends here: what it sent after is not read */
	g->dropped++;
	b->guard->dropped_total++;
	left = ((int64_t)b->cfg->limits.refusal_window_s * 1000 -
		(loop_now_ms(b->loop) - g->start_ms) + 999) / 1000;
	if (left < 1)
		left = 1;
	r = reply_error(id, "rate_limited",
			"too many refused requests from uid %u (more than %u in %u s): connection closed; the rest are counted, not recorded one by one",
			(unsigned)c->peer.uid, b->cfg->limits.max_refusals,
			b->cfg->limits.refusal_window_s);
	if (r != NULL)
		json_object_set_new(r, "retry_after", json_integer(left));
	/* closing: no more lines are handled (the caller may be walking the
	 * input buffer, so it is left alone; it goes with the connection) */
	c->closing = true;
	if (r != NULL)
		conn_send_json(c, r);
	if (!c->dead && c->inflight == 0 && c->out_len == c->out_off)
		conn_close(c);
	return false;
}

json_t *guard_status_json(struct broker *b)
{
	json_t *uids = json_array(), *o;
	int64_t now = loop_now_ms(b->loop);
	int64_t window = (int64_t)b->cfg->limits.refusal_window_s * 1000;

	for (size_t i = 0; b->guard != NULL && uids != NULL && i < GUARD_SLOTS; i++) {
		struct guard_uid *g = &b->guard->slots[i];

		if (!g->used || now - g->start_ms >= window ||
		    g->refused <= b->cfg->limits.max_refusals)
			continue;
		json_array_append_new(uids, json_pack("{s:I,s:I,s:I,s:I,s:I}", "uid",
						      (json_int_t)g->uid, "refused",
						      (json_int_t)g->refused, "not_recorded",
						      (json_int_t)g->suppressed, "connections_closed",
						      (json_int_t)g->dropped, "window_left_s",
						      (json_int_t)((window - (now - g->start_ms) + 999) / 1000)));
	}
	o = json_pack("{s:I,s:I,s:o,s:I,s:I,s:I}", "max_refusals",
		      (json_int_t)b->cfg->limits.max_refusals, "window_s",
		      (json_int_t)b->cfg->limits.refusal_window_s, "limited_uids",
		      uids ? uids : json_array(), "not_recorded_total",
		      (json_int_t)(b->guard ? b->guard->suppressed_total : 0),
		      "connections_closed_total",
		      (json_int_t)(b->guard ? b->guard->dropped_total : 0), "summary_records",
		      (json_int_t)(b->guard ? b->guard->summaries : 0));
	return o;
}
