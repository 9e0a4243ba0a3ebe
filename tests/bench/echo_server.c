/*
 * echo_server: the floor for custody's socket benchmark.
 *
 * A minimal single-threaded epoll server on a Unix stream socket that does
 * what custodyd's cached-token path cannot avoid — read a request line,
 * write one reply line — and nothing else: no JSON parsing, no policy, no
 * audit. Each line gets a fixed {"ok":true,...} reply about the size of a
 * custody token reply, carrying the request's "id" so the load generator
 * can match it.
 *
 * usage: echo_server SOCKET [REPLY_BYTES]
 * Runs until SIGTERM/SIGINT; unlinks SOCKET on the way out.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

struct client {
	int fd;
	char *in;
	size_t in_len, in_cap;
	char *out;
	size_t out_off, out_len, out_cap;
	bool want_out;
};

static volatile sig_atomic_t stop;
static char *reply_head, *reply_tail;
static size_t reply_head_len, reply_tail_len;

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

static void die(const char *what)
{
	fprintf(stderr, "echo_server: %s: %s\n", what, strerror(errno));
	exit(2);
}

static void *xrealloc(void *p, size_t n)
{
	void *q = realloc(p, n);

	if (q == NULL)
		die("out of memory");
	return q;
}

/* Reply = head + id + tail; the fake access_token pads it to the size. */
static void reply_init(size_t bytes)
{
	static const char head[] = "{\"v\":1,\"id\":";
	static const char tail1[] =
		",\"ok\":true,\"token_type\":\"Bearer\",\"expires_at\":\"2026-11-29T05:00:00Z\","
		"\"expires_in\":3412,\"tenant\":\"72f988bf-86f1-41af-91ab-2d7cd011db47\","
		"\"scope\":\"https://api.securitycenter.microsoft.com/.default\","
		"\"grant\":\"g_0123456789abcdef\",\"audit_seq\":1234,\"cache\":\"hit\",\"access_token\":\"";
	static const char tail2[] = "\"}\n";
	size_t fixed = sizeof(head) - 1 + sizeof(tail1) - 1 + sizeof(tail2) - 1 + 4;
	size_t pad = bytes > fixed ? bytes - fixed : 16;

	reply_head = strdup(head);
	reply_head_len = strlen(head);
	reply_tail_len = sizeof(tail1) - 1 + pad + sizeof(tail2) - 1;
	reply_tail = xrealloc(NULL, reply_tail_len);
	memcpy(reply_tail, tail1, sizeof(tail1) - 1);
	memset(reply_tail + sizeof(tail1) - 1, 'x', pad);
	memcpy(reply_tail + sizeof(tail1) - 1 + pad, tail2, sizeof(tail2) - 1);
}

static void out_append(struct client *c, const char *p, size_t n)
{
	if (c->out_len + n > c->out_cap) {
		c->out_cap = (c->out_len + n) * 2;
		c->out = xrealloc(c->out, c->out_cap);
	}
	memcpy(c->out + c->out_len, p, n);
	c->out_len += n;
}

static void client_free(struct client *c)
{
	close(c->fd);
	free(c->in);
	free(c->out);
	free(c);
}

/* Write what can be written; false when the client is gone. */
static bool client_flush(int ep, struct client *c)
{
	while (c->out_off < c->out_len) {
		ssize_t n = write(c->fd, c->out + c->out_off, c->out_len - c->out_off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			break;
		if (n < 0)
			return false;
		c->out_off += (size_t)n;
	}
	if (c->out_off == c->out_len)
		c->out_off = c->out_len = 0;
	bool want = c->out_len > 0;
	if (want != c->want_out) {
		struct epoll_event ev = { .events = EPOLLIN | (want ? EPOLLOUT : 0), .data.ptr = c };

		if (epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev) < 0)
			return false;
		c->want_out = want;
	}
	return true;
}

/* Answer every complete line; the id is copied from the text after "id":. */
static void client_answer(struct client *c)
{
	size_t off = 0;

	for (;;) {
		char *line = c->in + off;
		char *nl = memchr(line, '\n', c->in_len - off);
		char *id, *end;

		if (nl == NULL)
			break;
		id = memmem(line, (size_t)(nl - line), "\"id\":", 5);
		out_append(c, reply_head, reply_head_len);
		if (id != NULL) {
			id += 5;
			for (end = id; end < nl && *end != ',' && *end != '}'; end++)
				;
			out_append(c, id, (size_t)(end - id));
		} else {
			out_append(c, "null", 4);
		}
		out_append(c, reply_tail, reply_tail_len);
		off = (size_t)(nl - c->in) + 1;
	}
	memmove(c->in, c->in + off, c->in_len - off);
	c->in_len -= off;
}

/* Read and answer; false when the client is gone. */
static bool client_read(struct client *c)
{
	for (;;) {
		size_t room;
		ssize_t n;

		if (c->in_cap - c->in_len < 16384) {
			if (c->in_cap >= (1u << 20))
				return false; /* a line this long is not a request */
			c->in_cap = c->in_cap ? c->in_cap * 2 : 65536;
			c->in = xrealloc(c->in, c->in_cap);
		}
		room = c->in_cap - c->in_len;
		n = read(c->fd, c->in + c->in_len, room);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			break;
		if (n <= 0)
			return false;
		c->in_len += (size_t)n;
		if ((size_t)n < room)
			break;
	}
	client_answer(c);
	return true;
}

int main(int argc, char **argv)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct epoll_event evs[128];
	struct sigaction act = { .sa_handler = on_signal };
	static int listener_tag;
	int ep, lfd;

	if (argc < 2 || argc > 3 || strlen(argv[1]) >= sizeof(sa.sun_path)) {
		fprintf(stderr, "usage: echo_server SOCKET [REPLY_BYTES]\n");
		return 2;
	}
	reply_init(argc == 3 ? strtoul(argv[2], NULL, 10) : 1500);
	sigaction(SIGTERM, &act, NULL);
	sigaction(SIGINT, &act, NULL);
	signal(SIGPIPE, SIG_IGN);

	strcpy(sa.sun_path, argv[1]);
	unlink(argv[1]);
	lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (lfd < 0)
		die("socket");
	if (bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		die(argv[1]);
	if (listen(lfd, 1024) < 0)
		die("listen");
	ep = epoll_create1(EPOLL_CLOEXEC);
	if (ep < 0)
		die("epoll_create1");
	{
		struct epoll_event ev = { .events = EPOLLIN, .data.ptr = &listener_tag };

		if (epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev) < 0)
			die("epoll_ctl");
	}

	while (!stop) {
		int n = epoll_wait(ep, evs, 128, -1);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			die("epoll_wait");
		for (int i = 0; i < n; i++) {
			struct client *c;

			if (evs[i].data.ptr == &listener_tag) {
				int fd;

				while ((fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
					struct epoll_event ev = { .events = EPOLLIN };

					c = calloc(1, sizeof(*c));
					if (c == NULL)
						die("calloc");
					c->fd = fd;
					ev.data.ptr = c;
					if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0)
						die("epoll_ctl");
				}
				continue;
			}
			c = evs[i].data.ptr;
			if ((evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) && !client_read(c)) {
				client_free(c);
				continue;
			}
			if (!client_flush(ep, c))
				client_free(c);
		}
	}
	close(lfd);
	unlink(argv[1]);
	free(reply_head);
	free(reply_tail);
	return 0;
}
