/* server.c — the two listening sockets and the client connections.
 *
 * Sockets are created under umask 0117 so they are never briefly more open
 * than 0660, then chmod'ed to the configured mode and chown'ed to the
 * configured group before listen(). A stale socket file is replaced only
 * when nothing answers on it. Every client is non-blocking with a hard
 * cap on its input line and on its unsent output, an idle timeout, and
 * per-uid and total connection limits; accept() pauses on EMFILE/ENFILE
 * instead of spinning.
 */
#include "broker_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <sodium.h>

#define READ_CHUNK 16384
#define CONN_IN_START 4096
#define SWEEP_MS 500
#define ACCEPT_RETRY_MS 200

static void conn_io(struct loop *l, int fd, uint32_t events, void *ctx);

/* SO_PASSCRED on a listening socket, before any client connects. The
 * kernel gives a connection the listener's setting when the client
 * connects, not when custodyd accepts: bytes a client sends between
 * accept and the SO_PASSCRED custodyd then sets on the connection arrive
 * without credentials (pid 0), and are refused as another process's. Set
 * here, every byte of every later connection carries its sender. */
static int listener_pass_credentials(int fd)
{
	int one = 1;

	return setsockopt(fd, SOL_SOCKET, SO_PASSCRED, &one, sizeof(one)) < 0 ? -errno : 0;
}

static int bind_socket(const struct broker_socket_config *sc, int *out, struct cerr *err)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	mode_t old;
	int fd, rc;

	if (strlen(sc->path) >= sizeof(sa.sun_path))
		return cerr_set(err, -ENAMETOOLONG, "socket path too long: %s", sc->path);
	memcpy(sa.sun_path, sc->path, strlen(sc->path) + 1);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return cerr_set(err, -errno, "socket: %s", strerror(errno));
	/* Is something already there? Replace the file only when connecting
	 * to it is refused (a stale socket of a broker that died). */
	{
		int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		struct stat st;

		if (probe >= 0 && lstat(sc->path, &st) == 0) {
			if (!S_ISSOCK(st.st_mode)) {
				close(probe);
				rc = cerr_set(err, -EEXIST,
					      "%s exists and is not a socket: remove it or change the socket path",
					      sc->path);
				goto fail;
			}
			if (connect(probe, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
				close(probe);
				rc = cerr_set(err, -EADDRINUSE,
					      "another custodyd is running on %s: stop it first",
					      sc->path);
				goto fail;
			}
			if (errno != ECONNREFUSED) {
				rc = cerr_set(err, -errno, "cannot check the old socket %s: %s",
					      sc->path, strerror(errno));
				close(probe);
				goto fail;
			}
			unlink(sc->path);
		}
		if (probe >= 0)
			close(probe);
	}
	old = umask(0117);
	rc = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
	umask(old);
	if (rc < 0) {
		rc = cerr_set(err, -errno, "cannot bind %s: %s", sc->path, strerror(errno));
		goto fail;
	}
	if (sc->group != NULL && chown(sc->path, (uid_t)-1, sc->gid) < 0) {
		rc = cerr_set(err, -errno, "cannot give %s to group %s: %s", sc->path, sc->group,
			      strerror(errno));
		unlink(sc->path);
		goto fail;
	}
	if (chmod(sc->path, sc->mode) < 0) {
		rc = cerr_set(err, -errno, "cannot chmod %s: %s", sc->path, strerror(errno));
		unlink(sc->path);
		goto fail;
	}
	rc = listener_pass_credentials(fd);
	if (rc < 0) {
		rc = cerr_set(err, rc, "cannot set SO_PASSCRED on %s: %s", sc->path, strerror(-rc));
		unlink(sc->path);
		goto fail;
	}
	if (listen(fd, 512) < 0) {
		rc = cerr_set(err, -errno, "cannot listen on %s: %s", sc->path, strerror(errno));
		unlink(sc->path);
		goto fail;
	}
	*out = fd;
	return 0;
fail:
	close(fd);
	return rc;
}

static unsigned count_uid(const struct broker *b, uid_t uid)
{
	unsigned n = 0;

	for (const struct conn *c = b->conns; c != NULL; c = c->next)
		if (!c->dead && !c->admin && c->peer.uid == uid)
			n++;
	return n;
}

unsigned server_count(const struct broker *b, bool admin)
{
	return admin ? b->n_admin : b->n_tool;
}

/* Best effort: one line to a connection we will not keep. */
static void refuse(int fd, const char *code, const char *msg)
{
	char line[512];
	int n;

	n = snprintf(line, sizeof(line),
		     "{\"v\":1,\"id\":null,\"ok\":false,\"error\":\"%s\",\"message\":\"%s\",\"retry_after\":1}\n",
		     code, msg);
	if (n > 0 && (size_t)n < sizeof(line))
		(void)!send(fd, line, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT);
	close(fd);
}

static void accept_resume(struct loop *l, struct loop_timer *t, void *ctx)
{
	struct broker *b = ctx;

	if (!b->accept_paused || b->stopping)
		return;
	b->accept_paused = false;
	if (b->tool_fd >= 0)
		loop_fd_mod(l, b->tool_fd, EPOLLIN);
	if (b->admin_fd >= 0)
		loop_fd_mod(l, b->admin_fd, EPOLLIN);
}

static void accept_pause(struct broker *b)
{
	if (b->accept_paused)
		return;
	b->accept_paused = true;
	if (b->tool_fd >= 0)
		loop_fd_mod(b->loop, b->tool_fd, 0);
	if (b->admin_fd >= 0)
		loop_fd_mod(b->loop, b->admin_fd, 0);
	loop_timer_arm(b->accept_timer, ACCEPT_RETRY_MS);
	broker_log("accept paused: out of file descriptors (%u connections)", b->n_tool + b->n_admin);
}

static void conn_update_events(struct conn *c);

/* The executable's hash is in (peer_resolve): reading may go on. */
static void conn_hash_done(void *ctx, bool cancelled)
{
	struct conn *c = ctx;

	if (!cancelled && !c->dead)
		conn_update_events(c);
	conn_unref(c);
}

static void on_accept(struct loop *l, int lfd, uint32_t events, void *ctx)
{
	struct broker *b = ctx;
	bool admin = lfd == b->admin_fd;

	for (int i = 0; i < 64; i++) {
		struct conn *c;
		int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0) {
			if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
				accept_pause(b);
			return;
		}
		if (b->stopping) {
			close(fd);
			continue;
		}
		c = calloc(1, sizeof(*c));
		if (c == NULL) {
			close(fd);
			return;
		}
		c->b = b;
		c->fd = fd;
		c->admin = admin;
		if (peer_from_socket(fd, &c->peer) < 0) {
			free(c);
			close(fd);
			continue;
		}
		/* The admin socket has its own small allowance, so an officer can
		 * still lock down a broker that a flood of tool clients fills. */
		if (admin ? b->n_admin >= BROKER_MAX_ADMIN_CONNS
			  : b->n_tool >= b->cfg->limits.max_connections) {
			broker_log("connection refused: max_connections (%u) reached (uid %u)",
				   b->cfg->limits.max_connections, (unsigned)c->peer.uid);
			peer_clear(&c->peer);
			free(c);
			refuse(fd, "rate_limited", "too many connections to custodyd: try again later");
			continue;
		}
		if (!admin && count_uid(b, c->peer.uid) >= b->cfg->limits.max_connections_per_uid) {
			broker_log("connection refused: max_connections_per_uid (%u) reached (uid %u)",
				   b->cfg->limits.max_connections_per_uid, (unsigned)c->peer.uid);
			peer_clear(&c->peer);
			free(c);
			refuse(fd, "rate_limited",
			       "too many connections from this user: close some and try again");
			continue;
		}
		c->max_line = b->cfg->limits.max_request_bytes;
		/* Start small and grow toward max_line + 1 only for long lines:
		 * thousands of idle connections must not each hold 64 KiB. */
		c->in_cap = c->max_line + 1 < CONN_IN_START ? c->max_line + 1 : CONN_IN_START;
		c->in = malloc(c->in_cap);
		if (c->in == NULL || loop_fd_add(l, fd, EPOLLIN, conn_io, c) < 0) {
			free(c->in);
			peer_clear(&c->peer);
			free(c);
			close(fd);
			continue;
		}
		c->reading = true;
		c->events = EPOLLIN;
		c->last_active_ms = loop_now_ms(l);
		c->next = b->conns;
		if (b->conns != NULL)
			b->conns->prev = c;
		b->conns = c;
		if (admin)
			b->n_admin++;
		else
			b->n_tool++;
		/* the request waits for an executable's hash (off the loop) */
		if (peer_resolve(b, &c->peer, c->admin, conn_hash_done, c))
			c->refs++;
	}
}

/* Room for another request: reading (and handling buffered lines) pauses
 * while 64 requests are in flight or 256 KiB of replies wait unsent, so a
 * client that pipelines without reading stalls itself instead of growing
 * the broker (and is dropped by the idle sweep if it never reads). */
static bool conn_can_take(const struct conn *c)
{
	return !c->dead && !c->closing && !c->hung_up && c->peer.hash != PEER_HASH_PENDING &&
	       c->inflight < BROKER_MAX_INFLIGHT &&
	       c->out_len - c->out_off <= BROKER_READ_PAUSE_BACKLOG;
}

static void conn_update_events(struct conn *c)
{
	uint32_t ev = 0;

	if (c->dead || c->hung_up)
		return;
	if (c->reading && conn_can_take(c))
		ev |= EPOLLIN;
	if (c->out_len > c->out_off)
		ev |= EPOLLOUT;
	if (ev != c->events) {
		loop_fd_mod(c->b->loop, c->fd, ev);
		c->events = ev;
	}
	/* complete lines already buffered get no EPOLLIN of their own */
	if (c->lines_waiting && conn_can_take(c))
		loop_timer_arm(c->b->drain_timer, 0);
}


static void conn_free(struct conn *c)
{
	if (c->out != NULL) {
		/* replies may have held a token */
		sodium_memzero(c->out, c->out_cap);
		free(c->out);
	}
	free(c->in);
	peer_clear(&c->peer);
	free(c);
}

void conn_close(struct conn *c)
{
	struct broker *b = c->b;

	if (c->dead)
		return;
	if (b->on_conn_close != NULL)
		b->on_conn_close(c);
	c->dead = true;
	loop_fd_del(b->loop, c->fd);
	close(c->fd);
	c->fd = -1;
	if (c->prev != NULL)
		c->prev->next = c->next;
	else
		b->conns = c->next;
	if (c->next != NULL)
		c->next->prev = c->prev;
	c->prev = c->next = NULL;
	if (c->admin)
		b->n_admin--;
	else
		b->n_tool--;
	/* Requests in flight keep the struct until they finish; they see dead. */
	if (c->refs == 0)
		conn_free(c);
	if (b->accept_paused)
		accept_resume(b->loop, b->accept_timer, b);
}

void conn_unref(struct conn *c)
{
	if (--c->refs == 0 && c->dead)
		conn_free(c);
}

void conn_request_begin(struct conn *c)
{
	c->refs++;
	c->inflight++;
}

void conn_stop_reading(struct conn *c)
{
	c->closing = true;
}

static void conn_flush(struct conn *c)
{
	while (c->out_len > c->out_off) {
		ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off,
				 MSG_NOSIGNAL | MSG_DONTWAIT);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		if (n < 0) {
			conn_close(c);
			return;
		}
		c->out_off += (size_t)n;
		c->last_active_ms = loop_now_ms(c->b->loop);
	}
	if (c->out_off == c->out_len) {
		sodium_memzero(c->out, c->out_len);
		c->out_off = c->out_len = 0;
		if (c->closing && c->inflight == 0) {
			conn_close(c);
			return;
		}
	}
	conn_update_events(c);
}

char *conn_out_reserve(struct conn *c, size_t len)
{
	if (c->dead)
		return NULL;
	if (c->out_len - c->out_off > BROKER_MAX_OUT_BACKLOG) {
		broker_log("client dropped: it does not read its replies (uid %u pid %d)",
			   (unsigned)c->peer.uid, (int)c->peer.pid);
		conn_close(c);
		return NULL;
	}
	if (c->out_off > 0 && c->out_off == c->out_len) {
		c->out_off = c->out_len = 0;
	}
	if (c->out_len + len > c->out_cap) {
		size_t ncap = c->out_cap ? c->out_cap : 4096;
		char *n;

		while (ncap < c->out_len + len)
			ncap *= 2;
		/* Grow by copying so the old buffer can be wiped: it may hold a token. */
		n = malloc(ncap);
		if (n == NULL) {
			conn_close(c);
			return NULL;
		}
		if (c->out != NULL) {
			memcpy(n, c->out, c->out_len);
			sodium_memzero(c->out, c->out_cap);
			free(c->out);
		}
		c->out = n;
		c->out_cap = ncap;
	}
	return c->out + c->out_len;
}

void conn_out_commit(struct conn *c, size_t len)
{
	c->out_len += len;
	conn_flush(c);
}

void conn_send_raw(struct conn *c, const char *buf, size_t len)
{
	char *dst = conn_out_reserve(c, len);

	if (dst == NULL)
		return;
	memcpy(dst, buf, len);
	conn_out_commit(c, len);
}

void conn_send_json(struct conn *c, json_t *reply)
{
	char *s;
	size_t len;

	if (c->dead) {
		json_decref(reply);
		return;
	}
	s = audit_json_compact(reply, &len);
	json_decref(reply);
	if (s == NULL) {
		conn_close(c);
		return;
	}
	/* the buffer holds len+1 bytes: the NUL becomes the newline */
	s[len] = '\n';
	conn_send_raw(c, s, len + 1);
	free(s);
}

static void conn_request_done(struct conn *c)
{
	if (c->inflight > 0)
		c->inflight--;
	if (c->dead)
		return;
	if (c->closing && c->inflight == 0 && c->out_len == c->out_off) {
		conn_close(c);
		return;
	}
	conn_update_events(c);
}

void conn_request_end(struct conn *c)
{
	conn_request_done(c);
	conn_unref(c);
}

/* Handle the complete lines in the input buffer while the connection can
 * take more requests. The caller holds a reference on c. */
static void conn_process_lines(struct conn *c)
{
	size_t off = 0;
	char *nl;

	while (conn_can_take(c) && (nl = memchr(c->in + off, '\n', c->in_len - off)) != NULL) {
		size_t line_len = (size_t)(nl - (c->in + off));

		if (line_len > c->max_line) {
			c->in_len = 0;
			c->b->on_too_large(c);
			return;
		}
		c->b->on_line(c, c->in + off, line_len);
		off += line_len + 1;
	}
	if (c->dead)
		return;
	if (off > 0) {
		memmove(c->in, c->in + off, c->in_len - off);
		c->in_len -= off;
	}
	c->lines_waiting = !c->closing && memchr(c->in, '\n', c->in_len) != NULL;
	if (!c->closing && !c->lines_waiting && c->in_len > c->max_line) {
		c->in_len = 0;
		c->b->on_too_large(c);
	}
}

/* Grow the input buffer to hold at least need bytes (never beyond
 * max_line + 1, which the caller's room computation already respects). */
static int conn_in_grow(struct conn *c, size_t need)
{
	size_t cap = c->in_cap;
	char *n;

	while (cap < need)
		cap *= 2;
	if (cap > c->max_line + 1)
		cap = c->max_line + 1;
	n = realloc(c->in, cap);
	if (n == NULL)
		return -ENOMEM;
	c->in = n;
	c->in_cap = cap;
	return 0;
}

static void conn_read(struct conn *c)
{
	for (;;) {
		struct ucred sender;
		bool have_sender;
		ssize_t n;
		size_t room;

		if (!conn_can_take(c) || c->lines_waiting)
			break;
		if (c->in_len == c->in_cap && conn_in_grow(c, c->in_cap + 1) < 0) {
			conn_close(c);
			return;
		}
		/* in_cap never exceeds max_line + 1, so room respects the limit */
		room = c->in_cap - c->in_len;
		if (room == 0)
			break;
		if (room > READ_CHUNK)
			room = READ_CHUNK;
		n = peer_recv(c->fd, c->in + c->in_len, room, &sender, &have_sender);
		if (n == -EINTR)
			continue;
		if (n == -EAGAIN || n == -EWOULDBLOCK)
			break;
		if (n > 0 && !peer_sent_by(&c->peer, &sender, have_sender)) {
			/* another process wrote on this connection (a forked
			 * child, a passed socket): its bytes are dropped unread */
			/* a half line already buffered may be the other half of it */
			c->in_len = 0;
			c->b->on_foreign_sender(c, have_sender ? &sender : NULL);
			if (!c->dead)
				conn_update_events(c);
			return;
		}
		if (n <= 0) {
			/* EOF: stop reading; replies still due are sent (a client
			 * may have shut down only its writing side), then close. */
			c->closing = true;
			if (c->inflight == 0 && c->out_len == c->out_off)
				conn_close(c);
			else
				conn_update_events(c);
			return;
		}
		c->last_active_ms = loop_now_ms(c->b->loop);
		c->in_len += (size_t)n;
		conn_process_lines(c);
		if (c->dead)
			return;
		/* A short read emptied the socket: the next recv would only
		 * say EAGAIN (epoll is level-triggered and reports more). */
		if ((size_t)n < room)
			break;
	}
	conn_update_events(c);
}

static void drain_lines(struct loop *l, struct loop_timer *t, void *ctx)
{
	struct broker *b = ctx;
	struct conn *c, *next;

	/* handling c's lines may close c, never another connection */
	for (c = b->conns; c != NULL; c = next) {
		next = c->next;
		if (!c->lines_waiting || !conn_can_take(c))
			continue;
		c->refs++;
		conn_process_lines(c);
		if (!c->dead)
			conn_update_events(c);
		conn_unref(c);
	}
}

static void conn_io(struct loop *l, int fd, uint32_t events, void *ctx)
{
	struct conn *c = ctx;

	/* a reference keeps c valid whatever the handlers close */
	c->refs++;
	if (events & EPOLLOUT)
		conn_flush(c);
	if (!c->dead && (events & (EPOLLIN | EPOLLHUP | EPOLLERR))) {
		if ((events & EPOLLERR) || ((events & EPOLLHUP) && !(events & EPOLLIN))) {
			c->closing = true;
			if (c->inflight == 0) {
				conn_close(c);
			} else {
				/* HUP cannot be masked: stop watching the fd (or the
				 * loop spins) and close once the requests are done. */
				c->hung_up = true;
				loop_fd_del(l, c->fd);
			}
		} else {
			conn_read(c);
		}
	}
	conn_unref(c);
}

/* Drop clients idle for longer than idle_timeout_s: a half line and a
 * stall, a reader that stopped reading, or nothing at all. A client with a
 * request in flight is not idle: the broker owes it an answer. */
static void sweep(struct loop *l, struct loop_timer *t, void *ctx)
{
	struct broker *b = ctx;
	int64_t limit = (int64_t)b->cfg->limits.idle_timeout_s * 1000;
	int64_t now = loop_now_ms(l);
	struct conn *c = b->conns, *next;

	for (; c != NULL; c = next) {
		next = c->next;
		if (c->inflight == 0 && now - c->last_active_ms > limit) {
			broker_log("client dropped: %s for %u s (uid %u pid %d)",
				   c->out_len > c->out_off ? "it does not read its replies"
				   : c->in_len ? "half a request, then idle" : "idle",
				   b->cfg->limits.idle_timeout_s, (unsigned)c->peer.uid,
				   (int)c->peer.pid);
			conn_close(c);
		}
	}
	loop_timer_arm(t, SWEEP_MS);
}

int server_listen(struct broker *b)
{
	struct cerr err = {0};
	int rc;

	struct stat st;
	bool existed = stat(b->cfg->runtime_dir, &st) == 0;

	/* Sockets systemd passed are used as they are (listen_fds.c). */
	rc = listen_fds_use(&b->passed.tool_fd, b->passed.tool_path, "tool",
			    b->cfg->tool_socket.path, &b->tool_fd, &b->tool_path);
	if (rc < 0)
		return rc;
	b->tool_passed = rc == 1;
	rc = listen_fds_use(&b->passed.admin_fd, b->passed.admin_path, "admin",
			    b->cfg->admin_socket.path, &b->admin_fd, &b->admin_path);
	if (rc < 0)
		return rc;
	b->admin_passed = rc == 1;
	/* passed sockets too (the units also say PassCredentials=yes, so
	 * connections queued before custodyd started are covered as well) */
	if ((b->tool_passed && (rc = listener_pass_credentials(b->tool_fd)) < 0) ||
	    (b->admin_passed && (rc = listener_pass_credentials(b->admin_fd)) < 0)) {
		broker_log("cannot set SO_PASSCRED on a socket systemd passed: %s", strerror(-rc));
		return rc;
	}
	if (!b->tool_passed || !b->admin_passed) {
		rc = util_mkdir_p(b->cfg->runtime_dir, 0755);
		/* created under umask 077: open it up explicitly */
		if (rc == 0 && !existed && chmod(b->cfg->runtime_dir, 0755) < 0)
			rc = -errno;
		if (rc < 0) {
			broker_log("cannot create runtime_dir %s: %s", b->cfg->runtime_dir,
				   strerror(-rc));
			return rc;
		}
	}
	/* The runtime dir must let tools of other uids reach the socket; the
	 * socket's own mode and group protect it. */
	if (!b->tool_passed) {
		rc = bind_socket(&b->cfg->tool_socket, &b->tool_fd, &err);
		if (rc < 0) {
			broker_log("%s", err.msg);
			return rc;
		}
		b->tool_path = strdup(b->cfg->tool_socket.path);
	}
	if (!b->admin_passed) {
		rc = bind_socket(&b->cfg->admin_socket, &b->admin_fd, &err);
		if (rc < 0) {
			broker_log("%s", err.msg);
			return rc;
		}
		b->admin_path = strdup(b->cfg->admin_socket.path);
	}
	if (b->tool_path == NULL || b->admin_path == NULL)
		return -ENOMEM;
	rc = loop_timer_new(b->loop, accept_resume, b, &b->accept_timer);
	if (rc < 0)
		return rc;
	rc = loop_timer_new(b->loop, drain_lines, b, &b->drain_timer);
	if (rc < 0)
		return rc;
	rc = loop_timer_new(b->loop, sweep, b, &b->sweep_timer);
	if (rc < 0)
		return rc;
	loop_timer_arm(b->sweep_timer, SWEEP_MS);
	rc = loop_fd_add(b->loop, b->tool_fd, EPOLLIN, on_accept, b);
	if (rc < 0)
		return rc;
	return loop_fd_add(b->loop, b->admin_fd, EPOLLIN, on_accept, b);
}

void server_stop_listening(struct broker *b)
{
	if (b->tool_fd >= 0) {
		loop_fd_del(b->loop, b->tool_fd);
		close(b->tool_fd);
		b->tool_fd = -1;
		if (b->tool_path != NULL && !b->tool_passed)
			unlink(b->tool_path);
	}
	if (b->admin_fd >= 0) {
		loop_fd_del(b->loop, b->admin_fd);
		close(b->admin_fd);
		b->admin_fd = -1;
		if (b->admin_path != NULL && !b->admin_passed)
			unlink(b->admin_path);
	}
}

void server_close_all(struct broker *b)
{
	while (b->conns != NULL) {
		struct conn *c = b->conns;

		/* One last non-blocking attempt to deliver what is queued. */
		if (c->out_len > c->out_off)
			(void)!send(c->fd, c->out + c->out_off, c->out_len - c->out_off,
				    MSG_NOSIGNAL | MSG_DONTWAIT);
		conn_close(c);
	}
	free(b->tool_path);
	free(b->admin_path);
	b->tool_path = b->admin_path = NULL;
	loop_timer_free(b->accept_timer);
	loop_timer_free(b->sweep_timer);
	loop_timer_free(b->drain_timer);
	b->accept_timer = b->sweep_timer = b->drain_timer = NULL;
}
