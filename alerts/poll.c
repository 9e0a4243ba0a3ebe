/* poll.c — one pass over every tenant (DESIGN.md §12).
 *
 * Per tenant: a token from custodyd (libcustody, purpose from the config),
 * then GET {api_base}/api/alerts?$filter=lastUpdateTime ge <cursor> with
 * $top/$skip paging until a short page. Each page's new alerts — by (id,
 * lastUpdateTime), so an alert goes out again only when it changed — go to
 * every output, then into the delivered set; the tenant's cursor moves
 * only when the last page is in and every output took every alert, and
 * only after the outputs synced (state and outputs commit together, every
 * FLUSH_MS or at the end). Notification e-mails queued on the way (in the
 * state database) are sent when the API work of the pass is over.
 *
 * Threads: the main thread owns the curl multi handle, the outputs and
 * the state database. TOKEN_THREADS workers, each with its own broker
 * connection (libcustody handles are one per thread), fetch tokens ahead
 * and hand tenants back through done[] under mu, waking the main thread
 * with curl_multi_wakeup. A tenant belongs to a worker from the moment it
 * is taken until it is handed back; the main thread touches it only then.
 *
 * Connections: at most MAX_INFLIGHT transfers run at once and the multi
 * handle keeps at most as many connections, reused across tenants.
 */
#include "alerts.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "custody_version.h"
#include "libcustody.h"

#define MAX_INFLIGHT 32
#define TOKEN_THREADS 16
#define FLUSH_MS 250
/* The next pass asks again from a little before the newest lastUpdateTime
 * seen: an update the API makes visible late is still caught; the
 * delivered set drops what was already sent. */
#define CURSOR_OVERLAP_US (5LL * 60 * 1000000)
/* A 429 with a Retry-After up to this waits within the pass; longer ones
 * end the tenant's pass and the next one starts no earlier. */
#define RETRY_WAIT_MAX_S 60
#define RETRY_DEFAULT_S 5     /* as MSAL: a 429 without Retry-After */
#define RETRY_CAP_S 3600
#define BUDGET_MINUTE 100
#define BUDGET_HOUR 1500

enum tstate { T_QUEUED, T_READY, T_FETCH, T_WAIT, T_DONE, T_FAILED };

struct tenant {
	char id[128];      /* the tenant id (state key) */
	char name[256];    /* custody_tenant: the tenant's name, else its id */
	char ask[256];     /* what the broker is asked for */
	enum tstate st;
	bool token_ok;
	int status;        /* AX_* when failed */
	char error[CERR_MAX];
	char *auth;        /* "Authorization: Bearer …", sodium_malloc'd */
	size_t auth_size;
	uint64_t audit_seq;
	struct tenant_state ts;
	char from[UTIL_TIME_LEN];
	int64_t max_lut_us;
	unsigned page;
	CURL *easy;
	struct curl_slist *hdrs;
	struct buf body;
	bool too_big;
	int64_t wait_until_ms;
	uint64_t delivered;
	size_t max_page;   /* bytes a page may have */
};

struct pass {
	const struct alerts_config *c;
	struct state *s;
	struct pass_result *res;
	struct tenant *t;
	size_t n, n_finished;
	CURLM *multi;
	struct output *outs;
	size_t n_outs;
	size_t max_page;
	int inflight;
	bool dirty;
	bool kick;         /* a tenant became ready: loop again at once */
	int64_t last_flush_ms;
	json_t **batch;
	json_t **sub;      /* the part of batch one output has not taken */
	size_t batch_cap;

	pthread_mutex_t mu;
	size_t next_token;   /* next tenant a worker takes */
	size_t *done;        /* tenants handed back, not yet seen by main */
	size_t n_done;
	bool stop;
};

static int status_rank(int st)
{
	switch (st) {
	case AX_BROKER:
		return 3;
	case AX_REFUSED:
		return 2;
	case AX_FAILED:
		return 1;
	default:
		return 0;
	}
}

static void worse(int *status, int st)
{
	if (status_rank(st) > status_rank(*status))
		*status = st;
}

/* ---- tokens (worker threads) ---------------------------------------------- */

static void token_failed(struct tenant *t, int rc, const struct custody_error *e)
{
	if (rc == -EREMOTEIO) {
		bool upstream = strncmp(e->code, "upstream_", 9) == 0;

		t->status = upstream ? AX_FAILED : AX_REFUSED;
		snprintf(t->error, sizeof(t->error), "the broker gave no token (%s): %.400s", e->code,
			 e->message);
		return;
	}
	t->status = AX_BROKER;
	snprintf(t->error, sizeof(t->error), "the broker cannot be reached (%s): %.400s",
		 custody_strerror(rc), e->message);
}

static void token_one(struct pass *p, struct custody_client **cl, struct tenant *t)
{
	struct custody_token_request r = {
		.tenant = t->ask, .scope = p->c->scope, .min_ttl = 300, .purpose = p->c->purpose,
	};
	struct custody_token *tok = NULL;
	struct custody_error e;
	int rc = 0;

	for (int attempt = 0; attempt < 2; attempt++) {
		memset(&e, 0, sizeof(e));
		if (*cl == NULL)
			rc = custody_connect(p->c->socket, cl, &e);
		if (rc == 0)
			rc = custody_token_request(*cl, &r, p->c->timeout_s * 1000 + 5000, &tok, &e);
		/* a broker restarted under us: one new connection, then give up */
		if (rc == -ECONNRESET || rc == -EPIPE || rc == -ETIMEDOUT || rc == -EPROTO) {
			custody_close(*cl);
			*cl = NULL;
			continue;
		}
		break;
	}
	if (rc < 0) {
		token_failed(t, rc, &e);
		return;
	}
	t->auth_size = tok->token_len + 32;
	t->auth = sodium_malloc(t->auth_size);
	if (t->auth == NULL) {
		t->status = AX_FAILED;
		snprintf(t->error, sizeof(t->error), "out of memory");
	} else {
		snprintf(t->auth, t->auth_size, "Authorization: Bearer %s", tok->access_token);
		t->audit_seq = tok->audit_seq;
		if (t->id[0] == '\0')
			snprintf(t->id, sizeof(t->id), "%s", tok->tenant);
		t->token_ok = true;
	}
	custody_token_free(tok);
}

static void *token_worker(void *arg)
{
	struct pass *p = arg;
	struct custody_client *cl = NULL;

	for (;;) {
		size_t i;

		pthread_mutex_lock(&p->mu);
		if (p->stop || p->next_token >= p->n) {
			pthread_mutex_unlock(&p->mu);
			break;
		}
		i = p->next_token++;
		pthread_mutex_unlock(&p->mu);
		if (p->t[i].st == T_QUEUED)
			token_one(p, &cl, &p->t[i]);
		pthread_mutex_lock(&p->mu);
		p->done[p->n_done++] = i;
		pthread_mutex_unlock(&p->mu);
		curl_multi_wakeup(p->multi);
	}
	custody_close(cl);
	return NULL;
}

/* ---- finishing a tenant ---------------------------------------------------- */

static void wipe_auth(struct tenant *t)
{
	if (t->auth != NULL)
		sodium_free(t->auth);
	t->auth = NULL;
}

static void finish(struct pass *p, struct tenant *t, int status, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static void finish(struct pass *p, struct tenant *t, int status, const char *fmt, ...)
{
	const char *key = t->id[0] ? t->id : t->ask;
	va_list ap;

	if (fmt != NULL) {
		va_start(ap, fmt);
		vsnprintf(t->error, sizeof(t->error), fmt, ap);
		va_end(ap);
	}
	t->st = status == AX_OK ? T_DONE : T_FAILED;
	t->status = status;
	wipe_auth(t);
	buf_free(&t->body);
	p->n_finished++;
	if (status == AX_OK)
		p->res->tenants_ok++;
	else
		fprintf(stderr, "custody-alerts: tenant %s%s%s%s: %s\n", t->name,
			t->id[0] && strcmp(t->id, t->name) != 0 ? " (" : "",
			t->id[0] && strcmp(t->id, t->name) != 0 ? t->id : "",
			t->id[0] && strcmp(t->id, t->name) != 0 ? ")" : "", t->error);
	worse(&p->res->status, status);
	p->res->delivered += t->delivered;
	if (state_begin(p->s) == 0)
		(void)state_tenant_put(p->s, key, t->name, &t->ts,
				       status == AX_OK ? NULL : t->error, t->delivered);
	p->dirty = true;
}

/* ---- the API --------------------------------------------------------------- */

static size_t body_write(char *ptr, size_t size, size_t nmemb, void *ctx)
{
	struct tenant *t = ctx;
	size_t n = size * nmemb;

	if (t->body.len + n > t->max_page) {
		t->too_big = true;
		return 0;
	}
	buf_add(&t->body, ptr, n);
	return t->body.oom ? 0 : n;
}

static int start_fetch(struct pass *p, struct tenant *t)
{
	const struct alerts_config *c = p->c;
	int64_t now = util_now_us() / 1000000;
	char filter[64], *esc, *url = NULL;
	CURL *h;

	/* the API's limits, kept per tenant (DESIGN.md §12) */
	if (now - t->ts.min_start >= 60) {
		t->ts.min_start = now;
		t->ts.min_calls = 0;
	}
	if (now - t->ts.hour_start >= 3600) {
		t->ts.hour_start = now;
		t->ts.hour_calls = 0;
	}
	if (t->ts.hour_calls >= BUDGET_HOUR) {
		t->ts.not_before = t->ts.hour_start + 3600;
		finish(p, t, AX_FAILED, "the API budget of %d calls an hour is used up; the tenant "
		       "continues after %lld s", BUDGET_HOUR, (long long)(t->ts.not_before - now));
		return 0;
	}
	if (t->ts.min_calls >= BUDGET_MINUTE) {
		t->st = T_WAIT;
		t->wait_until_ms = util_mono_ms() + (t->ts.min_start + 60 - now) * 1000;
		return 0;
	}
	t->ts.min_calls++;
	t->ts.hour_calls++;

	h = curl_easy_init();
	if (h == NULL) {
		finish(p, t, AX_FAILED, "out of memory");
		return -ENOMEM;
	}
	snprintf(filter, sizeof(filter), "lastUpdateTime ge %s", t->from);
	esc = curl_easy_escape(h, filter, 0);
	if (esc == NULL || asprintf(&url, "%s/api/alerts?$filter=%s&$top=%d&$skip=%llu",
				    c->api_base, esc, c->page_size,
				    (unsigned long long)t->page * (unsigned long long)c->page_size) < 0)
		url = NULL;
	curl_free(esc);
	t->hdrs = curl_slist_append(NULL, t->auth);
	if (t->hdrs != NULL)
		t->hdrs = curl_slist_append(t->hdrs, "Accept: application/json");
	if (url == NULL || t->hdrs == NULL) {
		free(url);
		curl_easy_cleanup(h);
		finish(p, t, AX_FAILED, "out of memory");
		return -ENOMEM;
	}
	t->easy = h;
	buf_reset(&t->body);
	t->too_big = false;
	curl_easy_setopt(h, CURLOPT_URL, url);
	free(url);
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "https");
	curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
	if (c->ca_file != NULL)
		curl_easy_setopt(h, CURLOPT_CAINFO, c->ca_file);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, t->hdrs);
	curl_easy_setopt(h, CURLOPT_ACCEPT_ENCODING, "");
	curl_easy_setopt(h, CURLOPT_USERAGENT, "custody-alerts/" CUSTODY_VERSION);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)c->timeout_s * 1000L);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)c->timeout_s * 1000L);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, body_write);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, t);
	curl_easy_setopt(h, CURLOPT_PRIVATE, (char *)t);
	if (curl_multi_add_handle(p->multi, h) != CURLM_OK) {
		finish(p, t, AX_FAILED, "cannot start a transfer");
		return -EIO;
	}
	t->st = T_FETCH;
	p->inflight++;
	return 0;
}

static void end_transfer(struct pass *p, struct tenant *t)
{
	if (t->easy != NULL) {
		curl_multi_remove_handle(p->multi, t->easy);
		curl_easy_cleanup(t->easy);
		p->inflight--;
	}
	t->easy = NULL;
	/* the list holds copies of the header lines, the token among them */
	for (struct curl_slist *l = t->hdrs; l != NULL; l = l->next)
		sodium_memzero(l->data, strlen(l->data));
	curl_slist_free_all(t->hdrs);
	t->hdrs = NULL;
}

/* The API's own words from {"error":{"code":…,"message":…}}, printable. */
static void api_message(const struct buf *body, char *out, size_t size)
{
	json_t *j = body->len ? json_loadb(body->p, body->len, 0, NULL) : NULL;
	const char *m = json_string_value(json_object_get(json_object_get(j, "error"), "message"));
	size_t k = 0;

	if (size == 0)
		return;
	for (; m != NULL && *m != '\0' && k + 1 < size && k < 200; m++)
		out[k++] = (unsigned char)*m < 0x20 ? ' ' : *m;
	out[k] = '\0';
	if (k == 0)
		snprintf(out, size, "no error message");
	json_decref(j);
}

/* The batch's alerts as delivered to every output (output NULL) or as
 * taken by one output. */
static void mark_delivered(struct pass *p, const struct tenant *t, const char *output, size_t nb)
{
	for (size_t i = 0; i < nb; i++) {
		const char *lut = json_string_value(json_object_get(p->batch[i], "lastUpdateTime"));
		int64_t us = 0;

		(void)util_time_parse(lut, &us);
		(void)state_mark_delivered(p->s, output, t->id,
					   json_string_value(json_object_get(p->batch[i], "id")),
					   lut, us);
	}
}

/* Into p->sub: the alerts of the batch output o has not taken yet (it took
 * some in a pass where another output failed). A database error sends
 * them again: at least once, never lost. */
static size_t output_missing(struct pass *p, const struct tenant *t, const struct output *o,
			     size_t nb)
{
	size_t m = 0;

	for (size_t i = 0; i < nb; i++) {
		const char *id = json_string_value(json_object_get(p->batch[i], "id"));
		const char *lut = json_string_value(json_object_get(p->batch[i], "lastUpdateTime"));

		if (state_delivered(p->s, o->cfg->label, t->id, id, lut) != 1)
			p->sub[m++] = p->batch[i];
	}
	return m;
}

static void deliver_page(struct pass *p, struct tenant *t)
{
	const struct alerts_config *c = p->c;
	json_t *alerts = NULL, *a;
	size_t i, n, nb = 0;
	struct cerr e = { "" };
	bool outputs_ok = true;
	char failed[CERR_MAX] = "";

	if (alerts_page_parse(t->body.p, t->body.len, &alerts, &e) < 0) {
		finish(p, t, AX_FAILED, "the API's page %u is not a page of alerts: %s", t->page + 1,
		       e.msg);
		return;
	}
	buf_free(&t->body);
	n = json_array_size(alerts);
	if (n > p->batch_cap) {
		json_t **nbp = realloc(p->batch, n * sizeof(*nbp));
		json_t **nsp = nbp ? realloc(p->sub, n * sizeof(*nsp)) : NULL;

		if (nbp != NULL)
			p->batch = nbp;
		if (nsp == NULL) {
			json_decref(alerts);
			finish(p, t, AX_FAILED, "out of memory");
			return;
		}
		p->sub = nsp;
		p->batch_cap = n;
	}
	if (state_begin(p->s) < 0) {
		json_decref(alerts);
		finish(p, t, AX_FAILED, "the state database cannot start a transaction");
		return;
	}
	json_array_foreach(alerts, i, a) {
		const char *id = json_string_value(json_object_get(a, "id"));
		const char *lut = json_string_value(json_object_get(a, "lastUpdateTime"));
		char *eid, link[512];
		int64_t us = 0;

		(void)util_time_parse(lut, &us);
		if (us > t->max_lut_us)
			t->max_lut_us = us;
		/* 1: delivered before; a database error delivers it again (at
		 * least once) rather than risk losing it */
		if (state_delivered(p->s, NULL, t->id, id, lut) == 1)
			continue;
		eid = curl_easy_escape(NULL, id, 0);
		snprintf(link, sizeof(link), "https://security.microsoft.com/alerts/%s?tid=%s",
			 eid ? eid : "", t->id);
		curl_free(eid);
		json_object_set_new(a, "custody_tenant", json_string(t->name));
		json_object_set_new(a, "custody_tenant_id", json_string(t->id));
		json_object_set_new(a, "custody_portal_link", json_string(link));
		json_object_set_new(a, "custody_audit_seq", json_integer((json_int_t)t->audit_seq));
		p->batch[nb++] = a;
	}
	for (size_t k = 0; k < p->n_outs; k++) {
		struct output *o = &p->outs[k];
		size_t m = output_missing(p, t, o, nb);

		e.msg[0] = '\0';
		o->took = output_put(o, p->sub, m, &e) == 0;
		if (!o->took) {
			o->waiting += m;
			outputs_ok = false;
			snprintf(failed, sizeof(failed), "%s", e.msg);
		}
	}
	/* Every output took the page: delivered. Else each output that took
	 * it remembers so, and the next pass sends it to the others only. */
	if (outputs_ok) {
		mark_delivered(p, t, NULL, nb);
		t->delivered += nb;
	}
	for (size_t k = 0; !outputs_ok && k < p->n_outs; k++)
		if (p->outs[k].took)
			mark_delivered(p, t, p->outs[k].cfg->label, nb);
	/* Notifications do not wait for the outputs: each rule has its own
	 * record of what it sent, so an alert fetched again is not mailed again. */
	for (i = 0; i < nb; i++) {
		const char *id = json_string_value(json_object_get(p->batch[i], "id"));

		for (size_t r = 0; r < c->n_rules; r++) {
			char *msg;

			if (!rule_matches(&c->rules[r], p->batch[i]) ||
			    state_notified(p->s, c->rules[r].name, t->id, id) != 0)
				continue;
			msg = notice_message(c, &c->rules[r], p->batch[i], false);
			if (msg != NULL && state_notify_queue(p->s, c->rules[r].name, t->id, id, msg) == 0)
				p->res->notified++;
			free(msg);
		}
	}
	p->dirty = true;
	json_decref(alerts);
	if (!outputs_ok) {
		finish(p, t, AX_FAILED, "an output did not take its alerts (the cursor stays; the "
		       "next pass sends them again): %s", failed);
		return;
	}
	if (n < (size_t)c->page_size) {
		int64_t cur = 0, cand = t->max_lut_us - CURSOR_OVERLAP_US;

		(void)util_time_parse(t->from, &cur);
		if (t->max_lut_us > 0 && cand > cur) {
			util_time_format(cand, true, t->ts.cursor);
			(void)state_prune(p->s, t->id, cand);
		} else {
			snprintf(t->ts.cursor, sizeof(t->ts.cursor), "%s", t->from);
		}
		finish(p, t, AX_OK, NULL);
		return;
	}
	t->page++;
	t->st = T_READY;
	p->kick = true;   /* the next page starts without waiting in poll */
}

static void page_done(struct pass *p, struct tenant *t, CURLcode result)
{
	long code = 0;
	curl_off_t ra = -1;
	char msg[256];

	curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &code);
	curl_easy_getinfo(t->easy, CURLINFO_RETRY_AFTER, &ra);
	end_transfer(p, t);
	if (result != CURLE_OK) {
		if (t->too_big)
			finish(p, t, AX_FAILED, "the API's page %u is larger than %zu MiB", t->page + 1,
			       p->max_page >> 20);
		else if (result == CURLE_OPERATION_TIMEDOUT)
			finish(p, t, AX_FAILED, "the API did not answer within %d s (timeout_s)",
			       p->c->timeout_s);
		else
			finish(p, t, AX_FAILED, "cannot read the API at %s: %s", p->c->api_base,
			       curl_easy_strerror(result));
		return;
	}
	switch (code) {
	case 200:
		deliver_page(p, t);
		return;
	case 429:
		if (ra <= 0)
			ra = RETRY_DEFAULT_S;
		if (ra > RETRY_CAP_S)
			ra = RETRY_CAP_S;
		if (ra <= RETRY_WAIT_MAX_S) {
			fprintf(stderr, "custody-alerts: tenant %s: the API throttles (429); waiting "
				"%lld s as Retry-After says\n", t->name, (long long)ra);
			t->st = T_WAIT;
			t->wait_until_ms = util_mono_ms() + (int64_t)ra * 1000;
			buf_free(&t->body);
			return;
		}
		t->ts.not_before = util_now_us() / 1000000 + (int64_t)ra;
		finish(p, t, AX_FAILED, "the API throttles this tenant (429 Too Many Requests) for "
		       "%lld s; a later pass continues", (long long)ra);
		return;
	case 401:
		api_message(&t->body, msg, sizeof(msg));
		finish(p, t, AX_FAILED, "the API refused the token (401 Unauthorized: %s): the "
		       "token is not valid for %s; check the grant's scope and that its app is "
		       "the one the customer consented to", msg, p->c->api_base);
		return;
	case 403:
		api_message(&t->body, msg, sizeof(msg));
		finish(p, t, AX_FAILED, "the API answered 403 Forbidden (%s): the customer's app "
		       "lacks the Alert.Read.All application permission or its admin consent; "
		       "the customer must grant it in its tenant", msg);
		return;
	default:
		api_message(&t->body, msg, sizeof(msg));
		finish(p, t, AX_FAILED, "the API answered HTTP %ld (%s)", code, msg);
		return;
	}
}

/* ---- flushing: outputs synced, then state committed ------------------------ */

static void flush(struct pass *p)
{
	struct cerr e = { "" };
	bool ok = true;

	for (size_t k = 0; k < p->n_outs; k++) {
		if (output_sync(&p->outs[k], &e) < 0) {
			fprintf(stderr, "custody-alerts: %s\n", e.msg);
			ok = false;
		}
	}
	if (!ok) {
		/* what the outputs took may not be durable: record nothing, so
		 * the next pass delivers it again */
		state_rollback(p->s);
		worse(&p->res->status, AX_FAILED);
	} else if (state_commit(p->s, &e) < 0) {
		fprintf(stderr, "custody-alerts: %s\n", e.msg);
		worse(&p->res->status, AX_FAILED);
	}
	p->dirty = false;
	p->last_flush_ms = util_mono_ms();
}

size_t alerts_notify_flush(const struct alerts_config *c, struct state *s, size_t *failed)
{
	struct notice *v = NULL;
	struct cerr e = { "" };
	size_t n = 0, sent = 0;
	bool smtp_down = false;
	char down[CERR_MAX] = "";

	*failed = 0;
	if (state_notify_take(s, &v, &n, &e) < 0) {
		fprintf(stderr, "custody-alerts: notifications: %s\n", e.msg);
		(*failed)++;
		return 0;
	}
	if (n == 0)
		return 0;
	(void)state_begin(s);
	for (size_t i = 0; i < n; i++) {
		const struct rule_config *r = NULL;

		for (size_t k = 0; k < c->n_rules; k++)
			if (strcmp(c->rules[k].name, v[i].rule) == 0)
				r = &c->rules[k];
		e.msg[0] = '\0';
		if (r == NULL) {
			snprintf(e.msg, sizeof(e.msg), "the rule \"%.100s\" is no longer configured",
				 v[i].rule);
		} else if (smtp_down) {
			snprintf(e.msg, sizeof(e.msg), "not tried: %.480s", down);
		} else if (smtp_send(c, r, v[i].message, &e) < 0) {
			/* the server itself failed: the rest would fail the same way */
			smtp_down = true;
			snprintf(down, sizeof(down), "%s", e.msg);
		} else {
			sent++;
			(void)state_notify_done(s, v[i].rowid, NULL);
			continue;
		}
		(*failed)++;
		fprintf(stderr, "custody-alerts: notification (rule %s): %s\n", v[i].rule, e.msg);
		(void)state_notify_done(s, v[i].rowid, e.msg);
	}
	if (state_commit(s, &e) < 0)
		fprintf(stderr, "custody-alerts: %s\n", e.msg);
	notices_free(v, n);
	return sent;
}

/* ---- the tenant list --------------------------------------------------------- */

static bool is_broker_unreachable(int rc)
{
	return rc == -ENOENT || rc == -ECONNREFUSED || rc == -EACCES || rc == -ECONNRESET ||
	       rc == -ETIMEDOUT || rc == -EPIPE || rc == -ENOTDIR;
}

static int list_tenants(struct pass *p, struct cerr *err)
{
	const struct alerts_config *c = p->c;
	struct custody_client *cl = NULL;
	struct custody_error e;
	json_t *req, *reply = NULL, *arr, *x;
	size_t i, cnt;
	int rc;

	memset(&e, 0, sizeof(e));
	rc = custody_connect(c->socket, &cl, &e);
	if (rc == 0) {
		req = json_pack("{s:s}", "op", "tenants");
		rc = req ? custody_call(cl, req, c->timeout_s * 1000, &reply, &e) : -ENOMEM;
		json_decref(req);
	}
	custody_close(cl);
	if (rc == -EREMOTEIO) {
		p->res->status = AX_REFUSED;
		return cerr_set(err, rc, "the broker refused the tenant list (%s): %s", e.code,
				e.message);
	}
	if (rc < 0) {
		p->res->status = is_broker_unreachable(rc) || rc == -EPROTO ? AX_BROKER : AX_ERROR;
		return cerr_set(err, rc, "the broker cannot be reached at %s: %s",
				c->socket ? c->socket : "the default socket", e.message[0] ?
				e.message : custody_strerror(rc));
	}
	arr = json_object_get(reply, "tenants");
	cnt = c->n_tenants > 0 ? c->n_tenants : json_array_size(arr);
	p->t = calloc(cnt + 1, sizeof(*p->t));
	p->done = calloc(cnt + 1, sizeof(*p->done));
	if (p->t == NULL || p->done == NULL) {
		json_decref(reply);
		return -ENOMEM;
	}
	if (c->n_tenants == 0) {
		json_array_foreach(arr, i, x) {
			const char *id = json_string_value(json_object_get(x, "tenant_id"));
			const char *name = json_string_value(json_object_get(x, "tenant_name"));
			const char *state = json_string_value(json_object_get(x, "state"));
			struct tenant *t = &p->t[p->n];

			if (id == NULL || (state != NULL && strcmp(state, "active") != 0))
				continue;   /* pending, expired, revoked: nothing to ask for */
			snprintf(t->id, sizeof(t->id), "%s", id);
			snprintf(t->ask, sizeof(t->ask), "%s", id);
			snprintf(t->name, sizeof(t->name), "%s", name ? name : id);
			p->n++;
		}
	} else {
		for (size_t k = 0; k < c->n_tenants; k++) {
			struct tenant *t = &p->t[p->n++];

			snprintf(t->ask, sizeof(t->ask), "%s", c->tenants[k]);
			snprintf(t->name, sizeof(t->name), "%s", c->tenants[k]);
			json_array_foreach(arr, i, x) {
				const char *id = json_string_value(json_object_get(x, "tenant_id"));
				const char *name = json_string_value(json_object_get(x, "tenant_name"));

				if (id == NULL || (strcasecmp(id, c->tenants[k]) != 0 &&
						   (name == NULL || strcasecmp(name, c->tenants[k]) != 0)))
					continue;
				snprintf(t->id, sizeof(t->id), "%s", id);
				snprintf(t->name, sizeof(t->name), "%s", name ? name : id);
			}
		}
	}
	json_decref(reply);
	return 0;
}

/* ---- the pass ---------------------------------------------------------------- */

static void prepare_tenant(struct pass *p, struct tenant *t)
{
	const char *key = t->id[0] ? t->id : t->ask;
	int64_t now = util_now_us();

	(void)state_tenant_get(p->s, key, &t->ts);
	if (t->ts.cursor[0] != '\0')
		snprintf(t->from, sizeof(t->from), "%s", t->ts.cursor);
	else
		util_time_format(now - (int64_t)p->c->initial_lookback_h * 3600 * 1000000, false,
				 t->from);
	snprintf(t->ts.cursor, sizeof(t->ts.cursor), "%s", t->from);
	t->max_page = p->max_page;
	t->st = T_QUEUED;
}

static bool stop_requested(int stop_fd)
{
	struct signalfd_siginfo si;

	if (stop_fd < 0)
		return false;
	return read(stop_fd, &si, sizeof(si)) == (ssize_t)sizeof(si);
}

int alerts_pass(const struct alerts_config *c, struct state *s, int stop_fd,
		struct pass_result *res, struct cerr *err)
{
	struct pass p = { .c = c, .s = s, .res = res };
	pthread_t th[TOKEN_THREADS];
	size_t n_th = 0;
	bool stopping = false;
	int rc = 0;

	memset(res, 0, sizeof(*res));
	p.max_page = (size_t)c->page_size * 4096;
	if (p.max_page < (4u << 20))
		p.max_page = 4u << 20;
	if (p.max_page > (64u << 20))
		p.max_page = 64u << 20;
	pthread_mutex_init(&p.mu, NULL);

	rc = list_tenants(&p, err);
	if (rc < 0)
		goto out;
	res->tenants = p.n;
	p.outs = calloc(c->n_outputs + 1, sizeof(*p.outs));
	p.multi = curl_multi_init();
	if (p.outs == NULL || p.multi == NULL) {
		rc = cerr_set(err, -ENOMEM, "out of memory");
		res->status = AX_ERROR;
		goto out;
	}
	curl_multi_setopt(p.multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, (long)MAX_INFLIGHT);
	curl_multi_setopt(p.multi, CURLMOPT_MAXCONNECTS, (long)MAX_INFLIGHT);
	for (size_t k = 0; k < c->n_outputs; k++) {
		struct cerr e = { "" };

		p.n_outs = k + 1;
		if (output_open(&p.outs[k], c, &c->outputs[k], &e) < 0)
			fprintf(stderr, "custody-alerts: %s\n", e.msg);
	}
	for (size_t i = 0; i < p.n; i++)
		prepare_tenant(&p, &p.t[i]);
	/* tenants the API told to wait (429) stay out until then */
	for (size_t i = 0; i < p.n; i++) {
		struct tenant *t = &p.t[i];
		int64_t now = util_now_us() / 1000000;

		if (t->ts.not_before > now)
			finish(&p, t, AX_FAILED, "the API asked to wait (429 Retry-After) for %lld s "
			       "more; skipped this pass", (long long)(t->ts.not_before - now));
	}
	for (; n_th < TOKEN_THREADS && n_th < p.n; n_th++)
		if (pthread_create(&th[n_th], NULL, token_worker, &p) != 0)
			break;
	if (n_th == 0 && p.n > 0) {
		rc = cerr_set(err, -EAGAIN, "cannot start a thread");
		res->status = AX_ERROR;
		goto out;
	}

	while (p.n_finished < p.n) {
		struct curl_waitfd wfd = { .fd = stop_fd, .events = CURL_WAIT_POLLIN };
		int64_t now = util_mono_ms(), next = now + 1000;
		CURLMsg *m;
		int running, left;

		if (stop_requested(stop_fd)) {
			stopping = true;
			break;
		}
		pthread_mutex_lock(&p.mu);
		for (size_t k = 0; k < p.n_done; k++) {
			struct tenant *t = &p.t[p.done[k]];

			if (t->st != T_QUEUED)
				continue;
			if (t->token_ok)
				t->st = T_READY;
			else
				finish(&p, t, t->status, NULL);
		}
		p.n_done = 0;
		pthread_mutex_unlock(&p.mu);
		for (size_t i = 0; i < p.n; i++) {
			struct tenant *t = &p.t[i];

			if (t->st == T_WAIT && t->wait_until_ms <= now)
				t->st = T_READY;
			if (t->st == T_WAIT && t->wait_until_ms < next)
				next = t->wait_until_ms;
			if (t->st == T_READY && p.inflight < MAX_INFLIGHT)
				(void)start_fetch(&p, t);
		}
		curl_multi_perform(p.multi, &running);
		while ((m = curl_multi_info_read(p.multi, &left)) != NULL) {
			struct tenant *t = NULL;

			if (m->msg != CURLMSG_DONE)
				continue;
			curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&t);
			if (t != NULL)
				page_done(&p, t, m->data.result);
		}
		now = util_mono_ms();
		if (p.dirty && (now - p.last_flush_ms >= FLUSH_MS || p.n_finished == p.n))
			flush(&p);
		if (p.n_finished == p.n)
			break;
		if (p.kick) {
			p.kick = false;
			continue;
		}
		curl_multi_poll(p.multi, stop_fd >= 0 ? &wfd : NULL, stop_fd >= 0 ? 1 : 0,
				(int)(next > now ? (next - now > 1000 ? 1000 : next - now) : 1), NULL);
	}
out:
	pthread_mutex_lock(&p.mu);
	p.stop = true;
	pthread_mutex_unlock(&p.mu);
	for (size_t i = 0; i < n_th; i++)
		pthread_join(th[i], NULL);
	for (size_t i = 0; i < p.n; i++) {
		end_transfer(&p, &p.t[i]);
		wipe_auth(&p.t[i]);
		buf_free(&p.t[i].body);
	}
	if (p.dirty)
		flush(&p);
	if (p.n_outs > 0 && state_begin(s) == 0)
		(void)state_outputs_clear(s);
	for (size_t k = 0; k < p.n_outs; k++) {
		struct output *o = &p.outs[k];

		if (state_begin(s) == 0)
			(void)state_output_put(s, o->cfg->label, o->waiting, o->broken ? o->error : NULL);
		output_close(o);
	}
	if (state_commit(s, err) < 0)
		worse(&res->status, AX_FAILED);
	/* Mail goes out once the API work is done: a slow mail server then
	 * delays the end of the pass, never another tenant's transfer. The
	 * queue is durable; a stopped pass leaves it for the next start. */
	if (c->n_rules > 0 && !stopping && rc == 0) {
		size_t failed = 0;

		alerts_notify_flush(c, s, &failed);
		if (failed > 0)
			worse(&res->status, AX_FAILED);
	}
	if (stopping)
		fprintf(stderr, "custody-alerts: stopped in the middle of a pass; unfinished "
			"tenants keep their cursors\n");
	free(p.outs);
	free(p.t);
	free(p.done);
	free(p.batch);
	free(p.sub);
	if (p.multi != NULL)
		curl_multi_cleanup(p.multi);
	pthread_mutex_destroy(&p.mu);
	return rc < 0 ? rc : (stopping ? -EINTR : 0);
}
