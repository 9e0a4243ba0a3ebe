/* witness_client.c — custodyd's client of the C2SP witnesses in
 * audit.witnesses (DESIGN §11.1): each newest signed checkpoint goes to
 * every witness as an add-checkpoint request with the consistency proof
 * from the size that witness last cosigned; each returned cosignature is
 * verified and stored beside its checkpoint.
 *
 * Owns: its libcurl multi handle (on the broker's loop: curl_loop.c),
 * one state per witness with at most one request in flight, a tick timer,
 * and the alarm shown in status. Never blocks the loop: reading the
 * checkpoint and its proof (every leaf of the tree) and storing a
 * cosignature run as jobs on the admin-reads thread (offload.c); the loop
 * does the HTTP and one Ed25519 verification per answer. A witness that is
 * down, hangs or answers garbage costs a timer and a log line, never a
 * token: answers are bounded (64 KiB), transfers time out (10 s), failures
 * back off (1 s doubling to 5 min).
 *
 * 409 (the witness knows another size): smaller than our checkpoint — send
 * again from that size, once; larger than our tree, or the same size the
 * witness already holds with another root (409 to old == its size), or a
 * consistency proof from the witness's own size that does not verify
 * (422): this store was rolled back, replaced or forked. That is recorded
 * (witness.conflict), logged, kept in status until an officer acknowledges
 * it (audit.ack_conflict), and that witness is not asked again meanwhile:
 * we never "fix" it by sending from 0.
 */
#include "broker_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>

#include "curl_loop.h"

#define WC_TICK_MS 1000
#define WC_MAX_ANSWER (64 * 1024)
#define WC_TIMEOUT_MS 10000L
#define WC_CONNECT_TIMEOUT_MS 5000L
#define WC_BACKOFF_MAX_MS (5 * 60 * 1000)
#define WC_FUTURE_SKEW_S 60

enum wc_state { WC_IDLE, WC_PREPARING, WC_SENDING, WC_STORING };

struct wc_witness {
	struct witness_client *wc;
	char *name, *url, *ca_file;
	struct audit_vkey key;
	enum wc_state state;
	bool cosigned_known;
	uint64_t cosigned;             /* the size it last cosigned, as we know it */
	uint64_t resend_from;          /* from a 409: the witness's size (0: none) */
	bool resending;
	bool conflict;                 /* not asked again until acknowledged */
	/* the request in flight */
	CURL *easy;
	struct curl_slist *hdrs;
	char *body;
	size_t body_len;
	char *note;
	uint64_t req_old, req_size;
	char *resp;
	size_t resp_len;
	bool resp_too_large;
	char ctype[64];
	/* health, for status */
	unsigned failures;
	int64_t next_ms;
	int64_t last_ok_s;
	char last_error[300];
};

struct witness_client {
	struct broker *b;
	struct curl_loop curl;         /* its multi handle on the loop */
	struct loop_timer *tick;
	struct wc_witness *w;
	size_t n;
	unsigned quorum;
	json_t *alarm;                 /* shown in status until acknowledged */
	unsigned jobs;                 /* offload jobs not yet done */
	bool freeing;
};

struct wc_job {
	struct offload_job job;        /* first: offload hands us this pointer */
	struct wc_witness *w;
	bool prepare;                  /* else: store */
	int rc;
	/* prepare */
	bool need_cosigned;
	uint64_t cosigned, old, size;
	char *body, *note;
	size_t body_len;
	char err[256];
	/* store */
	char *line;
};

static void wc_log_error(struct wc_witness *w, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* A failure: the status line, one log line, and backoff. */
static void wc_log_error(struct wc_witness *w, const char *fmt, ...)
{
	struct witness_client *wc = w->wc;
	va_list ap;
	int64_t delay;

	va_start(ap, fmt);
	vsnprintf(w->last_error, sizeof(w->last_error), fmt, ap);
	va_end(ap);
	w->failures++;
	delay = (int64_t)1000 << (w->failures < 9 ? w->failures - 1 : 9);
	if (delay > WC_BACKOFF_MAX_MS)
		delay = WC_BACKOFF_MAX_MS;
	w->next_ms = loop_now_ms(wc->b->loop) + delay;
	w->state = WC_IDLE;
	w->resending = false;
	w->resend_from = 0;
	broker_log("witness %s: %s; next try in %lld s", w->name, w->last_error,
		   (long long)(delay / 1000));
}

/* ---- the alarm ---------------------------------------------------------- */

struct wc_alarm_job {
	struct offload_job job;
	struct witness_client *wc;
	char *detail;                  /* NULL: clear */
};

static void alarm_run(struct offload_job *j)
{
	struct wc_alarm_job *a = (struct wc_alarm_job *)j;
	struct audit *au = a->wc->b->audit;
	int rc = a->detail ? audit_alarm_put(au, a->detail) : audit_alarm_clear(au);

	if (rc < 0)
		broker_log("cannot %s the witness alarm in the audit store: %s",
			   a->detail ? "store" : "clear", strerror(-rc));
}

static void alarm_done(struct offload_job *j, bool cancelled)
{
	struct wc_alarm_job *a = (struct wc_alarm_job *)j;

	if (!cancelled)
		a->wc->jobs--;
	free(a->detail);
	free(a);
}

static void alarm_persist(struct witness_client *wc, const char *detail)
{
	struct wc_alarm_job *a = calloc(1, sizeof(*a));

	if (a == NULL || (detail != NULL && (a->detail = strdup(detail)) == NULL)) {
		free(a);
		broker_log("cannot persist the witness alarm: out of memory");
		return;
	}
	a->wc = wc;
	a->job.run = alarm_run;
	a->job.done = alarm_done;
	wc->jobs++;
	offload_submit(wc->b, &a->job);
}

static void wc_conflict(struct wc_witness *w, uint64_t witness_size, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void wc_conflict(struct wc_witness *w, uint64_t witness_size, const char *fmt, ...)
{
	struct witness_client *wc = w->wc;
	struct broker *b = wc->b;
	char detail[512], when[UTIL_TIME_LEN];
	struct pending *p;
	json_t *rec, *al;
	char *text;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(detail, sizeof(detail), fmt, ap);
	va_end(ap);
	w->conflict = true;
	w->state = WC_IDLE;
	w->resending = false;
	snprintf(w->last_error, sizeof(w->last_error), "CONFLICT: %s", detail);
	broker_log("WITNESS CONFLICT: witness %s (%s): %s; this audit store was rolled back, "
		   "replaced or forked; an officer must look and acknowledge with 'custody audit "
		   "ack-conflict --reason TEXT'", w->name, w->key.name, detail);
	if (util_time_format(util_now_us(), false, when) < 0)
		when[0] = '\0';
	al = json_pack("{s:s,s:s,s:s,s:I,s:I,s:s,s:s}", "witness", w->name, "witness_key",
		       w->key.name, "url", w->url, "witness_size", (json_int_t)witness_size,
		       "our_size", (json_int_t)w->req_size, "detail", detail, "since", when);
	if (al == NULL) {
		broker_log("cannot record the witness conflict: out of memory");
		return;
	}
	if (wc->alarm == NULL) {
		wc->alarm = json_incref(al);
		text = json_dumps(al, JSON_COMPACT | JSON_SORT_KEYS);
		if (text != NULL)
			alarm_persist(wc, text);
		free(text);
	}
	/* the audit record, fire and forget: the log line prints once durable */
	p = pending_new(b, NULL);
	rec = record_new(b, "witness.conflict", "alarm", NULL, NULL, NULL);
	if (p == NULL || rec == NULL) {
		json_decref(rec);
		json_decref(al);
		if (p != NULL)
			pending_free(p);
		broker_log("cannot record the witness conflict: out of memory");
		return;
	}
	json_object_update(rec, al);
	json_object_del(rec, "since");
	json_decref(al);
	snprintf(p->log, sizeof(p->log), "witness.conflict recorded (witness %s)", w->name);
	pending_audit(p, rec);
}

/* ---- one request ------------------------------------------------------ */

static size_t write_cb(char *data, size_t size, size_t nmemb, void *ctx)
{
	struct wc_witness *w = ctx;
	size_t n = size * nmemb;
	char *nb;

	if (w->resp_len + n > WC_MAX_ANSWER) {
		w->resp_too_large = true;
		return 0; /* aborts the transfer */
	}
	nb = realloc(w->resp, w->resp_len + n + 1);
	if (nb == NULL)
		return 0;
	memcpy(nb + w->resp_len, data, n);
	w->resp = nb;
	w->resp_len += n;
	w->resp[w->resp_len] = '\0';
	return n;
}

static size_t header_cb(char *data, size_t size, size_t nmemb, void *ctx)
{
	struct wc_witness *w = ctx;
	size_t n = size * nmemb, k = strlen("content-type:");

	if (n > k && strncasecmp(data, "content-type:", k) == 0) {
		const char *v = data + k;
		size_t len = n - k;

		while (len > 0 && (*v == ' ' || *v == '\t')) {
			v++;
			len--;
		}
		while (len > 0 && (v[len - 1] == '\r' || v[len - 1] == '\n' || v[len - 1] == ' '))
			len--;
		snprintf(w->ctype, sizeof(w->ctype), "%.*s", (int)len, v);
	}
	return n;
}

static void request_clear(struct wc_witness *w)
{
	if (w->easy != NULL) {
		curl_multi_remove_handle(w->wc->curl.multi, w->easy);
		curl_easy_cleanup(w->easy);
		w->easy = NULL;
	}
	curl_slist_free_all(w->hdrs);
	w->hdrs = NULL;
	free(w->body);
	w->body = NULL;
	free(w->resp);
	w->resp = NULL;
	w->resp_len = 0;
	w->resp_too_large = false;
	w->ctype[0] = '\0';
}

static int request_start(struct wc_witness *w)
{
	CURL *e = curl_easy_init();

	if (e == NULL)
		return -ENOMEM;
	w->easy = e;
	w->hdrs = curl_slist_append(NULL, "Content-Type: text/plain; charset=utf-8");
	curl_easy_setopt(e, CURLOPT_URL, w->url);
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "https,http");
	curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, WC_TIMEOUT_MS);
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, WC_CONNECT_TIMEOUT_MS);
	curl_easy_setopt(e, CURLOPT_POST, 1L);
	curl_easy_setopt(e, CURLOPT_POSTFIELDS, w->body);
	curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)w->body_len);
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, w->hdrs);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, write_cb);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, w);
	curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, header_cb);
	curl_easy_setopt(e, CURLOPT_HEADERDATA, w);
	curl_easy_setopt(e, CURLOPT_PRIVATE, w);
	curl_easy_setopt(e, CURLOPT_USERAGENT, "custodyd");
	if (w->ca_file != NULL)
		curl_easy_setopt(e, CURLOPT_CAINFO, w->ca_file);
	if (curl_multi_add_handle(w->wc->curl.multi, e) != CURLM_OK) {
		request_clear(w);
		return -EIO;
	}
	w->state = WC_SENDING;
	return 0;
}

/* ---- jobs on the admin-reads thread ------------------------------------ */

static void prepare_run(struct offload_job *oj)
{
	struct wc_job *j = (struct wc_job *)oj;
	struct audit *a = j->w->wc->b->audit;
	char *lines = NULL;
	int rc;

	if (j->need_cosigned) {
		rc = audit_cosig_last_size(a, &j->w->key, &j->cosigned);
		if (rc < 0) {
			j->rc = rc;
			snprintf(j->err, sizeof(j->err), "cannot read stored cosignatures: %s",
				 strerror(-rc));
			return;
		}
		if (j->old == 0)
			j->old = j->cosigned;
	}
	j->size = audit_checkpoint_size(a);
	if (j->size == 0 || j->size == j->old) {
		j->rc = -EALREADY; /* nothing newer to send */
		return;
	}
	if (j->old > j->size) {
		j->rc = -ERANGE; /* the witness cosigned more than we have */
		return;
	}
	rc = audit_checkpoint_note(a, j->size, &j->note);
	if (rc == 0 && j->old > 0)
		rc = audit_consistency_lines(a, j->old, j->size, &lines);
	if (rc < 0) {
		j->rc = rc;
		snprintf(j->err, sizeof(j->err), "cannot read checkpoint %" PRIu64 "%s: %s", j->size,
			 j->old ? " or its consistency proof" : "", strerror(-rc));
		free(lines);
		return;
	}
	if (asprintf(&j->body, "old %" PRIu64 "\n%s\n%s", j->old, lines ? lines : "", j->note) < 0) {
		j->body = NULL;
		j->rc = -ENOMEM;
		snprintf(j->err, sizeof(j->err), "out of memory");
	} else {
		j->body_len = strlen(j->body);
	}
	free(lines);
}

static void store_run(struct offload_job *oj)
{
	struct wc_job *j = (struct wc_job *)oj;
	struct cerr err = {{0}};

	j->rc = audit_cosig_store(j->w->wc->b->audit, j->size, &j->w->key, j->line,
				  strlen(j->line), &err);
	if (j->rc < 0)
		snprintf(j->err, sizeof(j->err), "cannot store its cosignature: %s", err.msg);
}

static void job_free(struct wc_job *j)
{
	free(j->body);
	free(j->note);
	free(j->line);
	free(j);
}

static void job_done(struct offload_job *oj, bool cancelled)
{
	struct wc_job *j = (struct wc_job *)oj;
	struct wc_witness *w = j->w;

	if (cancelled) {
		job_free(j);
		return;
	}
	w->wc->jobs--;
	if (!j->prepare) {
		if (j->rc < 0) {
			wc_log_error(w, "%s", j->err);
		} else {
			w->cosigned = j->size;
			w->cosigned_known = true;
			w->failures = 0;
			w->last_error[0] = '\0';
			w->last_ok_s = util_now_us() / 1000000;
			w->state = WC_IDLE;
			broker_log("witness %s cosigned the checkpoint at size %" PRIu64, w->name,
				   j->size);
		}
		job_free(j);
		return;
	}
	if (j->need_cosigned) {
		w->cosigned = j->cosigned;
		w->cosigned_known = true;
	}
	if (j->rc == -EALREADY) {
		w->state = WC_IDLE;
		w->resending = false;
		job_free(j);
		return;
	}
	if (j->rc == -ERANGE) {
		w->req_size = j->size;
		wc_conflict(w, j->old,
			    "the witness has cosigned size %" PRIu64 ", larger than this store's "
			    "newest checkpoint (%" PRIu64 ")", j->old, j->size);
		job_free(j);
		return;
	}
	if (j->rc < 0) {
		wc_log_error(w, "%s", j->err);
		job_free(j);
		return;
	}
	w->body = j->body;
	w->body_len = j->body_len;
	j->body = NULL;
	free(w->note);
	w->note = j->note;
	j->note = NULL;
	w->req_old = j->old;
	w->req_size = j->size;
	job_free(j);
	if (request_start(w) < 0)
		wc_log_error(w, "cannot start a request to %s", w->url);
}

static void submit_prepare(struct wc_witness *w, uint64_t old)
{
	struct wc_job *j = calloc(1, sizeof(*j));

	if (j == NULL) {
		wc_log_error(w, "out of memory");
		return;
	}
	j->job.run = prepare_run;
	j->job.done = job_done;
	j->w = w;
	j->prepare = true;
	j->need_cosigned = !w->cosigned_known;
	j->old = old;
	w->state = WC_PREPARING;
	w->wc->jobs++;
	offload_submit(w->wc->b, &j->job);
}

/* ---- answers ------------------------------------------------------------- */

static int parse_size(const char *s, size_t len, uint64_t *out)
{
	uint64_t v = 0;

	if (len < 2 || s[len - 1] != '\n')
		return -EINVAL;
	len--;
	if (len > 20 || (len > 1 && s[0] == '0'))
		return -EINVAL;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9' || v > (UINT64_MAX - (uint64_t)(s[i] - '0')) / 10)
			return -EINVAL;
		v = v * 10 + (uint64_t)(s[i] - '0');
	}
	*out = v;
	return 0;
}

/* 200: find the line by this witness's key that verifies over our note,
 * dated not in the future; hand it to the store job. */
static void answer_ok(struct wc_witness *w)
{
	struct audit_note *n = NULL;
	struct cerr err = {{0}};
	char *joined = NULL;
	size_t nl = strlen(w->note);
	uint64_t t = 0;
	size_t ix = 0;
	struct wc_job *j;
	int rc;

	if (w->resp_len == 0 || memchr(w->resp, '\0', w->resp_len) != NULL) {
		wc_log_error(w, "answer 200 holds no valid cosignature by %s (%s); refused",
			     w->key.name, w->resp_len ? "a NUL byte" : "empty");
		return;
	}
	joined = malloc(nl + w->resp_len + 1);
	n = malloc(sizeof(*n));
	if (joined == NULL || n == NULL) {
		free(joined);
		free(n);
		wc_log_error(w, "out of memory");
		return;
	}
	memcpy(joined, w->note, nl);
	memcpy(joined + nl, w->resp, w->resp_len);
	joined[nl + w->resp_len] = '\0';
	rc = audit_note_parse(joined, nl + w->resp_len, n, &err);
	if (rc == 0)
		rc = audit_note_find_sig(n, &w->key, &t, &ix, &err);
	if (rc < 0) {
		wc_log_error(w, "answer 200 holds no valid cosignature by %s (%s); refused",
			     w->key.name, err.msg);
		goto out;
	}
	if (n->sig[ix].line < joined + nl) {
		/* the note we sent already held it: the answer added nothing */
		wc_log_error(w, "answer 200 holds no new cosignature by %s; refused", w->key.name);
		goto out;
	}
	if (t > (uint64_t)(util_now_us() / 1000000) + WC_FUTURE_SKEW_S) {
		wc_log_error(w, "its cosignature is dated in the future (time %" PRIu64 "); refused",
			     t);
		goto out;
	}
	j = calloc(1, sizeof(*j));
	if (j == NULL || (j->line = strndup(n->sig[ix].line, n->sig[ix].line_len)) == NULL) {
		free(j);
		wc_log_error(w, "out of memory");
		goto out;
	}
	j->job.run = store_run;
	j->job.done = job_done;
	j->w = w;
	j->size = w->req_size;
	w->state = WC_STORING;
	w->wc->jobs++;
	offload_submit(w->wc->b, &j->job);
out:
	free(joined);
	free(n);
}

static void answer(struct wc_witness *w, CURLcode cc)
{
	long status = 0;
	uint64_t theirs = 0;

	curl_easy_getinfo(w->easy, CURLINFO_RESPONSE_CODE, &status);
	if (w->resp_too_large) {
		wc_log_error(w, "answer larger than %d KiB; refused", WC_MAX_ANSWER / 1024);
		return;
	}
	if (cc != CURLE_OK) {
		wc_log_error(w, "cannot reach %s: %s", w->url, curl_easy_strerror(cc));
		return;
	}
	switch (status) {
	case 200:
		answer_ok(w);
		return;
	case 409:
		if (strncmp(w->ctype, "text/x.tlog.size", 16) != 0 || w->resp == NULL ||
		    parse_size(w->resp, w->resp_len, &theirs) < 0) {
			wc_log_error(w, "answer 409 without a text/x.tlog.size body; refused");
			return;
		}
		if (theirs > w->req_size) {
			wc_conflict(w, theirs,
				    "the witness has cosigned size %" PRIu64 ", larger than this "
				    "store's newest checkpoint (%" PRIu64 ")", theirs, w->req_size);
			return;
		}
		if (theirs == w->req_old) {
			wc_conflict(w, theirs,
				    "the witness holds size %" PRIu64 " with another root than this "
				    "store's checkpoint at that size", theirs);
			return;
		}
		if (w->resending) {
			wc_log_error(w, "answer 409 again (size %" PRIu64 ") after resending", theirs);
			return;
		}
		/* it knows an older (or no) checkpoint of ours: prove from there */
		broker_log("witness %s knows size %" PRIu64 ", not %" PRIu64 ": sending again from it",
			   w->name, theirs, w->req_old);
		w->cosigned = theirs;
		w->cosigned_known = true;
		w->resending = true;
		request_clear(w);
		submit_prepare(w, theirs);
		return;
	case 422:
		wc_conflict(w, w->req_old,
			    "the witness's tree at size %" PRIu64 " is not a prefix of this store's "
			    "tree at size %" PRIu64 " (consistency proof refused)", w->req_old,
			    w->req_size);
		return;
	case 403:
		wc_log_error(w, "answer 403: the witness does not accept this broker's key; give it "
			     "the audit_verifier_key ('custody witness add-log')");
		return;
	case 404:
		wc_log_error(w, "answer 404: the witness does not follow this log or the URL is "
			     "wrong ('custody witness add-log', audit.witnesses[].url)");
		return;
	default:
		wc_log_error(w, "answer %ld%s", status,
			     status == 400 ? " (bad request)" : " (unexpected)");
		return;
	}
}

/* curl_loop's done callback: a witness answered, or its request failed. */
static void request_done(void *ctx, CURLcode cc)
{
	struct wc_witness *w = ctx;

	answer(w, cc);
	/* the answer is handled (a resend prepares a new body apart) */
	request_clear(w);
}

/* ---- the tick ------------------------------------------------------------ */

static void on_tick(struct loop *l, struct loop_timer *t, void *ctx)
{
	struct witness_client *wc = ctx;
	uint64_t cp = audit_checkpoint_size(wc->b->audit);
	int64_t now = loop_now_ms(l);

	for (size_t i = 0; i < wc->n; i++) {
		struct wc_witness *w = &wc->w[i];

		if (w->state != WC_IDLE || w->conflict || now < w->next_ms || cp == 0)
			continue;
		if (w->cosigned_known && w->cosigned == cp)
			continue;
		submit_prepare(w, w->cosigned_known ? w->cosigned : 0);
	}
	loop_timer_arm(t, WC_TICK_MS);
}

/* ---- public ---------------------------------------------------------------- */

int witness_client_new(struct broker *b, struct witness_client **out)
{
	const struct broker_config *c = b->cfg;
	struct witness_client *wc;
	char *detail = NULL;

	*out = NULL;
	if (c->n_witnesses == 0)
		return 0;
	wc = calloc(1, sizeof(*wc));
	if (wc == NULL)
		return -ENOMEM;
	wc->b = b;
	wc->quorum = c->witness_quorum;
	wc->w = calloc(c->n_witnesses, sizeof(*wc->w));
	if (wc->w == NULL || curl_loop_init(&wc->curl, b->loop, request_done) < 0 ||
	    loop_timer_new(b->loop, on_tick, wc, &wc->tick) < 0)
		goto fail;
	wc->n = c->n_witnesses;
	for (size_t i = 0; i < wc->n; i++) {
		struct wc_witness *w = &wc->w[i];

		w->wc = wc;
		w->key = c->witnesses[i].vkey;
		w->name = strdup(c->witnesses[i].name);
		w->url = strdup(c->witnesses[i].url);
		w->ca_file = c->witnesses[i].ca_file ? strdup(c->witnesses[i].ca_file) : NULL;
		if (w->name == NULL || w->url == NULL ||
		    (c->witnesses[i].ca_file != NULL && w->ca_file == NULL))
			goto fail;
	}
	/* an alarm nobody acknowledged yet is shown again after a restart */
	if (audit_alarm_get(b->audit, &detail) == 0) {
		wc->alarm = json_loads(detail, 0, NULL);
		if (wc->alarm != NULL) {
			const char *name = json_string_value(json_object_get(wc->alarm, "witness"));

			for (size_t i = 0; i < wc->n; i++)
				if (name != NULL && strcmp(name, wc->w[i].name) == 0) {
					wc->w[i].conflict = true;
					snprintf(wc->w[i].last_error, sizeof(wc->w[i].last_error),
						 "CONFLICT: %s",
						 json_string_value(json_object_get(wc->alarm,
										   "detail")));
				}
			broker_log("WITNESS CONFLICT still unacknowledged: %s", detail);
		}
		free(detail);
	}
	loop_timer_arm(wc->tick, 0);
	*out = wc;
	return 0;
fail:
	witness_client_free(wc);
	return -ENOMEM;
}

void witness_client_free(struct witness_client *wc)
{
	if (wc == NULL)
		return;
	for (size_t i = 0; i < wc->n; i++) {
		struct wc_witness *w = &wc->w[i];

		request_clear(w);
		free(w->note);
		free(w->name);
		free(w->url);
		free(w->ca_file);
	}
	curl_loop_cleanup(&wc->curl);
	if (wc->tick != NULL)
		loop_timer_free(wc->tick);
	json_decref(wc->alarm);
	free(wc->w);
	free(wc);
}

json_t *witness_client_status(struct witness_client *wc)
{
	json_t *list = json_array();

	if (wc == NULL || list == NULL) {
		json_decref(list);
		return NULL;
	}
	for (size_t i = 0; i < wc->n; i++) {
		struct wc_witness *w = &wc->w[i];
		char when[UTIL_TIME_LEN] = "";

		if (w->last_ok_s > 0)
			util_time_format(w->last_ok_s * 1000000, false, when);
		json_array_append_new(
			list, json_pack("{s:s,s:s,s:s,s:I,s:s?,s:s?,s:b,s:s}", "name", w->name, "key",
					w->key.name, "url", w->url, "cosigned_size",
					(json_int_t)(w->cosigned_known ? w->cosigned : 0),
					"last_cosigned_at", when[0] ? when : NULL, "last_error",
					w->last_error[0] ? w->last_error : NULL, "conflict",
					w->conflict, "state",
					w->state == WC_IDLE ? "idle" : "busy"));
	}
	return json_pack("{s:o,s:I,s:O?}", "witnesses", list, "quorum", (json_int_t)wc->quorum,
			 "conflict", wc->alarm);
}

bool witness_client_has_alarm(const struct witness_client *wc)
{
	return wc != NULL && wc->alarm != NULL;
}

json_t *witness_client_ack(struct witness_client *wc)
{
	json_t *was;

	if (wc == NULL || wc->alarm == NULL)
		return NULL;
	was = wc->alarm;
	wc->alarm = NULL;
	alarm_persist(wc, NULL);
	for (size_t i = 0; i < wc->n; i++) {
		struct wc_witness *w = &wc->w[i];

		if (w->conflict) {
			/* ask again from what we stored; a real rollback conflicts again */
			w->conflict = false;
			w->cosigned_known = false;
			w->failures = 0;
			w->next_ms = 0;
			w->last_error[0] = '\0';
		}
	}
	return was;
}
