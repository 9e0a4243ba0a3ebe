/* report_html.c — the audit trail as one self-contained HTML page
 * (custody audit report, DESIGN.md §11.3).
 *
 * It lives in cli/, not in the audit library: the audit library is the
 * trust core and stays small; this file is presentation and may only use
 * what audit.h's verification hands it (report_record is the verifier's
 * on_record callback; the banner reads the verifier's stats), so it cannot
 * show a record that was not checked.
 *
 * Two passes: records are folded into views (the export's tenant; or the
 * whole store plus one view per tenant) while the verifier walks them,
 * then the page is written. Strings seen many times (principals,
 * purposes, scopes) are kept once in a pool. Record strings are hostile:
 * every one goes through html_text (escaped, controls made visible, cut
 * at a length) and inline ones sit in <bdi> so right-to-left text cannot
 * reorder what is around it. */
#include "report.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <sodium.h>

#include "util.h"

#define US_PER_DAY INT64_C(86400000000)
#define TOKENS_INLINE 500     /* a token table this small is shown whole */
#define TOKENS_PER_PAGE 1000  /* larger ones: <details> per month, pages of this */
#define COMBOS_SHOWN 200      /* accesses table rows before "n more" */
#define REFUSALS_SHOWN 100
#define ACTIONS_SHOWN 2000
#define CHART_DAYS_MAX 400    /* more days than this: one bar per week */
#define CUT_CELL 160          /* code points shown of a string in a table */
#define CUT_LONG 2000         /* ... in a <details> "full text" */

/* ---- strings ------------------------------------------------------------ */

/* A pool of strings: one copy of each, stable pointers, as long as the
 * report lives. */
struct pool {
	json_t *map; /* string -> json string holding the same (its value is the copy) */
};

static const char *pool_get(struct pool *p, const char *s)
{
	json_t *v;

	if (s == NULL)
		return NULL;
	v = json_object_get(p->map, s);
	if (v == NULL) {
		v = json_string(s);
		if (v == NULL || json_object_set_new(p->map, s, v) < 0)
			return NULL;
	}
	return json_string_value(v);
}

/* Strings seen once (times, token hashes, ids): copied into chunks, freed
 * with the report. */
struct chunk {
	struct chunk *next;
	size_t used, cap;
	char data[];
};

static const char *arena_dup(struct chunk **head, const char *s)
{
	size_t n;
	struct chunk *c = *head;
	char *p;

	if (s == NULL)
		return NULL;
	n = strlen(s) + 1;
	if (c == NULL || c->cap - c->used < n) {
		size_t cap = n > (1u << 20) ? n : (1u << 20);

		c = malloc(sizeof(*c) + cap);
		if (c == NULL)
			return NULL;
		c->next = *head;
		c->used = 0;
		c->cap = cap;
		*head = c;
	}
	p = c->data + c->used;
	memcpy(p, s, n);
	c->used += n;
	return p;
}

/* ---- the model ------------------------------------------------------------ */

struct day {
	int64_t day; /* days since the epoch, UTC */
	uint64_t issued, refused, failed;
};

struct combo {
	const char *principal, *purpose, *scope;
	const char *exe[3]; /* the first few programs seen */
	uint64_t issued, refused, failed;
	int64_t first_us, last_us;
};

struct refusal {
	const char *reason;
	uint64_t n;
	const char *principal[3];
	int64_t first_us, last_us;
};

struct tokrow {
	int64_t us;
	const char *time, *principal, *purpose, *cache, *sha, *uti, *crid;
};

struct evcount {
	const char *event, *outcome, *who;
	uint64_t n;
	int64_t last_us;
};

struct view {
	const char *tenant;      /* NULL: the whole store */
	const char *tenant_name; /* from grant.import records, when they say */
	uint64_t records, bad_records, issued, refused, failed;
	int64_t first_us, last_us;
	const char *first_time, *last_time;
	struct day *days;
	size_t ndays, cdays;
	json_t *combo_ix; /* key -> integer index into combos */
	struct combo *combos;
	size_t ncombos, ccombos;
	json_t *refusal_ix;
	struct refusal *refusals;
	size_t nrefusals, crefusals;
	json_t *actions;  /* array of record objects, in seq order */
	uint64_t actions_dropped;
	json_t *other_ix;
	struct evcount *others;
	size_t nothers, cothers;
	struct tokrow *tokens;
	size_t ntokens, ctokens;
	bool keep_tokens;
};

struct report {
	bool per_tenant;
	struct pool pool;
	struct chunk *arena;
	struct view all;
	json_t *tenant_ix; /* tenant -> index into views */
	struct view **views;
	size_t nviews;
	uint64_t last_seq;
};

#define GROW(arr, n, cap)                                                         \
	((n) < (cap) ? 0                                                          \
		     : grow_array((void **)&(arr), &(cap), sizeof(*(arr))))

static int grow_array(void **arr, size_t *cap, size_t elem)
{
	size_t nc = *cap ? *cap * 2 : 16;
	void *na = realloc(*arr, nc * elem);

	if (na == NULL)
		return -ENOMEM;
	*arr = na;
	*cap = nc;
	return 0;
}

static int view_init(struct view *v, const char *tenant, bool keep_tokens)
{
	memset(v, 0, sizeof(*v));
	v->tenant = tenant;
	v->keep_tokens = keep_tokens;
	v->combo_ix = json_object();
	v->refusal_ix = json_object();
	v->other_ix = json_object();
	v->actions = json_array();
	if (!v->combo_ix || !v->refusal_ix || !v->other_ix || !v->actions)
		return -ENOMEM;
	return 0;
}

static void view_free(struct view *v)
{
	json_decref(v->combo_ix);
	json_decref(v->refusal_ix);
	json_decref(v->other_ix);
	json_decref(v->actions);
	free(v->days);
	free(v->combos);
	free(v->refusals);
	free(v->others);
	free(v->tokens);
}

int report_new(bool per_tenant, struct report **out)
{
	struct report *r = calloc(1, sizeof(*r));

	if (r == NULL)
		return -ENOMEM;
	r->per_tenant = per_tenant;
	r->pool.map = json_object();
	r->tenant_ix = json_object();
	if (r->pool.map == NULL || r->tenant_ix == NULL ||
	    view_init(&r->all, NULL, !per_tenant) < 0) {
		report_free(r);
		return -ENOMEM;
	}
	*out = r;
	return 0;
}

void report_free(struct report *r)
{
	if (r == NULL)
		return;
	view_free(&r->all);
	for (size_t i = 0; i < r->nviews; i++) {
		view_free(r->views[i]);
		free(r->views[i]);
	}
	free(r->views);
	json_decref(r->tenant_ix);
	json_decref(r->pool.map);
	while (r->arena != NULL) {
		struct chunk *next = r->arena->next;

		free(r->arena);
		r->arena = next;
	}
	free(r);
}

/* ---- folding records into views ------------------------------------------- */

static const char *sfield(json_t *o, const char *k)
{
	return json_string_value(json_object_get(o, k));
}

/* The tool-socket codes DESIGN.md §9 lists under exit status 3: the broker
 * said no. Anything else that is not "ok" failed (upstream, internal). */
static bool is_refusal(const char *code)
{
	static const char *const refused[] = {
		"unauthenticated", "denied", "unknown_tenant", "scope_not_granted",
		"grant_pending", "grant_expired", "revoked", "suspended", "locked_down",
		"rate_limited", NULL,
	};

	for (size_t i = 0; refused[i]; i++)
		if (strcmp(code, refused[i]) == 0)
			return true;
	return false;
}

/* Admin ops that only read: counted, not listed as officer actions. */
static bool is_read_op(const char *event)
{
	static const char *const reads[] = {
		"admin.grant.list", "admin.grant.show", "admin.status", "admin.audit.query",
		"admin.audit.export", NULL,
	};

	for (size_t i = 0; reads[i]; i++)
		if (strcmp(event, reads[i]) == 0)
			return true;
	return false;
}

static bool is_action(const char *event)
{
	if (strncmp(event, "admin.", 6) == 0)
		return !is_read_op(event);
	return strcmp(event, "grant.expired") == 0 || strcmp(event, "witness.conflict") == 0 ||
	       strcmp(event, "witness.ack_conflict") == 0 || strcmp(event, "reload") == 0;
}

static int add_day(struct view *v, int64_t day, int kind)
{
	struct day *d = NULL;

	/* records come in time order; a hostile file may not */
	for (size_t i = v->ndays; i > 0; i--) {
		if (v->days[i - 1].day == day) {
			d = &v->days[i - 1];
			break;
		}
		if (v->days[i - 1].day < day)
			break;
	}
	if (d == NULL) {
		size_t at = v->ndays;

		if (GROW(v->days, v->ndays, v->cdays) < 0)
			return -ENOMEM;
		while (at > 0 && v->days[at - 1].day > day)
			at--;
		memmove(&v->days[at + 1], &v->days[at], (v->ndays - at) * sizeof(*d));
		v->ndays++;
		d = &v->days[at];
		*d = (struct day){ .day = day };
	}
	if (kind == 0)
		d->issued++;
	else if (kind == 1)
		d->refused++;
	else
		d->failed++;
	return 0;
}

static void note3(const char *arr[3], const char *s)
{
	if (s == NULL)
		return;
	for (int i = 0; i < 3; i++) {
		if (arr[i] == s)
			return;
		if (arr[i] == NULL) {
			arr[i] = s;
			return;
		}
	}
}

static int add_combo(struct report *r, struct view *v, json_t *rec, int kind, int64_t us)
{
	const char *p = pool_get(&r->pool, sfield(rec, "principal"));
	const char *pu = pool_get(&r->pool, sfield(rec, "purpose"));
	const char *sc = pool_get(&r->pool, sfield(rec, "scope"));
	const char *exe = pool_get(&r->pool, sfield(json_object_get(rec, "peer"), "exe"));
	char key[3 * sizeof(void *) * 2 + 8];
	struct combo *c;
	json_t *ix;

	/* pooled strings are unique, so their addresses make the key */
	snprintf(key, sizeof(key), "%p/%p/%p", (const void *)p, (const void *)pu, (const void *)sc);
	ix = json_object_get(v->combo_ix, key);
	if (ix == NULL) {
		if (GROW(v->combos, v->ncombos, v->ccombos) < 0 ||
		    json_object_set_new(v->combo_ix, key, json_integer((json_int_t)v->ncombos)) < 0)
			return -ENOMEM;
		c = &v->combos[v->ncombos++];
		*c = (struct combo){ .principal = p, .purpose = pu, .scope = sc, .first_us = us };
	} else {
		c = &v->combos[json_integer_value(ix)];
	}
	note3(c->exe, exe);
	c->last_us = us;
	if (kind == 0)
		c->issued++;
	else if (kind == 1)
		c->refused++;
	else
		c->failed++;
	return 0;
}

static int add_refusal(struct report *r, struct view *v, json_t *rec, const char *code, int64_t us)
{
	const char *reason = pool_get(&r->pool, code);
	struct refusal *f;
	json_t *ix;

	if (reason == NULL)
		return -ENOMEM;
	ix = json_object_get(v->refusal_ix, reason);
	if (ix == NULL) {
		if (GROW(v->refusals, v->nrefusals, v->crefusals) < 0 ||
		    json_object_set_new(v->refusal_ix, reason,
					json_integer((json_int_t)v->nrefusals)) < 0)
			return -ENOMEM;
		f = &v->refusals[v->nrefusals++];
		*f = (struct refusal){ .reason = reason, .first_us = us };
	} else {
		f = &v->refusals[json_integer_value(ix)];
	}
	f->n++;
	f->last_us = us;
	note3(f->principal, pool_get(&r->pool, sfield(rec, "principal")));
	return 0;
}

static int add_other(struct report *r, struct view *v, json_t *rec, const char *event, int64_t us)
{
	const char *outcome = sfield(rec, "outcome");
	const char *who = sfield(rec, "actor") ? sfield(rec, "actor") : sfield(rec, "principal");
	char *key = NULL;
	struct evcount *e;
	json_t *ix;

	if (asprintf(&key, "%s\x1f%s\x1f%s", event, outcome ? outcome : "", who ? who : "") < 0)
		return -ENOMEM;
	ix = json_object_get(v->other_ix, key);
	if (ix == NULL) {
		if (GROW(v->others, v->nothers, v->cothers) < 0 ||
		    json_object_set_new(v->other_ix, key, json_integer((json_int_t)v->nothers)) < 0) {
			free(key);
			return -ENOMEM;
		}
		e = &v->others[v->nothers++];
		*e = (struct evcount){ .event = pool_get(&r->pool, event),
				       .outcome = pool_get(&r->pool, outcome),
				       .who = pool_get(&r->pool, who) };
	} else {
		e = &v->others[json_integer_value(ix)];
	}
	free(key);
	e->n++;
	e->last_us = us;
	return 0;
}

static int add_token(struct report *r, struct view *v, json_t *rec, const char *time, int64_t us)
{
	struct tokrow *t;

	if (!v->keep_tokens)
		return 0;
	if (GROW(v->tokens, v->ntokens, v->ctokens) < 0)
		return -ENOMEM;
	t = &v->tokens[v->ntokens++];
	/* hashes and ids are unique per row: copied, not pooled */
	*t = (struct tokrow){
		.us = us,
		.time = time,
		.principal = pool_get(&r->pool, sfield(rec, "principal")),
		.purpose = pool_get(&r->pool, sfield(rec, "purpose")),
		.cache = pool_get(&r->pool, sfield(rec, "cache")),
		.sha = arena_dup(&r->arena, sfield(rec, "token_sha256")),
		.uti = arena_dup(&r->arena, sfield(rec, "token_uti")),
		.crid = arena_dup(&r->arena, sfield(rec, "client_request_id")),
	};
	if ((sfield(rec, "token_sha256") && !t->sha) || (sfield(rec, "token_uti") && !t->uti) ||
	    (sfield(rec, "client_request_id") && !t->crid))
		return -ENOMEM;
	return 0;
}

static int view_fold(struct report *r, struct view *v, json_t *rec, const char *event,
		     const char *time, int64_t us)
{
	int rc = 0;

	v->records++;
	if (v->first_time == NULL || us < v->first_us) {
		v->first_us = us;
		v->first_time = time;
	}
	if (v->last_time == NULL || us >= v->last_us) {
		v->last_us = us;
		v->last_time = time;
	}
	if (v->tenant_name == NULL && sfield(rec, "tenant_name") != NULL)
		v->tenant_name = pool_get(&r->pool, sfield(rec, "tenant_name"));
	if (strcmp(event, "token") == 0) {
		const char *outcome = sfield(rec, "outcome");
		int kind;

		outcome = outcome ? outcome : "(none)";
		kind = strcmp(outcome, "ok") == 0 ? 0 : is_refusal(outcome) ? 1 : 2;
		if (kind == 0)
			v->issued++;
		else if (kind == 1)
			v->refused++;
		else
			v->failed++;
		rc = add_day(v, us >= 0 ? us / US_PER_DAY : (us - US_PER_DAY + 1) / US_PER_DAY,
			     kind);
		if (rc == 0)
			rc = add_combo(r, v, rec, kind, us);
		if (rc == 0 && kind != 0)
			rc = add_refusal(r, v, rec, sfield(rec, "error") ? sfield(rec, "error") : outcome,
					 us);
		if (rc == 0 && kind == 0)
			rc = add_token(r, v, rec, time, us);
		return rc;
	}
	if (is_action(event)) {
		if (json_array_size(v->actions) >= ACTIONS_SHOWN) {
			v->actions_dropped++;
			return 0;
		}
		return json_array_append(v->actions, rec) < 0 ? -ENOMEM : 0;
	}
	return add_other(r, v, rec, event, us);
}

static struct view *tenant_view(struct report *r, const char *tenant)
{
	json_t *ix = json_object_get(r->tenant_ix, tenant);
	struct view **nv, *v;

	if (ix != NULL)
		return r->views[json_integer_value(ix)];
	nv = realloc(r->views, (r->nviews + 1) * sizeof(*nv));
	if (nv == NULL)
		return NULL;
	r->views = nv;
	v = calloc(1, sizeof(*v));
	if (v == NULL)
		return NULL;
	if (view_init(v, pool_get(&r->pool, tenant), true) < 0 || v->tenant == NULL ||
	    json_object_set_new(r->tenant_ix, tenant, json_integer((json_int_t)r->nviews)) < 0) {
		view_free(v);
		free(v);
		return NULL;
	}
	r->views[r->nviews++] = v;
	return v;
}

int report_record(void *ctx, uint64_t seq, const char *body, size_t len, json_t *parsed)
{
	struct report *r = ctx;
	json_t *rec;
	const char *event, *time, *tenant;
	int64_t us = 0;
	int rc;

	r->last_seq = seq;
	/* the verifier checked the bytes; a body that is not an object we
	 * can read is counted, not shown */
	rec = parsed ? json_incref(parsed) : json_loadb(body, len, 0, NULL);
	event = sfield(rec, "event");
	time = sfield(rec, "time");
	if (!json_is_object(rec) || event == NULL || time == NULL ||
	    util_time_parse(time, &us) < 0) {
		r->all.records++;
		r->all.bad_records++;
		json_decref(rec);
		return 0;
	}
	time = arena_dup(&r->arena, time);
	if (time == NULL) {
		json_decref(rec);
		return -ENOMEM;
	}
	rc = view_fold(r, &r->all, rec, event, time, us);
	tenant = sfield(rec, "tenant");
	if (rc == 0 && r->per_tenant && tenant != NULL) {
		struct view *v = tenant_view(r, tenant);

		rc = v ? view_fold(r, v, rec, event, time, us) : -ENOMEM;
	}
	if (rc == 0 && !r->per_tenant && tenant != NULL && r->all.tenant == NULL)
		r->all.tenant = pool_get(&r->pool, tenant);
	json_decref(rec);
	return rc;
}

/* ---- writing ---------------------------------------------------------------- */

static void puts_(FILE *f, const char *s)
{
	fputs(s, f);
}

static bool cp_visible(uint32_t c)
{
	/* C0 and C1 controls, DEL */
	if (c < 0x20 || (c >= 0x7f && c <= 0x9f))
		return false;
	/* bidi marks, embeddings, overrides and isolates; the Arabic letter mark */
	if (c == 0x061c || c == 0x200e || c == 0x200f || (c >= 0x202a && c <= 0x202e) ||
	    (c >= 0x2066 && c <= 0x2069))
		return false;
	/* zero-width and invisible formatting, line/paragraph separators, BOM,
	 * interlinear annotations, tag characters */
	if ((c >= 0x200b && c <= 0x200d) || c == 0x2028 || c == 0x2029 || c == 0x2060 ||
	    (c >= 0x2061 && c <= 0x2064) || c == 0xfeff || (c >= 0xfff9 && c <= 0xfffb) ||
	    (c >= 0xe0000 && c <= 0xe007f) || c == 0x00ad || c == 0x034f || c == 0x180e)
		return false;
	return true;
}

/* One code point from s (at most n bytes); *adv its length. Invalid
 * sequences (not from jansson, which checks UTF-8) read as U+FFFD. */
static uint32_t utf8_next(const unsigned char *s, size_t n, size_t *adv)
{
	uint32_t c = s[0];
	size_t need, i;

	*adv = 1;
	if (c < 0x80)
		return c;
	if ((c & 0xe0) == 0xc0) {
		need = 1;
		c &= 0x1f;
	} else if ((c & 0xf0) == 0xe0) {
		need = 2;
		c &= 0x0f;
	} else if ((c & 0xf8) == 0xf0) {
		need = 3;
		c &= 0x07;
	} else {
		return 0xfffd;
	}
	if (need >= n)
		return 0xfffd;
	for (i = 1; i <= need; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0xfffd;
		c = c << 6 | (s[i] & 0x3f);
	}
	*adv = need + 1;
	if ((need == 1 && c < 0x80) || (need == 2 && c < 0x800) || (need == 3 && c < 0x10000) ||
	    c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
		return 0xfffd;
	return c;
}

void report_html_text(FILE *f, const char *s, size_t len, size_t limit)
{
	const unsigned char *p = (const unsigned char *)s, *run = p;
	size_t i = 0, shown = 0, adv;

	while (i < len) {
		unsigned char b = p[i];
		const char *rep = NULL;
		uint32_t c;

		if (limit && shown == limit)
			break;
		/* plain ASCII: copied in runs */
		if (b >= 0x20 && b < 0x7f && b != '&' && b != '<' && b != '>' && b != '"' &&
		    b != '\'') {
			i++;
			shown++;
			continue;
		}
		fwrite(run, 1, (size_t)(p + i - run), f);
		c = utf8_next(p + i, len - i, &adv);
		switch (c) {
		case '&': rep = "&amp;"; break;
		case '<': rep = "&lt;"; break;
		case '>': rep = "&gt;"; break;
		case '"': rep = "&quot;"; break;
		case '\'': rep = "&#39;"; break;
		default: break;
		}
		if (rep != NULL)
			puts_(f, rep);
		else if (!cp_visible(c))
			fprintf(f, "<span class=ctl>U+%04" PRIX32 "</span>", c);
		else if (c == 0xfffd)
			puts_(f, "\xef\xbf\xbd"); /* never the invalid bytes themselves */
		else
			fwrite(p + i, 1, adv, f);
		i += adv;
		shown++;
		run = p + i;
	}
	fwrite(run, 1, (size_t)(p + i - run), f);
	if (i < len) {
		size_t more = 0;

		for (; i < len; i += adv) {
			utf8_next(p + i, len - i, &adv);
			more++;
		}
		fprintf(f, "<span class=more>\xe2\x80\xa6 and %zu more characters</span>", more);
	}
}

/* A record string: escaped, cut at limit code points; "-" for none. */
static void text(FILE *f, const char *s, size_t limit)
{
	if (s == NULL) {
		puts_(f, "<span class=none>-</span>");
		return;
	}
	report_html_text(f, s, strlen(s), limit);
}

/* The same inline, isolated from the text around it. */
static void btext(FILE *f, const char *s, size_t limit)
{
	puts_(f, "<bdi>");
	text(f, s, limit);
	puts_(f, "</bdi>");
}

/* Text of ours (no record content) with the few characters escaped that
 * could still appear in paths or messages. */
static void own(FILE *f, const char *s)
{
	report_html_text(f, s, strlen(s), 0);
}

/* A long record string: cut in place, the whole of it (up to CUT_LONG)
 * behind a <details>. */
static void long_text(FILE *f, const char *s)
{
	size_t len = s ? strlen(s) : 0;

	if (s == NULL || len <= CUT_CELL) {
		btext(f, s, CUT_CELL);
		return;
	}
	puts_(f, "<details class=full><summary>");
	btext(f, s, CUT_CELL);
	puts_(f, "</summary><div class=fulltext>");
	btext(f, s, CUT_LONG);
	puts_(f, "</div></details>");
}

static void fmt_us(FILE *f, int64_t us)
{
	char t[UTIL_TIME_LEN];

	if (util_time_format(us, false, t) < 0)
		puts_(f, "?");
	else
		fprintf(f, "%.10s %.8s", t, t + 11);
}

static void fmt_day(char out[static 16], int64_t day)
{
	time_t t = (time_t)(day * 86400);
	struct tm tm;

	if (gmtime_r(&t, &tm) == NULL)
		snprintf(out, 16, "?");
	else
		strftime(out, 16, "%Y-%m-%d", &tm);
}

static void num(FILE *f, uint64_t n)
{
	/* thousands separated by a thin space, readable on any locale */
	char d[32];
	int len = snprintf(d, sizeof(d), "%" PRIu64, n);

	for (int i = 0; i < len; i++) {
		if (i > 0 && (len - i) % 3 == 0)
			puts_(f, "\xe2\x80\xaf");
		fputc(d[i], f);
	}
}

static const char css[] =
	":root{--ok:#0a6b2e;--bad:#b00020;--fail:#8a8a8a;--ink:#1b1b1b;--mute:#5a5a5a;"
	"--line:#d9d9d9;--bg:#fafafa}"
	"*{box-sizing:border-box}"
	"body{margin:0;font:15px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;"
	"color:var(--ink);background:#fff}"
	"main{max-width:76rem;margin:0 auto;padding:1rem}"
	"h1{font-size:1.5rem;margin:.2rem 0}h2{font-size:1.2rem;margin:2rem 0 .5rem;"
	"border-bottom:1px solid var(--line);padding-bottom:.2rem}h3{font-size:1rem;margin:1rem 0 .4rem}"
	".verdict{padding:1rem 1.2rem;border-radius:6px;color:#fff;margin:0 0 1rem}"
	".verdict.ok{background:var(--ok)}.verdict.bad{background:var(--bad)}"
	".verdict.part{background:#8a5a00}"
	".verdict h1{font-size:1.6rem}.verdict p{margin:.3rem 0}"
	".verdict code,.verdict .mono{color:#fff;background:rgba(255,255,255,.15)}"
	".verdict .msg{font-weight:600;font-size:1.05rem;background:rgba(0,0,0,.2);padding:.4rem .6rem;"
	"border-radius:4px}"
	"dl.facts{display:grid;grid-template-columns:max-content 1fr;gap:.1rem 1rem;margin:.5rem 0}"
	"dl.facts dt{font-weight:600}dl.facts dd{margin:0;min-width:0}"
	"code,.mono{font-family:ui-monospace,'DejaVu Sans Mono',Menlo,Consolas,monospace;"
	"font-size:.85em;background:var(--bg);padding:0 .2em;border-radius:3px}"
	".wrap{overflow-wrap:anywhere;word-break:break-word}"
	"dd,p,li,summary{overflow-wrap:anywhere}td,th{overflow-wrap:anywhere;min-width:4.5em}"
	"td.w{min-width:9em}"
	".scroll{overflow-x:auto;max-width:100%}"
	"table{border-collapse:collapse;width:100%;margin:.3rem 0 1rem;font-size:.9rem}"
	"th,td{text-align:left;vertical-align:top;padding:.25rem .5rem;border-bottom:1px solid var(--line)}"
	"th{background:var(--bg);font-weight:600;white-space:nowrap}td.n,th.n{text-align:right;white-space:nowrap}"
	"td.t{white-space:nowrap}td.h{font-family:ui-monospace,'DejaVu Sans Mono',monospace;"
	"font-size:.8rem;word-break:break-all;min-width:9em}"
	".ctl{font-family:ui-monospace,monospace;font-size:.75em;color:#fff;background:#a05a00;"
	"padding:0 .15em;border-radius:2px;unicode-bidi:isolate;direction:ltr}"
	".more{color:var(--mute);font-style:italic}.none{color:var(--mute)}"
	".note{color:var(--mute);font-size:.9rem}"
	".warn{border-left:4px solid var(--bad);padding:.4rem .8rem;background:#fff3f4}"
	"nav{font-size:.9rem;margin:.5rem 0 1rem}nav a{margin-right:.8rem;color:#0b4f9c}"
	"details{margin:.3rem 0}summary{cursor:pointer}"
	"details.full summary{list-style:none}details.full .fulltext{padding:.3rem;background:var(--bg)}"
	".legend span{display:inline-block;margin-right:1rem}"
	".sw{display:inline-block;width:.8em;height:.8em;margin-right:.3em;vertical-align:-.05em}"
	".chart{width:100%;height:auto;max-height:260px;display:block}"
	"section.tenant{border-top:3px solid var(--ink);margin-top:2.5rem}"
	"footer{margin:2rem 0 1rem;color:var(--mute);font-size:.8rem}"
	"@media (max-width:640px){body{font-size:14px}main{padding:.5rem}"
	"dl.facts{grid-template-columns:1fr}dl.facts dd{margin-bottom:.3rem}"
	"table{font-size:.8rem}th,td{padding:.2rem .3rem}.hide-s{display:none}"
	/* the chart's 800-unit drawing is scaled down: keep its labels legible */
	".chart text{font-size:22px}}"
	"@media print{body{font-size:10pt}main{max-width:none;padding:0}nav{display:none}"
	".verdict,.sw,.ctl,rect{-webkit-print-color-adjust:exact;print-color-adjust:exact}"
	"h2{break-after:avoid}tr,dl.facts,.verdict,svg{break-inside:avoid}"
	"thead{display:table-header-group}a{color:inherit;text-decoration:none}"
	".scroll{overflow:visible}}";

static void head(FILE *f, const struct report *r, const struct report_verdict *v)
{
	puts_(f, "<!DOCTYPE html>\n<html lang=en>\n<head>\n<meta charset=utf-8>\n"
		 /* nothing may load: no script, font, image, style or frame from
		  * anywhere; the page's own <style> and data: images only */
		 "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
		 "style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'\">\n"
		 "<meta name=referrer content=no-referrer>\n"
		 "<meta name=viewport content=\"width=device-width, initial-scale=1\">\n"
		 "<meta name=generator content=\"custody audit report\">\n<title>");
	puts_(f, v->outcome == REPORT_VERIFIED || v->outcome == REPORT_PARTLY ? "" : "NOT VERIFIED: ");
	if (r->per_tenant)
		puts_(f, "custody audit report: the whole store");
	else {
		puts_(f, "custody audit report: tenant ");
		text(f, r->all.tenant, 80);
	}
	puts_(f, "</title>\n<style>");
	puts_(f, css);
	puts_(f, "</style>\n</head>\n<body>\n<main>\n");
}

/* The vkey's name and key id (its first two '+' fields). */
static void key_facts(FILE *f, const char *vkey)
{
	const char *p1 = strchr(vkey, '+'), *p2 = p1 ? strchr(p1 + 1, '+') : NULL;

	if (p1 == NULL || p2 == NULL) {
		own(f, vkey);
		return;
	}
	puts_(f, "<bdi>");
	report_html_text(f, vkey, (size_t)(p1 - vkey), 200);
	puts_(f, "</bdi>, key id <code>");
	report_html_text(f, p1 + 1, (size_t)(p2 - p1 - 1), 16);
	puts_(f, "</code>");
}

/* Signature lines of a signed note by another key than the log's own
 * (whose name is the note's origin, its first line): witness
 * cosignatures, C2SP cosignature/v1. With f, writes a <li> per line;
 * returns how many there are. */
static size_t cosignature_lines(FILE *f, const char *note)
{
	const char *p = note ? strstr(note, "\n\n") : NULL, *eol;
	size_t n = 0, olen;

	if (p == NULL)
		return 0;
	eol = strchr(note, '\n');
	olen = (size_t)(eol - note);
	p += 2;
	while (*p) {
		const char *nl = strchr(p, '\n'), *name = p + 4, *sp;
		size_t len = nl ? (size_t)(nl - p) : strlen(p);

		sp = len > 4 ? memchr(name, ' ', len - 4) : NULL;
		if (len > 4 && strncmp(p, "\xe2\x80\x94 ", 4) == 0 && sp != NULL &&
		    !((size_t)(sp - name) == olen && memcmp(name, note, olen) == 0)) {
			n++;
			if (f != NULL) {
				uint8_t raw[128];
				size_t got = 0;

				puts_(f, "<li><bdi>");
				report_html_text(f, name, (size_t)(sp - name), 200);
				puts_(f, "</bdi>");
				if (sodium_base642bin(raw, sizeof(raw), sp + 1, (size_t)(p + len - sp - 1),
						      NULL, &got, NULL,
						      sodium_base64_VARIANT_ORIGINAL) == 0 &&
				    got >= 4)
					fprintf(f, ", key id <code>%02x%02x%02x%02x</code>", raw[0], raw[1],
						raw[2], raw[3]);
				puts_(f, "</li>");
			}
		}
		if (nl == NULL)
			break;
		p = nl + 1;
	}
	return n;
}

static void witnesses(FILE *f, const struct report_verdict *v)
{
	const struct audit_witness_check *c = v->wcheck;
	const char *note = v->st->have_cp ? v->st->cp_note : NULL;
	size_t ncos = cosignature_lines(NULL, note);

	if (v->n_witness > 0 && c != NULL) {
		fprintf(f, "<dt>Witnesses</dt><dd>%u of %zu witness%s cosigned the checkpoint at tree "
			   "size %" PRIu64 " (%u required):<ul>", c->valid, v->n_witness,
			v->n_witness == 1 ? "" : "es", c->size, v->quorum);
		for (size_t i = 0; i < v->n_witness; i++) {
			char t[UTIL_TIME_LEN];

			fprintf(f, "<li><bdi>");
			own(f, v->wkeys[i].name);
			fprintf(f, "</bdi>, key id <code>%02x%02x%02x%02x</code>: ", v->wkeys[i].id[0],
				v->wkeys[i].id[1], v->wkeys[i].id[2], v->wkeys[i].id[3]);
			if (c->w[i].rc == 0 || c->w[i].rc == -ERANGE) {
				if (util_time_format((int64_t)c->w[i].time * 1000000, false, t) < 0)
					snprintf(t, sizeof(t), "?");
				fprintf(f, "%s at %s", c->w[i].rc == 0 ? "cosigned" :
					"<strong>cosigned with a timestamp in the future</strong>", t);
			} else if (c->w[i].rc == -ENOENT) {
				puts_(f, "<strong>no cosignature</strong>");
			} else {
				puts_(f, "<strong>its cosignature does not verify</strong>");
			}
			puts_(f, "</li>");
		}
		puts_(f, "</ul></dd>\n");
	} else if (ncos > 0) {
		fprintf(f, "<dt>Witnesses</dt><dd>%zu cosignature line%s on the checkpoint, not "
			   "checked: give the witnesses' keys with --witness to check them:<ul>", ncos,
			ncos == 1 ? "" : "s");
		cosignature_lines(f, note);
		puts_(f, "</ul></dd>\n");
	}
}

static void banner(FILE *f, const struct report *r, const struct report_verdict *v)
{
	const struct audit_verify_stats *st = v->st;
	static const char *const cls[] = {
		[REPORT_VERIFIED] = "ok", [REPORT_PARTLY] = "part", [REPORT_TAMPERED] = "bad",
		[REPORT_WRONG_KEY] = "bad", [REPORT_INCOMPLETE] = "bad", [REPORT_UNWITNESSED] = "bad",
	};
	static const char *const title[] = {
		[REPORT_VERIFIED] = "Verified", [REPORT_PARTLY] = "Partly verified",
		[REPORT_TAMPERED] = "Verification FAILED", [REPORT_WRONG_KEY] = "Not verified: wrong key",
		[REPORT_INCOMPLETE] = "Verification INCOMPLETE",
		[REPORT_UNWITNESSED] = "Verification FAILED: not witnessed",
	};
	char root[64];

	fprintf(f, "<header class=\"verdict %s\" id=verdict>\n<h1>%s</h1>\n", cls[v->outcome],
		title[v->outcome]);
	switch (v->outcome) {
	case REPORT_VERIFIED:
	case REPORT_PARTLY:
		puts_(f, "<p>");
		if (v->is_db) {
			puts_(f, "Every record of this audit store was checked: ");
			num(f, st->records);
			puts_(f, " records, ");
			num(f, st->checkpoints);
			puts_(f, " signed checkpoints, ");
			num(f, st->tenants);
			puts_(f, " tenant chains.");
		} else {
			puts_(f, "Every record of this export was checked against a signed "
				 "checkpoint: ");
			num(f, st->records);
			puts_(f, " records of tenant ");
			btext(f, r->all.tenant, 100);
			puts_(f, ", each with its inclusion proof, in one unbroken tenant chain.");
		}
		puts_(f, "</p>\n");
		if (v->outcome == REPORT_PARTLY)
			fprintf(f, "<p class=msg>Records 1 to %" PRIu64 " are under a signed checkpoint; "
				   "the %" PRIu64 " records from %" PRIu64 " on are under none yet and "
				   "could have been rewritten by whoever can write the file. Verify again "
				   "after the broker's next checkpoint.</p>\n", st->covered, st->uncovered,
				st->uncovered_from);
		break;
	default:
		puts_(f, "<p class=msg>");
		btext(f, v->message ? v->message : "a record does not match", 0);
		puts_(f, "</p>\n");
		if (v->outcome == REPORT_UNWITNESSED)
			puts_(f, "<p>The records and the broker's signature verify, but the checkpoint "
				 "does not carry the witness cosignatures asked for: nobody outside the "
				 "MSSP's host vouches that this log was not rolled back or forked. Ask the "
				 "MSSP why, and keep the file.</p>\n");
		else if (v->outcome == REPORT_WRONG_KEY)
			puts_(f, "<p>This log was signed by another key than the one given, so nothing "
				 "on this page is checked. Ask the broker's operator for this log's "
				 "verifier key (<code>custody keys</code>).</p>\n");
		else
			fprintf(f, "<p>Do not rely on this trail. Keep the file as evidence and ask "
				   "for a copy you can compare. What this page shows below is only what "
				   "was read before the verifier stopped (%" PRIu64 " records), and none "
				   "of it is proven.</p>\n", r->all.records);
		break;
	}
	puts_(f, "<dl class=facts>\n<dt>File</dt><dd><bdi>");
	own(f, v->source);
	puts_(f, "</bdi></dd>\n<dt>Signer</dt><dd>");
	key_facts(f, v->vkey);
	puts_(f, "</dd>\n");
	if (st->have_cp) {
		sodium_bin2base64(root, sizeof(root), st->cp_root, 32, sodium_base64_VARIANT_ORIGINAL);
		fprintf(f, "<dt>Checkpoint</dt><dd>tree size %" PRIu64 ", root <code class=wrap>%s"
			   "</code>, signed by key id <code>%s</code></dd>\n", st->cp_size, root,
			st->cp_key_id);
	}
	if (st->trusted)
		fprintf(f, "<dt>Your checkpoint</dt><dd>the log matches the checkpoint you kept "
			   "(tree size %" PRIu64 ")</dd>\n", st->trusted_size);
	if (!v->is_db && (st->since_us || st->until_us)) {
		puts_(f, "<dt>Window</dt><dd>the export covers records ");
		if (st->since_us) {
			puts_(f, "from ");
			fmt_us(f, st->since_us);
			puts_(f, " ");
		}
		if (st->until_us) {
			puts_(f, "until ");
			fmt_us(f, st->until_us);
		}
		puts_(f, " UTC</dd>\n");
	}
	if (!v->is_db && st->last_tenant_seq)
		fprintf(f, "<dt>Tenant chain</dt><dd>the tenant's records %" PRIu64 " to %" PRIu64
			   " (<code>tenant_seq</code>); a later export must go on from %" PRIu64
			   "</dd>\n", st->first_tenant_seq, st->last_tenant_seq, st->last_tenant_seq + 1);
	witnesses(f, v);
	puts_(f, "</dl>\n</header>\n");
}

static void period(FILE *f, const struct view *v)
{
	int64_t days;

	puts_(f, "<p>");
	if (v->first_time == NULL) {
		puts_(f, "No records.</p>\n");
		return;
	}
	puts_(f, "From <time>");
	fmt_us(f, v->first_us);
	puts_(f, "</time> to <time>");
	fmt_us(f, v->last_us);
	days = (v->last_us - v->first_us) / US_PER_DAY + 1;
	fprintf(f, "</time> UTC (%" PRId64 " day%s): ", days, days == 1 ? "" : "s");
	num(f, v->records);
	puts_(f, v->records == 1 ? " record, " : " records, ");
	num(f, v->issued);
	puts_(f, v->issued == 1 ? " token issued, " : " tokens issued, ");
	num(f, v->refused);
	puts_(f, " refused");
	if (v->failed) {
		puts_(f, ", ");
		num(f, v->failed);
		puts_(f, " failed");
	}
	puts_(f, ".");
	if (v->bad_records)
		fprintf(f, " %" PRIu64 " records could not be read as audit records and are only "
			   "counted.", v->bad_records);
	puts_(f, "</p>\n");
}

/* Tokens issued and refused per day (per week over long periods), as an
 * SVG bar chart drawn here. */
static void chart(FILE *f, const struct view *v, const char *id)
{
	struct day *b = NULL;
	size_t nb = 0, i, j;
	int64_t d0, d1, step = 1;
	uint64_t max = 1;
	const double W = 800, H = 180, L = 44, B = 24, T = 8;
	char unit[32];
	double bw;
	char d[16];

	if (v->ndays == 0) {
		puts_(f, "<p class=note>No token requests in this period.</p>\n");
		return;
	}
	d0 = v->days[0].day;
	d1 = v->days[v->ndays - 1].day;
	/* at most CHART_DAYS_MAX bars: a week per bar, or more days over years
	 * (a hostile file may span millennia) */
	if (d1 - d0 + 1 > CHART_DAYS_MAX)
		step = d1 - d0 + 1 <= 7 * CHART_DAYS_MAX ? 7 : (d1 - d0) / CHART_DAYS_MAX + 1;
	snprintf(unit, sizeof(unit), step == 1 ? "day" : step == 7 ? "week" : "%" PRId64 " days",
		 step);
	nb = (size_t)((d1 - d0) / step + 1);
	b = calloc(nb, sizeof(*b));
	if (b == NULL) {
		puts_(f, "<p class=note>(chart left out: out of memory)</p>\n");
		return;
	}
	for (i = 0; i < nb; i++)
		b[i].day = d0 + (int64_t)i * step;
	for (j = 0; j < v->ndays; j++) {
		struct day *t = &b[(v->days[j].day - d0) / step];

		t->issued += v->days[j].issued;
		t->refused += v->days[j].refused;
		t->failed += v->days[j].failed;
	}
	for (i = 0; i < nb; i++)
		if (b[i].issued + b[i].refused + b[i].failed > max)
			max = b[i].issued + b[i].refused + b[i].failed;
	bw = (W - L - 4) / (double)nb;
	fprintf(f, "<p class=legend><span><i class=sw style=\"background:var(--ok)\"></i>issued</span>"
		   "<span><i class=sw style=\"background:var(--bad)\"></i>refused</span>"
		   "<span><i class=sw style=\"background:var(--fail)\"></i>failed</span>"
		   "<span class=note>one bar per %s (UTC)</span></p>\n", unit);
	fprintf(f, "<svg class=chart id=\"%s\" viewBox=\"0 0 %.0f %.0f\" role=img "
		   "aria-label=\"tokens issued and refused per %s\" xmlns=\"http://www.w3.org/2000/svg\">\n",
		id, W, H, unit);
	fprintf(f, "<line x1=\"%.0f\" y1=\"%.0f\" x2=\"%.0f\" y2=\"%.0f\" stroke=\"#999\"/>"
		   "<line x1=\"%.0f\" y1=\"%.0f\" x2=\"%.0f\" y2=\"%.0f\" stroke=\"#999\"/>\n",
		L, T, L, H - B, L, H - B, W - 2, H - B);
	fprintf(f, "<text x=\"%.0f\" y=\"%.0f\" font-size=\"11\" text-anchor=\"end\">%" PRIu64
		   "</text><text x=\"%.0f\" y=\"%.0f\" font-size=\"11\" text-anchor=\"end\">0</text>\n",
		L - 4, T + 10, max, L - 4, H - B);
	for (i = 0; i < nb; i++) {
		double x = L + 1 + (double)i * bw, w = bw > 2 ? bw - (bw > 6 ? 1.5 : 0.5) : bw;
		double y = H - B, scale = (H - B - T) / (double)max;
		uint64_t parts[3] = { b[i].issued, b[i].refused, b[i].failed };
		static const char *const fill[3] = { "#0a6b2e", "#b00020", "#8a8a8a" };

		if (w > 48)
			w = 48;
		if (parts[0] + parts[1] + parts[2] == 0)
			continue;
		fmt_day(d, b[i].day);
		fprintf(f, "<g><title>%s%s: %" PRIu64 " issued, %" PRIu64 " refused, %" PRIu64
			   " failed</title>", step == 1 ? "" : "from ", d, parts[0], parts[1],
			parts[2]);
		for (j = 0; j < 3; j++) {
			double hgt = (double)parts[j] * scale;

			if (parts[j] == 0)
				continue;
			if (hgt < 1)
				hgt = 1;
			y -= hgt;
			fprintf(f, "<rect x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" height=\"%.2f\" fill=\"%s\"/>",
				x, y, w, hgt, fill[j]);
		}
		puts_(f, "</g>\n");
	}
	/* x labels: the first day, month starts when there is room, the last */
	{
		double last_x = -100;
		char month[8] = "";

		for (i = 0; i < nb; i++) {
			double x = L + 1 + (double)i * bw;
			bool new_month;

			fmt_day(d, b[i].day);
			new_month = strncmp(d, month, 7) != 0;
			snprintf(month, sizeof(month), "%.7s", d);
			if (!(i == 0 || i == nb - 1 || new_month))
				continue;
			if (i == nb - 1 && x > W - 70)
				x = W - 70;
			if (x - last_x < 70 || (i != nb - 1 && W - x < 140))
				continue;
			fprintf(f, "<text x=\"%.1f\" y=\"%.0f\" font-size=\"11\">%s</text>", x, H - 8, d);
			last_x = x;
		}
	}
	puts_(f, "\n</svg>\n");
	/* the figures as a table, for print and screen readers */
	fprintf(f, "<details><summary>The figures per %s</summary><div class=scroll><table>"
		   "<thead><tr><th>%s<th class=n>issued<th class=n>refused<th class=n>failed</thead>"
		   "<tbody>\n", unit, step == 1 ? "day" : "from");
	for (i = 0; i < nb; i++) {
		if (b[i].issued + b[i].refused + b[i].failed == 0)
			continue;
		fmt_day(d, b[i].day);
		fprintf(f, "<tr><td class=t>%s<td class=n>%" PRIu64 "<td class=n>%" PRIu64
			   "<td class=n>%" PRIu64 "\n", d, b[i].issued, b[i].refused, b[i].failed);
	}
	puts_(f, "</tbody></table></div></details>\n");
	free(b);
}

static int cmp_combo(const void *a, const void *b)
{
	const struct combo *x = a, *y = b;
	uint64_t nx = x->issued + x->refused + x->failed, ny = y->issued + y->refused + y->failed;

	return nx < ny ? 1 : nx > ny ? -1 : 0;
}

static void accesses(FILE *f, struct view *v)
{
	size_t i, shown;

	if (v->ncombos == 0) {
		puts_(f, "<p class=note>No token requests.</p>\n");
		return;
	}
	qsort(v->combos, v->ncombos, sizeof(*v->combos), cmp_combo);
	shown = v->ncombos < COMBOS_SHOWN ? v->ncombos : COMBOS_SHOWN;
	puts_(f, "<div class=scroll><table><thead><tr><th>principal<th>purpose<th>scope"
		 "<th class=n>issued<th class=n>refused<th class=n>failed<th class=hide-s>first"
		 "<th class=hide-s>last<th class=hide-s>programs</thead><tbody>\n");
	for (i = 0; i < shown; i++) {
		struct combo *c = &v->combos[i];

		puts_(f, "<tr><td>");
		text(f, c->principal, 80);
		puts_(f, "<td class=w>");
		long_text(f, c->purpose);
		puts_(f, "<td class=w>");
		text(f, c->scope, CUT_CELL);
		puts_(f, "<td class=n>");
		num(f, c->issued);
		puts_(f, "<td class=n>");
		num(f, c->refused);
		puts_(f, "<td class=n>");
		num(f, c->failed);
		puts_(f, "<td class=\"t hide-s\">");
		fmt_us(f, c->first_us);
		puts_(f, "<td class=\"t hide-s\">");
		fmt_us(f, c->last_us);
		puts_(f, "<td class=\"w hide-s\">");
		for (int k = 0; k < 3 && c->exe[k]; k++) {
			if (k)
				puts_(f, "<br>");
			puts_(f, "<code>");
			text(f, c->exe[k], CUT_CELL);
			puts_(f, "</code>");
		}
		puts_(f, "\n");
	}
	puts_(f, "</tbody></table></div>\n");
	if (v->ncombos > shown)
		fprintf(f, "<p class=note>%zu more combinations of principal, purpose and scope, "
			   "each with fewer requests, are not listed.</p>\n", v->ncombos - shown);
}

static int cmp_refusal(const void *a, const void *b)
{
	const struct refusal *x = a, *y = b;

	return x->n < y->n ? 1 : x->n > y->n ? -1 : 0;
}

static void refusals(FILE *f, struct view *v)
{
	size_t i, shown;

	if (v->nrefusals == 0) {
		puts_(f, "<p class=note>No token request was refused or failed.</p>\n");
		return;
	}
	qsort(v->refusals, v->nrefusals, sizeof(*v->refusals), cmp_refusal);
	shown = v->nrefusals < REFUSALS_SHOWN ? v->nrefusals : REFUSALS_SHOWN;
	puts_(f, "<div class=scroll><table><thead><tr><th>reason<th class=n>requests<th>principals"
		 "<th class=hide-s>first<th class=hide-s>last</thead><tbody>\n");
	for (i = 0; i < shown; i++) {
		struct refusal *r = &v->refusals[i];

		puts_(f, "<tr><td><code>");
		text(f, r->reason, CUT_CELL);
		puts_(f, "</code><td class=n>");
		num(f, r->n);
		puts_(f, "<td>");
		for (int k = 0; k < 3 && r->principal[k]; k++) {
			if (k)
				puts_(f, ", ");
			btext(f, r->principal[k], CUT_CELL);
		}
		puts_(f, "<td class=\"t hide-s\">");
		fmt_us(f, r->first_us);
		puts_(f, "<td class=\"t hide-s\">");
		fmt_us(f, r->last_us);
		puts_(f, "\n");
	}
	puts_(f, "</tbody></table></div>\n");
	if (v->nrefusals > shown)
		fprintf(f, "<p class=note>%zu more reasons are not listed.</p>\n", v->nrefusals - shown);
}

/* What an officer's or admin's action was about, and what it reported. */
static void action_detail(FILE *f, json_t *rec)
{
	static const char *const keys[] = { "grant", "principal", "tenant_name", NULL };
	static const char *const label[] = { "grant", "principal", "tenant name", NULL };
	json_t *revoked = json_object_get(rec, "revoked");
	bool any = false;

	for (size_t i = 0; keys[i]; i++) {
		const char *s = sfield(rec, keys[i]);

		if (s == NULL)
			continue;
		fprintf(f, "%s%s <code>", any ? "; " : "", label[i]);
		text(f, s, CUT_CELL);
		puts_(f, "</code>");
		any = true;
	}
	if (json_is_array(revoked)) {
		size_t i;
		json_t *g;

		json_array_foreach(revoked, i, g) {
			json_t *n = json_object_get(g, "outstanding_tokens");
			const char *until = sfield(g, "valid_until");

			if (i >= 20) {
				fprintf(f, "<br>&hellip; %zu more grants", json_array_size(revoked) - i);
				break;
			}
			puts_(f, any || i ? "<br>revoked <code>" : "revoked <code>");
			text(f, sfield(g, "grant"), 64);
			puts_(f, "</code>: ");
			if (json_is_integer(n) && json_integer_value(n) > 0 && until != NULL) {
				fprintf(f, "<strong>exposure window</strong>: %" JSON_INTEGER_FORMAT
					   " token%s already issued stay%s valid at the provider until ",
					json_integer_value(n), json_integer_value(n) == 1 ? "" : "s",
					json_integer_value(n) == 1 ? "s" : "");
				btext(f, until, 40);
			} else {
				puts_(f, "no issued token was still valid");
			}
		}
	}
	if (json_is_object(json_object_get(rec, "probe")))
		fprintf(f, "%sprobe %s", any ? "; " : "",
			json_is_true(json_object_get(json_object_get(rec, "probe"), "ok")) ? "worked"
											    : "failed");
	if (sfield(rec, "error") != NULL) {
		puts_(f, "; error <code>");
		text(f, sfield(rec, "error"), CUT_CELL);
		puts_(f, "</code>");
	}
}

static void actions(FILE *f, const struct view *v)
{
	size_t i;
	json_t *rec;

	if (json_array_size(v->actions) == 0) {
		puts_(f, "<p class=note>No officer or admin action in this period.</p>\n");
		return;
	}
	puts_(f, "<div class=scroll><table><thead><tr><th>time<th>action<th>by<th>outcome<th>reason"
		 "<th>what it did</thead><tbody>\n");
	json_array_foreach(v->actions, i, rec) {
		const char *ev = sfield(rec, "event"), *who = sfield(rec, "actor");

		int64_t us = 0;

		puts_(f, "<tr><td class=t>");
		if (util_time_parse(sfield(rec, "time"), &us) == 0)
			fmt_us(f, us);
		puts_(f, "<td class=t><code>");
		text(f, strncmp(ev, "admin.", 6) == 0 ? ev + 6 : ev, 80);
		puts_(f, "</code><td>");
		text(f, who ? who : sfield(rec, "principal"), 80);
		puts_(f, "<td>");
		text(f, sfield(rec, "outcome"), 60);
		puts_(f, "<td class=w>");
		long_text(f, sfield(rec, "reason"));
		puts_(f, "<td class=w>");
		action_detail(f, rec);
		puts_(f, "\n");
	}
	puts_(f, "</tbody></table></div>\n");
	if (v->actions_dropped)
		fprintf(f, "<p class=note>%" PRIu64 " more actions are not listed.</p>\n",
			v->actions_dropped);
}

static void others(FILE *f, const struct view *v)
{
	if (v->nothers == 0)
		return;
	puts_(f, "<details><summary>Other records: reads of the trail and the grants, broker "
		 "start and stop, other requests (");
	num(f, v->nothers);
	puts_(f, " kinds)</summary><div class=scroll><table><thead><tr><th>event<th>outcome<th>by"
		 "<th class=n>records<th>last</thead><tbody>\n");
	for (size_t i = 0; i < v->nothers && i < 500; i++) {
		const struct evcount *e = &v->others[i];

		puts_(f, "<tr><td><code>");
		text(f, e->event, 80);
		puts_(f, "</code><td>");
		text(f, e->outcome, 60);
		puts_(f, "<td>");
		text(f, e->who, CUT_CELL);
		puts_(f, "<td class=n>");
		num(f, e->n);
		puts_(f, "<td class=t>");
		fmt_us(f, e->last_us);
		puts_(f, "\n");
	}
	puts_(f, "</tbody></table></div></details>\n");
}

static void token_rows(FILE *f, const struct tokrow *t, size_t n)
{
	puts_(f, "<div class=scroll><table><thead><tr><th>time (UTC)<th>principal<th>purpose"
		 "<th class=hide-s>cache<th>token SHA-256<th><code>uti</code><th>client-request-id"
		 "</thead><tbody>\n");
	for (size_t i = 0; i < n; i++) {
		/* no closing tags: the parser closes them, and 100,000 rows stay small */
		puts_(f, "<tr><td class=t>");
		text(f, t[i].time, 40);
		puts_(f, "<td>");
		text(f, t[i].principal, 80);
		puts_(f, "<td class=w>");
		text(f, t[i].purpose, 80);
		puts_(f, "<td class=hide-s>");
		text(f, t[i].cache, 20);
		puts_(f, "<td class=h>");
		text(f, t[i].sha, 80);
		puts_(f, "<td class=h>");
		text(f, t[i].uti, 80);
		puts_(f, "<td class=h>");
		text(f, t[i].crid, 80);
		puts_(f, "\n");
	}
	puts_(f, "</tbody></table></div>\n");
}

static void tokens(FILE *f, const struct view *v)
{
	size_t i = 0;

	puts_(f, "<p>Each token the broker handed out, with the SHA-256 of the token, its "
		 "<code>uti</code> claim and the <code>client-request-id</code> custody sent to the "
		 "identity provider. To match them against your Microsoft Entra sign-in logs: in the "
		 "Entra admin center open <em>Sign-in logs &rarr; Service principal sign-ins</em>, "
		 "filter on the application (client) id of the grant; a sign-in's <em>Unique token "
		 "identifier</em> is the <code>uti</code> and its <em>Correlation ID</em> is the "
		 "<code>client-request-id</code> (a token served from custody's cache shows the "
		 "sign-in of the request that first fetched it). Hash a token you hold with "
		 "<code>sha256sum</code> to find its row.</p>\n");
	if (v->ntokens == 0) {
		puts_(f, "<p class=note>No token was issued in this period.</p>\n");
		return;
	}
	if (v->ntokens <= TOKENS_INLINE) {
		token_rows(f, v->tokens, v->ntokens);
		return;
	}
	fprintf(f, "<p class=note>%zu tokens, by month (open a month to see its rows; pages of "
		   "%d).</p>\n", v->ntokens, TOKENS_PER_PAGE);
	while (i < v->ntokens) {
		size_t j = i, page;
		const char *m = v->tokens[i].time;

		/* a month: the rows whose time starts with the same "YYYY-MM" */
		while (j < v->ntokens && strncmp(v->tokens[j].time, m, 7) == 0)
			j++;
		puts_(f, "<details class=month><summary><strong>");
		text(f, m, 7);
		puts_(f, "</strong>: ");
		num(f, j - i);
		puts_(f, " tokens</summary>\n");
		if (j - i <= TOKENS_PER_PAGE) {
			token_rows(f, v->tokens + i, j - i);
		} else {
			for (page = i; page < j; page += TOKENS_PER_PAGE) {
				size_t n = j - page < TOKENS_PER_PAGE ? j - page : TOKENS_PER_PAGE;

				fprintf(f, "<details><summary>rows %zu&ndash;%zu, from ", page - i + 1,
					page - i + n);
				text(f, v->tokens[page].time, 40);
				puts_(f, "</summary>\n");
				token_rows(f, v->tokens + page, n);
				puts_(f, "</details>\n");
			}
		}
		puts_(f, "</details>\n");
		i = j;
	}
}

/* The sections of one view; prefix makes the ids unique per tenant. */
static void view_sections(FILE *f, struct view *v, const char *prefix, bool with_tokens)
{
	char id[48];

	fprintf(f, "<h2 id=\"%s-period\">Period</h2>\n", prefix);
	period(f, v);
	fprintf(f, "<h2 id=\"%s-daily\">Tokens issued and refused</h2>\n", prefix);
	snprintf(id, sizeof(id), "%s-chart", prefix);
	chart(f, v, id);
	fprintf(f, "<h2 id=\"%s-access\">Accesses by principal, purpose and scope</h2>\n", prefix);
	accesses(f, v);
	fprintf(f, "<h2 id=\"%s-refusals\">Refusals by reason</h2>\n", prefix);
	refusals(f, v);
	fprintf(f, "<h2 id=\"%s-officer\">Officer and admin actions</h2>\n", prefix);
	puts_(f, "<p class=note>Revocations, suspensions, lockdowns and every other change, with the "
		 "reason the officer gave; a revocation shows its exposure window: how long tokens "
		 "already issued stay valid at the provider.</p>\n");
	actions(f, v);
	others(f, v);
	if (with_tokens) {
		fprintf(f, "<h2 id=\"%s-tokens\">Tokens</h2>\n", prefix);
		tokens(f, v);
	}
}

static void nav(FILE *f, const char *prefix, bool with_tokens)
{
	fprintf(f, "<nav><a href=\"#%s-period\">Period</a><a href=\"#%s-daily\">Per day</a>"
		   "<a href=\"#%s-access\">Accesses</a><a href=\"#%s-refusals\">Refusals</a>"
		   "<a href=\"#%s-officer\">Officer actions</a>", prefix, prefix, prefix, prefix,
		prefix);
	if (with_tokens)
		fprintf(f, "<a href=\"#%s-tokens\">Tokens</a>", prefix);
	puts_(f, "</nav>\n");
}

static void tenants_table(FILE *f, const struct report *r)
{
	puts_(f, "<h2 id=tenants>Tenants</h2>\n");
	if (r->nviews == 0) {
		puts_(f, "<p class=note>No tenant has records.</p>\n");
		return;
	}
	puts_(f, "<div class=scroll><table><thead><tr><th>tenant<th class=n>records"
		 "<th class=n>issued<th class=n>refused<th class=hide-s>first<th class=hide-s>last"
		 "</thead><tbody>\n");
	for (size_t i = 0; i < r->nviews; i++) {
		const struct view *v = r->views[i];

		fprintf(f, "<tr><td><a href=\"#t%zu-period\">", i + 1);
		text(f, v->tenant, CUT_CELL);
		puts_(f, "</a>");
		if (v->tenant_name) {
			puts_(f, " (");
			btext(f, v->tenant_name, 80);
			puts_(f, ")");
		}
		puts_(f, "<td class=n>");
		num(f, v->records);
		puts_(f, "<td class=n>");
		num(f, v->issued);
		puts_(f, "<td class=n>");
		num(f, v->refused + v->failed);
		puts_(f, "<td class=\"t hide-s\">");
		fmt_us(f, v->first_us);
		puts_(f, "<td class=\"t hide-s\">");
		fmt_us(f, v->last_us);
		puts_(f, "\n");
	}
	puts_(f, "</tbody></table></div>\n");
}

int report_write(struct report *r, const struct report_verdict *v, FILE *f)
{
	char now[UTIL_TIME_LEN];

	head(f, r, v);
	banner(f, r, v);
	if (!r->per_tenant) {
		puts_(f, "<h1>Audit report: tenant ");
		btext(f, r->all.tenant, 100);
		if (r->all.tenant_name) {
			puts_(f, " (");
			btext(f, r->all.tenant_name, 100);
			puts_(f, ")");
		}
		puts_(f, "</h1>\n");
		nav(f, "x", true);
		view_sections(f, &r->all, "x", true);
	} else {
		puts_(f, "<h1>Audit report: the whole store, all tenants</h1>\n");
		puts_(f, "<nav><a href=\"#tenants\">Tenants</a><a href=\"#s-period\">Whole store</a>"
			 "</nav>\n");
		tenants_table(f, r);
		puts_(f, "<section id=store>\n<h2 id=s-store>The whole store</h2>\n"
			 "<p class=note>Every record, of every tenant and of none (broker start and "
			 "stop, suspensions, lockdowns); the tokens are listed per tenant below.</p>\n");
		view_sections(f, &r->all, "s", false);
		puts_(f, "</section>\n");
		for (size_t i = 0; i < r->nviews; i++) {
			char prefix[32];

			snprintf(prefix, sizeof(prefix), "t%zu", i + 1);
			fprintf(f, "<section class=tenant id=\"%s\">\n<h2>Tenant ", prefix);
			btext(f, r->views[i]->tenant, 100);
			if (r->views[i]->tenant_name) {
				puts_(f, " (");
				btext(f, r->views[i]->tenant_name, 100);
				puts_(f, ")");
			}
			puts_(f, "</h2>\n");
			nav(f, prefix, true);
			view_sections(f, r->views[i], prefix, true);
			puts_(f, "</section>\n");
		}
	}
	if (util_time_format(util_now_us(), false, now) < 0)
		snprintf(now, sizeof(now), "?");
	fprintf(f, "<footer>Written by <code>custody audit report</code> at %s from ", now);
	btext(f, v->source, 0);
	puts_(f, ". This page runs no script and loads nothing: everything it shows is in this one "
		 "file.</footer>\n</main>\n</body>\n</html>\n");
	return ferror(f) ? -EIO : 0;
}
