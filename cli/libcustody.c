/* libcustody.c — the client side of custodyd's NDJSON sockets. */
#include "libcustody.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

struct custody_client {
	int fd;
	int64_t next_id;
	char *buf;       /* received bytes not yet consumed; wiped before free */
	size_t len;
	size_t cap;
};

static int set_err(struct custody_error *e, int rc, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int set_err(struct custody_error *e, int rc, const char *fmt, ...)
{
	va_list ap;

	if (e == NULL)
		return rc;
	memset(e, 0, sizeof(*e));
	va_start(ap, fmt);
	vsnprintf(e->message, sizeof(e->message), fmt, ap);
	va_end(ap);
	return rc;
}

static int64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Milliseconds left until deadline (-1: none) for poll(). */
static int time_left(int64_t deadline)
{
	int64_t left;

	if (deadline < 0)
		return -1;
	left = deadline - mono_ms();
	if (left <= 0)
		return 0;
	return left > INT_MAX ? INT_MAX : (int)left;
}

const char *custody_strerror(int rc)
{
	switch (rc) {
	case 0: return "success";
	case -EREMOTEIO: return "the broker refused the request";
	case -ENOENT: return "broker not reachable (no socket)";
	case -ECONNREFUSED: return "broker not reachable (nobody listens on the socket)";
	case -EACCES: return "broker not reachable (no permission on the socket)";
	case -ETIMEDOUT: return "timed out waiting for the broker";
	case -ECONNRESET: return "the broker closed the connection";
	case -EPROTO: return "the broker's reply was not valid";
	case -EMSGSIZE: return "message too large";
	case -EINVAL: return "invalid argument";
	case -ENOMEM: return "out of memory";
	case -ENAMETOOLONG: return "socket path too long";
	default: return "unexpected error";
	}
}

int custody_connect(const char *path, struct custody_client **out, struct custody_error *err)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct custody_client *c = NULL;
	int fd = -1, rc;

	if (out == NULL)
		return set_err(err, -EINVAL, "custody_connect: out is NULL");
	if (path == NULL || *path == '\0')
		path = getenv("CUSTODY_SOCKET");
	if (path == NULL || *path == '\0')
		path = CUSTODY_DEFAULT_SOCKET;
	if (strlen(path) >= sizeof(sa.sun_path))
		return set_err(err, -ENAMETOOLONG, "socket path %s is too long", path);
	memcpy(sa.sun_path, path, strlen(path) + 1);

	c = calloc(1, sizeof(*c));
	if (c == NULL)
		return set_err(err, -ENOMEM, "out of memory");
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		rc = -errno;
		set_err(err, rc, "socket: %s", strerror(errno));
		goto out;
	}
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		rc = -errno;
		if (rc == -EPERM)
			rc = -EACCES;
		set_err(err, rc, "cannot connect to %s: %s", path, strerror(-rc));
		goto out;
	}
	c->fd = fd;
	c->next_id = 1;
	fd = -1;
	*out = c;
	c = NULL;
	rc = 0;
out:
	if (fd >= 0)
		close(fd);
	free(c);
	return rc;
}

void custody_close(struct custody_client *c)
{
	if (c == NULL)
		return;
	if (c->fd >= 0)
		close(c->fd);
	if (c->buf != NULL) {
		sodium_memzero(c->buf, c->cap);
		free(c->buf);
	}
	free(c);
}

static void json_wipe_strings(json_t *j)
{
	const char *key;
	json_t *v;
	size_t i;

	if (json_is_string(j)) {
		/* jansson owns the bytes; overwrite them in place before free. */
		sodium_memzero((char *)json_string_value(j), json_string_length(j));
	} else if (json_is_object(j)) {
		json_object_foreach(j, key, v)
			json_wipe_strings(v);
	} else if (json_is_array(j)) {
		json_array_foreach(j, i, v)
			json_wipe_strings(v);
	}
}

void custody_json_wipe(json_t *j)
{
	if (j == NULL)
		return;
	json_wipe_strings(j);
	json_decref(j);
}

/* Wait until the socket is ready for events (POLLIN/POLLOUT) or the
 * deadline passes; a signal does not end the wait. what completes
 * "timed out ..." in the error. */
static int wait_fd(struct custody_client *c, short events, int64_t deadline, const char *what,
		   struct custody_error *err)
{
	struct pollfd pfd = { .fd = c->fd, .events = events };
	int pr;

	do
		pr = poll(&pfd, 1, time_left(deadline));
	while (pr < 0 && errno == EINTR);
	if (pr < 0)
		return set_err(err, -errno, "poll: %s", strerror(errno));
	if (pr == 0)
		return set_err(err, -ETIMEDOUT, "timed out %s", what);
	return 0;
}

static int send_all(struct custody_client *c, const char *p, size_t n, int64_t deadline,
		    struct custody_error *err)
{
	ssize_t w;
	int rc;

	while (n > 0) {
		rc = wait_fd(c, POLLOUT, deadline, "sending to the broker", err);
		if (rc < 0)
			return rc;
		w = send(c->fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (w < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (w < 0 && (errno == EPIPE || errno == ECONNRESET))
			return set_err(err, -ECONNRESET, "the broker closed the connection");
		if (w < 0)
			return set_err(err, -errno, "send: %s", strerror(errno));
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* Grow the buffer without leaving copies of old bytes behind (realloc may
 * move them and free the old block unwiped). */
static int buf_reserve(struct custody_client *c, size_t want)
{
	size_t cap;
	char *nb;

	if (c->cap >= want)
		return 0;
	cap = c->cap ? c->cap : 4096;
	while (cap < want)
		cap *= 2;
	nb = malloc(cap);
	if (nb == NULL)
		return -ENOMEM;
	if (c->buf != NULL) {
		memcpy(nb, c->buf, c->len);
		sodium_memzero(c->buf, c->cap);
		free(c->buf);
	}
	c->buf = nb;
	c->cap = cap;
	return 0;
}

/* Take one complete line out of the buffer, reading more as needed.
 * *line is malloc'd, NUL-terminated, without the newline; free it with
 * line_free. */
static int read_line(struct custody_client *c, int64_t deadline, char **line, size_t *line_len,
		     struct custody_error *err)
{
	size_t scanned = 0;
	char *nl, *l;
	ssize_t r;
	int rc;

	for (;;) {
		nl = c->len > scanned ? memchr(c->buf + scanned, '\n', c->len - scanned) : NULL;
		if (nl != NULL)
			break;
		scanned = c->len;
		if (c->len > CUSTODY_MAX_REPLY)
			return set_err(err, -EMSGSIZE, "reply from the broker exceeds %u bytes",
				       CUSTODY_MAX_REPLY);
		if (buf_reserve(c, c->len + 65536) < 0)
			return set_err(err, -ENOMEM, "out of memory");
		rc = wait_fd(c, POLLIN, deadline, "waiting for the broker's reply", err);
		if (rc < 0)
			return rc;
		r = recv(c->fd, c->buf + c->len, c->cap - c->len, MSG_DONTWAIT);
		if (r < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (r < 0 && errno == ECONNRESET)
			r = 0;
		if (r < 0)
			return set_err(err, -errno, "recv: %s", strerror(errno));
		if (r == 0)
			return set_err(err, -ECONNRESET, "the broker closed the connection");
		c->len += (size_t)r;
	}
	*line_len = (size_t)(nl - c->buf);
	if (*line_len > CUSTODY_MAX_REPLY)
		return set_err(err, -EMSGSIZE, "reply from the broker exceeds %u bytes",
			       CUSTODY_MAX_REPLY);
	l = malloc(*line_len + 1);
	if (l == NULL)
		return set_err(err, -ENOMEM, "out of memory");
	memcpy(l, c->buf, *line_len);
	l[*line_len] = '\0';
	/* Drop the line (and its newline) and wipe the bytes that moved down. */
	memmove(c->buf, nl + 1, c->len - *line_len - 1);
	c->len -= *line_len + 1;
	sodium_memzero(c->buf + c->len, *line_len + 1);
	*line = l;
	return 0;
}

static void line_free(char *line, size_t len)
{
	if (line == NULL)
		return;
	sodium_memzero(line, len);
	free(line);
}

static void copy_str(char *dst, size_t n, json_t *v)
{
	const char *s = json_string_value(v);

	snprintf(dst, n, "%s", s ? s : "");
}

static void fill_remote_error(struct custody_error *e, json_t *reply)
{
	json_t *codes, *v;
	size_t i;

	if (e == NULL)
		return;
	memset(e, 0, sizeof(*e));
	copy_str(e->code, sizeof(e->code), json_object_get(reply, "error"));
	if (e->code[0] == '\0')
		snprintf(e->code, sizeof(e->code), "internal");
	copy_str(e->message, sizeof(e->message), json_object_get(reply, "message"));
	if (e->message[0] == '\0')
		snprintf(e->message, sizeof(e->message), "the broker refused the request (%s)",
			 e->code);
	v = json_object_get(reply, "retry_after");
	if (json_is_integer(v) && json_integer_value(v) > 0 && json_integer_value(v) < INT_MAX)
		e->retry_after = (int)json_integer_value(v);
	copy_str(e->upstream_error, sizeof(e->upstream_error),
		 json_object_get(reply, "upstream_error"));
	codes = json_object_get(reply, "upstream_codes");
	json_array_foreach(codes, i, v) {
		if (e->n_upstream_codes == CUSTODY_MAX_UPSTREAM_CODES)
			break;
		if (json_is_integer(v))
			e->upstream_codes[e->n_upstream_codes++] = (long)json_integer_value(v);
	}
	v = json_object_get(reply, "audit_seq");
	if (json_is_integer(v) && json_integer_value(v) > 0)
		e->audit_seq = (uint64_t)json_integer_value(v);
}

int custody_call(struct custody_client *c, json_t *request, int timeout_ms, json_t **reply,
		 struct custody_error *err)
{
	int64_t deadline = timeout_ms < 0 ? -1 : mono_ms() + timeout_ms;
	json_t *r = NULL, *ok, *rid;
	char *text = NULL, *line = NULL;
	size_t text_len = 0, line_len = 0;
	json_int_t id;
	json_error_t jerr;
	int rc;

	if (c == NULL || reply == NULL || !json_is_object(request) ||
	    !json_is_string(json_object_get(request, "op")))
		return set_err(err, -EINVAL, "custody_call: request must be an object with \"op\"");
	if (c->fd < 0)
		return set_err(err, -ECONNRESET, "the connection to the broker is closed");
	id = c->next_id++;
	if (json_object_set_new(request, "v", json_integer(1)) < 0 ||
	    json_object_set_new(request, "id", json_integer(id)) < 0)
		return set_err(err, -ENOMEM, "out of memory");
	text = json_dumps(request, JSON_COMPACT);
	if (text == NULL)
		return set_err(err, -ENOMEM, "out of memory");
	text_len = strlen(text);
	if (text_len + 1 > CUSTODY_MAX_REQUEST) {
		rc = set_err(err, -EMSGSIZE, "request is %zu bytes, more than the %u allowed",
			     text_len + 1, CUSTODY_MAX_REQUEST);
		goto out;
	}
	text[text_len] = '\n';   /* json_dumps' NUL becomes the line end */
	rc = send_all(c, text, text_len + 1, deadline, err);
	if (rc < 0)
		goto out;

	for (;;) {
		rc = read_line(c, deadline, &line, &line_len, err);
		if (rc < 0)
			goto out;
		r = json_loadb(line, line_len, JSON_REJECT_DUPLICATES, &jerr);
		line_free(line, line_len);
		line = NULL;
		if (!json_is_object(r)) {
			rc = set_err(err, -EPROTO, "the broker's reply is not a JSON object");
			goto out;
		}
		rid = json_object_get(r, "id");
		/* A reply to a request we gave up on earlier: skip it. A null id
		 * is the broker saying it could not read our line at all. */
		if (json_is_integer(rid) && json_integer_value(rid) == id)
			break;
		if (json_is_null(rid) || rid == NULL) {
			ok = json_object_get(r, "ok");
			if (json_is_false(ok))
				break;
		}
		custody_json_wipe(r);
		r = NULL;
	}
	ok = json_object_get(r, "ok");
	if (json_is_false(ok)) {
		fill_remote_error(err, r);
		rc = -EREMOTEIO;
		goto out;
	}
	if (!json_is_true(ok)) {
		rc = set_err(err, -EPROTO, "the broker's reply has no \"ok\"");
		goto out;
	}
	*reply = r;
	r = NULL;
	rc = 0;
out:
	if (rc == -ETIMEDOUT || rc == -EPROTO || rc == -EMSGSIZE || rc == -ECONNRESET) {
		/* The stream may be mid-line: nothing after this can be framed. */
		if (rc != -ETIMEDOUT) {
			close(c->fd);
			c->fd = -1;
		}
	}
	json_object_del(request, "id");
	json_object_del(request, "v");
	custody_json_wipe(r);
	line_free(line, line_len);
	free(text);
	return rc;
}

void custody_token_free(struct custody_token *t)
{
	if (t == NULL)
		return;
	if (t->access_token != NULL) {
		sodium_memzero(t->access_token, t->token_len);
		sodium_free(t->access_token);
	}
	sodium_memzero(t, sizeof(*t));
	free(t);
}

int custody_token_request(struct custody_client *c, const struct custody_token_request *r,
			  int timeout_ms, struct custody_token **out, struct custody_error *err)
{
	struct custody_token *t = NULL;
	json_t *req = NULL, *reply = NULL, *v;
	const char *tok;
	int rc;

	if (sodium_init() < 0)
		return set_err(err, -ENOMEM, "libsodium failed to initialise");
	if (r == NULL || r->tenant == NULL || *r->tenant == '\0' || out == NULL)
		return set_err(err, -EINVAL, "a tenant is required");
	if (r->min_ttl < 0)
		return set_err(err, -EINVAL, "min_ttl must not be negative");
	req = json_pack("{s:s, s:s}", "op", "token", "tenant", r->tenant);
	if (req == NULL)
		return set_err(err, -EINVAL, "tenant is not valid UTF-8");
	if ((r->scope && json_object_set_new(req, "scope", json_string(r->scope)) < 0) ||
	    (r->min_ttl > 0 && json_object_set_new(req, "min_ttl", json_integer(r->min_ttl)) < 0) ||
	    (r->purpose && json_object_set_new(req, "purpose", json_string(r->purpose)) < 0)) {
		rc = set_err(err, -EINVAL, "scope or purpose is not valid UTF-8");
		goto out;
	}
	rc = custody_call(c, req, timeout_ms, &reply, err);
	if (rc < 0)
		goto out;
	tok = json_string_value(json_object_get(reply, "access_token"));
	if (tok == NULL || *tok == '\0') {
		rc = set_err(err, -EPROTO, "the broker's reply holds no access_token");
		goto out;
	}
	t = calloc(1, sizeof(*t));
	if (t == NULL) {
		rc = set_err(err, -ENOMEM, "out of memory");
		goto out;
	}
	t->token_len = json_string_length(json_object_get(reply, "access_token"));
	t->access_token = sodium_malloc(t->token_len + 1);
	if (t->access_token == NULL) {
		rc = set_err(err, -ENOMEM, "out of memory");
		goto out;
	}
	memcpy(t->access_token, tok, t->token_len + 1);
	copy_str(t->token_type, sizeof(t->token_type), json_object_get(reply, "token_type"));
	copy_str(t->expires_at, sizeof(t->expires_at), json_object_get(reply, "expires_at"));
	copy_str(t->tenant, sizeof(t->tenant), json_object_get(reply, "tenant"));
	copy_str(t->scope, sizeof(t->scope), json_object_get(reply, "scope"));
	copy_str(t->grant, sizeof(t->grant), json_object_get(reply, "grant"));
	copy_str(t->cache, sizeof(t->cache), json_object_get(reply, "cache"));
	v = json_object_get(reply, "expires_in");
	t->expires_in = json_is_integer(v) ? (int64_t)json_integer_value(v) : 0;
	v = json_object_get(reply, "audit_seq");
	t->audit_seq = json_is_integer(v) && json_integer_value(v) > 0 ?
		(uint64_t)json_integer_value(v) : 0;
	*out = t;
	t = NULL;
	rc = 0;
out:
	custody_token_free(t);
	custody_json_wipe(reply);
	json_decref(req);
	return rc;
}
