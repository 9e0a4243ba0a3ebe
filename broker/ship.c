/* ship.c — the audit trail to the SIEM (DESIGN §11.2): every record and
 * every checkpoint, in seq order, at least once, to each sink in
 * audit.ship: syslog over TLS (RFC 5424 messages, RFC 5425 octet-counted
 * frames; libcurl's CONNECT_ONLY + curl_easy_send give the TLS) or a file
 * of JSON lines.
 *
 * Threads: one shipper thread per sink owns that sink's connection or
 * file, its own connections to the audit store (audit_shipdb) and its
 * cursor there. The event loop never waits for a sink: a sink that is
 * down, slow or full only grows its backlog, which waits in the store.
 * The loop reads each sink's status (shipped_through, last_error) under
 * the sink's mutex.
 *
 * The cursor (last record seq and checkpoint size handed over) advances
 * only after the sink took the bytes (a file: written and fdatasync'd; a
 * TLS socket: accepted by curl_easy_send) and at most once a second. TCP
 * syslog has no acknowledgement, so when a connection breaks everything
 * sent on it in the last SHIP_RESEND_S seconds is sent again: what a dying
 * receiver read but never stored. Receivers drop duplicates by seq.
 */
#include "broker_int.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#define SHIP_BATCH 500
#define SHIP_RESEND_S 10
#define SHIP_IDLE_MS 200
#define SHIP_BACKOFF_MAX_MS 30000
#define SHIP_SEND_STALL_MS 200      /* poll slice while a receiver does not read */
#define SHIP_SD_ID "custody@32473"

struct sent_mark {
	int64_t when_ms;
	uint64_t seq, cp;                  /* the position before this batch */
};

struct sink {
	struct broker *b;
	char *name, *url, *ca_file, *cert_file, *key_file, *path;
	bool syslog;
	pthread_t thread;
	bool started;
	/* shared with the loop under lock */
	pthread_mutex_t lock;
	uint64_t shipped_seq, shipped_cp;
	char last_error[256];
	bool stop;
	/* the thread's own */
	struct audit_shipdb *db;
	CURL *curl;                        /* syslog connection */
	int fd;                            /* file */
	uint64_t pos_seq, pos_cp;          /* sent through (this connection) */
	uint64_t saved_seq, saved_cp;      /* the cursor as stored */
	int64_t saved_ms;
	struct sent_mark marks[64];        /* batches sent in the last seconds */
	size_t nmarks;
	char host[256];
	char *buf;                         /* one batch, framed */
	size_t len, cap;
	uint64_t batch_seq, batch_cp;      /* position after the batch */
	unsigned failures;
};

struct shipper {
	struct sink *s;
	size_t n;
};

static int64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void set_error(struct sink *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void set_error(struct sink *s, const char *fmt, ...)
{
	char msg[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	pthread_mutex_lock(&s->lock);
	/* one log line per new error, not one per retry */
	if (strcmp(msg, s->last_error) != 0)
		broker_log("ship %s: %s; the backlog waits in the audit store", s->name, msg);
	snprintf(s->last_error, sizeof(s->last_error), "%s", msg);
	pthread_mutex_unlock(&s->lock);
}

static bool stopping(struct sink *s)
{
	bool st;

	pthread_mutex_lock(&s->lock);
	st = s->stop;
	pthread_mutex_unlock(&s->lock);
	return st;
}

/* Sleep ms in slices, returning early when stopping. */
static void nap(struct sink *s, int64_t ms)
{
	int64_t end = mono_ms() + ms;

	while (!stopping(s) && mono_ms() < end) {
		struct timespec ts = {0, 50 * 1000000L};

		nanosleep(&ts, NULL);
	}
}

static int buf_put(struct sink *s, const char *p, size_t n)
{
	if (s->len + n + 1 > s->cap) {
		size_t cap = (s->len + n + 1) * 2;
		char *nb = realloc(s->buf, cap);

		if (nb == NULL)
			return -ENOMEM;
		s->buf = nb;
		s->cap = cap;
	}
	memcpy(s->buf + s->len, p, n);
	s->len += n;
	return 0;
}

/* RFC 5424 PARAM-VALUE: '"', '\' and ']' escaped with '\'. */
static int sd_value(struct sink *s, const char *v)
{
	for (; *v; v++) {
		if ((*v == '"' || *v == '\\' || *v == ']') && buf_put(s, "\\", 1) < 0)
			return -ENOMEM;
		if (buf_put(s, v, 1) < 0)
			return -ENOMEM;
	}
	return 0;
}

/* MSGID: 1..32 printable US-ASCII characters. */
static void msgid(const char *event, char out[static 33])
{
	size_t i = 0;

	for (; event != NULL && event[i] && i < 32; i++)
		out[i] = (event[i] > 0x20 && event[i] < 0x7f) ? event[i] : '_';
	if (i == 0)
		out[i++] = '-';
	out[i] = '\0';
}

/* One syslog message (RFC 5424) in an RFC 5425 frame: "LEN MSG". */
static int add_syslog(struct sink *s, const struct audit_ship_item *it)
{
	char head[512], id[33], seq[24], leaf[65];
	char *msg = NULL;
	size_t mlen;
	int n, rc = 0;

	msgid(it->checkpoint ? "checkpoint" : it->event, id);
	/* PRI 110: facility 13 (log audit), severity 6 (informational) */
	n = snprintf(head, sizeof(head), "<110>1 %s %s custody %d %s ",
		     it->time && it->time[0] ? it->time : "-", s->host, (int)getpid(), id);
	if (n < 0 || (size_t)n >= sizeof(head))
		return -EINVAL;
	/* build the message after the frame's length is known: message first */
	{
		size_t mark = s->len;

		if (buf_put(s, head, (size_t)n) < 0)
			return -ENOMEM;
		snprintf(seq, sizeof(seq), "%" PRIu64, it->seq);
		rc = buf_put(s, "[" SHIP_SD_ID " seq=\"", strlen("[" SHIP_SD_ID " seq=\""));
		if (rc == 0)
			rc = buf_put(s, seq, strlen(seq));
		if (rc == 0 && !it->checkpoint) {
			util_hex(it->leaf, 32, leaf);
			rc = buf_put(s, "\" leaf=\"", 8);
			if (rc == 0)
				rc = buf_put(s, leaf, 64);
			if (rc == 0 && it->tenant != NULL) {
				rc = buf_put(s, "\" tenant=\"", 10);
				if (rc == 0)
					rc = sd_value(s, it->tenant);
			}
		}
		if (rc == 0)
			rc = buf_put(s, "\"] ", 3);
		if (rc == 0)
			rc = buf_put(s, it->body, it->len);
		if (rc < 0)
			return rc;
		mlen = s->len - mark;
		msg = malloc(mlen);
		if (msg == NULL)
			return -ENOMEM;
		memcpy(msg, s->buf + mark, mlen);
		s->len = mark;
		n = snprintf(head, sizeof(head), "%zu ", mlen);
		rc = buf_put(s, head, (size_t)n);
		if (rc == 0)
			rc = buf_put(s, msg, mlen);
		free(msg);
	}
	return rc;
}

/* One JSON line: {"seq","leaf","body"} or {"checkpoint"}. */
static int add_file(struct sink *s, const struct audit_ship_item *it)
{
	char leaf[65];
	json_t *o;
	char *line;
	int rc;

	if (it->checkpoint) {
		o = json_pack("{s:s%}", "checkpoint", it->body, it->len);
	} else {
		util_hex(it->leaf, 32, leaf);
		o = json_pack("{s:I,s:s,s:s%}", "seq", (json_int_t)it->seq, "leaf", leaf, "body",
			      it->body, it->len);
	}
	if (o == NULL)
		return -EINVAL;
	line = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(o);
	if (line == NULL)
		return -ENOMEM;
	rc = buf_put(s, line, strlen(line));
	if (rc == 0)
		rc = buf_put(s, "\n", 1);
	free(line);
	return rc;
}

static int add_item(void *ctx, const struct audit_ship_item *it)
{
	struct sink *s = ctx;
	int rc = s->syslog ? add_syslog(s, it) : add_file(s, it);

	if (rc < 0)
		return rc;
	if (it->checkpoint)
		s->batch_cp = it->seq;
	else
		s->batch_seq = it->seq;
	return 0;
}

/* ---- syslog over TLS -------------------------------------------------------- */

static void ship_conn_close(struct sink *s)
{
	if (s->curl != NULL) {
		curl_easy_cleanup(s->curl);
		s->curl = NULL;
	}
	s->nmarks = 0;
}

static int ship_conn_open(struct sink *s)
{
	char url[600];
	CURLcode cc;

	snprintf(url, sizeof(url), "https://%s", s->url + strlen("tls://"));
	s->curl = curl_easy_init();
	if (s->curl == NULL)
		return -ENOMEM;
	curl_easy_setopt(s->curl, CURLOPT_URL, url);
	curl_easy_setopt(s->curl, CURLOPT_CONNECT_ONLY, 1L);
	curl_easy_setopt(s->curl, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(s->curl, CURLOPT_CONNECTTIMEOUT_MS, 3000L);
	curl_easy_setopt(s->curl, CURLOPT_PROTOCOLS_STR, "https");
	if (s->ca_file != NULL)
		curl_easy_setopt(s->curl, CURLOPT_CAINFO, s->ca_file);
	if (s->cert_file != NULL) {
		curl_easy_setopt(s->curl, CURLOPT_SSLCERT, s->cert_file);
		curl_easy_setopt(s->curl, CURLOPT_SSLKEY, s->key_file);
	}
	cc = curl_easy_perform(s->curl);
	if (cc != CURLE_OK) {
		set_error(s, "cannot connect to %s: %s", s->url, curl_easy_strerror(cc));
		ship_conn_close(s);
		return -ECONNREFUSED;
	}
	broker_log("ship %s: connected, sending from seq %" PRIu64, s->name, s->pos_seq + 1);
	return 0;
}

/* Has the receiver closed (or sent something we never expect)? */
static bool ship_conn_broken(struct sink *s)
{
	curl_socket_t fd = CURL_SOCKET_BAD;
	struct pollfd p;
	char c;
	size_t got = 0;

	if (curl_easy_getinfo(s->curl, CURLINFO_ACTIVESOCKET, &fd) != CURLE_OK ||
	    fd == CURL_SOCKET_BAD)
		return true;
	p.fd = fd;
	p.events = POLLIN;
	p.revents = 0;
	if (poll(&p, 1, 0) <= 0)
		return false;
	if (p.revents & (POLLHUP | POLLERR))
		return true;
	return curl_easy_recv(s->curl, &c, 1, &got) != CURLE_AGAIN;
}

/* Send the batch, waiting for a slow receiver in slices (stop wins). */
static int ship_conn_send(struct sink *s)
{
	size_t off = 0;
	curl_socket_t fd = CURL_SOCKET_BAD;

	curl_easy_getinfo(s->curl, CURLINFO_ACTIVESOCKET, &fd);
	while (off < s->len) {
		size_t sent = 0;
		CURLcode cc = curl_easy_send(s->curl, s->buf + off, s->len - off, &sent);

		if (cc == CURLE_AGAIN) {
			struct pollfd p = {.fd = fd, .events = POLLOUT};

			if (stopping(s))
				return -ECANCELED;
			poll(&p, 1, SHIP_SEND_STALL_MS);
			continue;
		}
		if (cc != CURLE_OK) {
			set_error(s, "connection to %s broke: %s", s->url, curl_easy_strerror(cc));
			return -EPIPE;
		}
		off += sent;
	}
	return 0;
}

/* After a break: go back to what was sent in the last SHIP_RESEND_S s. */
static void rewind_recent(struct sink *s)
{
	int64_t cut = mono_ms() - SHIP_RESEND_S * 1000;

	for (size_t i = 0; i < s->nmarks; i++)
		if (s->marks[i].when_ms >= cut) {
			if (s->marks[i].seq < s->pos_seq ||
			    (s->marks[i].seq == s->pos_seq && s->marks[i].cp < s->pos_cp)) {
				s->pos_seq = s->marks[i].seq;
				s->pos_cp = s->marks[i].cp;
			}
			break;
		}
	s->nmarks = 0;
	/* the stored cursor goes back too, so a restart sends them again */
	if (s->pos_seq < s->saved_seq || s->pos_cp < s->saved_cp) {
		if (audit_shipdb_advance(s->db, s->pos_seq, s->pos_cp) == 0) {
			s->saved_seq = s->pos_seq;
			s->saved_cp = s->pos_cp;
		}
	}
}

static void mark_sent(struct sink *s, uint64_t seq, uint64_t cp)
{
	int64_t cut = mono_ms() - SHIP_RESEND_S * 1000;
	size_t keep = 0;

	/* drop marks older than the window (keep the newest old one: it is
	 * where a rewind has to start) */
	while (keep + 1 < s->nmarks && s->marks[keep + 1].when_ms < cut)
		keep++;
	if (keep > 0) {
		memmove(s->marks, s->marks + keep, (s->nmarks - keep) * sizeof(s->marks[0]));
		s->nmarks -= keep;
	}
	if (s->nmarks == sizeof(s->marks) / sizeof(s->marks[0])) {
		memmove(s->marks, s->marks + 1, (s->nmarks - 1) * sizeof(s->marks[0]));
		s->nmarks--;
	}
	s->marks[s->nmarks].when_ms = mono_ms();
	s->marks[s->nmarks].seq = seq;
	s->marks[s->nmarks].cp = cp;
	s->nmarks++;
}

/* ---- file ------------------------------------------------------------------ */

static int file_write(struct sink *s)
{
	off_t before;
	size_t off = 0;

	if (s->fd < 0) {
		s->fd = open(s->path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0640);
		if (s->fd < 0) {
			set_error(s, "cannot open %s: %s", s->path, strerror(errno));
			return -errno;
		}
	}
	before = lseek(s->fd, 0, SEEK_END);
	while (off < s->len) {
		ssize_t w = write(s->fd, s->buf + off, s->len - off);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0) {
			int e = errno;

			/* no half line left behind for the next attempt */
			if (before >= 0 && ftruncate(s->fd, before) < 0) {
				/* the next line still starts on a line of its own */
			}
			set_error(s, "cannot write %s: %s", s->path, strerror(e));
			close(s->fd);
			s->fd = -1;
			return -e;
		}
		off += (size_t)w;
	}
	if (fdatasync(s->fd) < 0) {
		int e = errno;

		set_error(s, "cannot sync %s: %s", s->path, strerror(e));
		close(s->fd);
		s->fd = -1;
		return -e;
	}
	return 0;
}

/* ---- the thread ------------------------------------------------------------- */

static void publish(struct sink *s, bool ok)
{
	pthread_mutex_lock(&s->lock);
	s->shipped_seq = s->saved_seq;
	s->shipped_cp = s->saved_cp;
	if (ok && s->last_error[0] != '\0') {
		broker_log("ship %s: sending again (through seq %" PRIu64 ")", s->name, s->pos_seq);
		s->last_error[0] = '\0';
	}
	pthread_mutex_unlock(&s->lock);
}

static void save_cursor(struct sink *s, bool force)
{
	int64_t now = mono_ms();

	if (s->pos_seq == s->saved_seq && s->pos_cp == s->saved_cp)
		return;
	if (!force && now - s->saved_ms < 1000)
		return;
	if (audit_shipdb_advance(s->db, s->pos_seq, s->pos_cp) == 0) {
		s->saved_seq = s->pos_seq;
		s->saved_cp = s->pos_cp;
		s->saved_ms = now;
	}
}

static void backoff(struct sink *s)
{
	int64_t ms = (int64_t)500 << (s->failures < 7 ? s->failures : 7);

	s->failures++;
	nap(s, ms < SHIP_BACKOFF_MAX_MS ? ms : SHIP_BACKOFF_MAX_MS);
}

static void *sink_main(void *arg)
{
	struct sink *s = arg;
	struct audit *a = s->b->audit;

	pthread_setname_np(pthread_self(), "ship");
	if (audit_shipdb_cursor(s->db, &s->pos_seq, &s->pos_cp) < 0)
		set_error(s, "cannot read its cursor; sending from the start");
	s->saved_seq = s->pos_seq;
	s->saved_cp = s->pos_cp;
	publish(s, false);
	while (!stopping(s)) {
		int rc;

		if (s->syslog && s->curl == NULL && ship_conn_open(s) < 0) {
			backoff(s);
			continue;
		}
		if (s->syslog && ship_conn_broken(s)) {
			set_error(s, "%s closed the connection", s->url);
			rewind_recent(s);
			ship_conn_close(s);
			publish(s, false);
			backoff(s);
			continue;
		}
		if (audit_size(a) <= s->pos_seq && audit_checkpoint_size(a) <= s->pos_cp) {
			save_cursor(s, true);
			publish(s, true);
			nap(s, SHIP_IDLE_MS);
			continue;
		}
		s->len = 0;
		s->batch_seq = s->pos_seq;
		s->batch_cp = s->pos_cp;
		rc = audit_shipdb_read(s->db, s->pos_seq, s->pos_cp, SHIP_BATCH, add_item, s);
		if (rc < 0) {
			set_error(s, "cannot read the audit store: %s", strerror(-rc));
			backoff(s);
			continue;
		}
		if (s->len == 0) {
			/* nothing committed beyond the cursor yet */
			nap(s, SHIP_IDLE_MS);
			continue;
		}
		rc = s->syslog ? ship_conn_send(s) : file_write(s);
		if (rc == -ECANCELED)
			break;
		if (rc < 0) {
			if (s->syslog) {
				rewind_recent(s);
				ship_conn_close(s);
			}
			publish(s, false);
			backoff(s);
			continue;
		}
		if (s->syslog)
			mark_sent(s, s->pos_seq, s->pos_cp);
		s->pos_seq = s->batch_seq;
		s->pos_cp = s->batch_cp;
		s->failures = 0;
		save_cursor(s, false);
		publish(s, true);
	}
	save_cursor(s, true);
	publish(s, false);
	return NULL;
}

/* ---- public ------------------------------------------------------------------ */

static void sink_free(struct sink *s)
{
	ship_conn_close(s);
	if (s->fd >= 0)
		close(s->fd);
	audit_shipdb_close(s->db);
	free(s->name);
	free(s->url);
	free(s->ca_file);
	free(s->cert_file);
	free(s->key_file);
	free(s->path);
	free(s->buf);
	pthread_mutex_destroy(&s->lock);
}

static char *dup_or_null(const char *s)
{
	return s ? strdup(s) : NULL;
}

int shipper_start(struct broker *b, struct shipper **out)
{
	const struct broker_config *c = b->cfg;
	struct shipper *sh;
	struct cerr err = {{0}};
	char host[256] = "-";

	*out = NULL;
	if (c->n_ship == 0)
		return 0;
	sh = calloc(1, sizeof(*sh));
	if (sh == NULL || (sh->s = calloc(c->n_ship, sizeof(*sh->s))) == NULL) {
		free(sh);
		return -ENOMEM;
	}
	if (gethostname(host, sizeof(host) - 1) < 0 || host[0] == '\0')
		snprintf(host, sizeof(host), "-");
	for (char *p = host; *p; p++)
		if (*p <= 0x20 || *p >= 0x7f)
			*p = '_';
	for (size_t i = 0; i < c->n_ship; i++) {
		struct sink *s = &sh->s[i];
		const struct broker_ship_config *k = &c->ship[i];

		s->b = b;
		s->fd = -1;
		s->syslog = k->syslog;
		pthread_mutex_init(&s->lock, NULL);
		snprintf(s->host, sizeof(s->host), "%s", host);
		s->name = strdup(k->name);
		s->url = dup_or_null(k->url);
		s->ca_file = dup_or_null(k->ca_file);
		s->cert_file = dup_or_null(k->cert_file);
		s->key_file = dup_or_null(k->key_file);
		s->path = dup_or_null(k->path);
		sh->n = i + 1;
		if (s->name == NULL || audit_shipdb_open(b->audit, s->name, &s->db, &err) < 0) {
			broker_log("ship %s: %s", k->name, err.msg[0] ? err.msg : "out of memory");
			shipper_stop(sh);
			return -EIO;
		}
	}
	for (size_t i = 0; i < sh->n; i++) {
		if (pthread_create(&sh->s[i].thread, NULL, sink_main, &sh->s[i]) != 0) {
			shipper_stop(sh);
			return -EAGAIN;
		}
		sh->s[i].started = true;
	}
	*out = sh;
	return 0;
}

void shipper_stop(struct shipper *sh)
{
	if (sh == NULL)
		return;
	for (size_t i = 0; i < sh->n; i++) {
		pthread_mutex_lock(&sh->s[i].lock);
		sh->s[i].stop = true;
		pthread_mutex_unlock(&sh->s[i].lock);
	}
	for (size_t i = 0; i < sh->n; i++) {
		if (sh->s[i].started)
			pthread_join(sh->s[i].thread, NULL);
		sink_free(&sh->s[i]);
	}
	free(sh->s);
	free(sh);
}

json_t *shipper_status(struct shipper *sh, uint64_t audit_size_now)
{
	json_t *arr = json_array();

	for (size_t i = 0; sh != NULL && arr != NULL && i < sh->n; i++) {
		struct sink *s = &sh->s[i];
		uint64_t seq, cp;
		char err[256];

		pthread_mutex_lock(&s->lock);
		seq = s->shipped_seq;
		cp = s->shipped_cp;
		snprintf(err, sizeof(err), "%s", s->last_error);
		pthread_mutex_unlock(&s->lock);
		json_array_append_new(arr, json_pack("{s:s,s:s,s:I,s:I,s:I,s:s?}", "name", s->name,
						     "type", s->syslog ? "syslog" : "file",
						     "shipped_through", (json_int_t)seq,
						     "shipped_checkpoint", (json_int_t)cp, "backlog",
						     (json_int_t)(audit_size_now > seq
								  ? audit_size_now - seq : 0),
						     "last_error", err[0] ? err : NULL));
	}
	return arr;
}
