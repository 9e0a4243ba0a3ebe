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
 * --store DIR: the durable echo floor. Before a reply may leave, its
 * request's row is committed to an audit store (the real schema, created
 * by the audit library, with the store's pragmas: WAL, synchronous=FULL;
 * floor_store.c), the way Redis with appendfsync always answers: still
 * one thread, no hashing, no JSON, no other work. Each complete request
 * line read in a loop iteration inserts one row (one BEGIN IMMEDIATE,
 * opened at the iteration's first row); its reply is queued, not written.
 * Before the loop waits again (Redis's beforeSleep) one COMMIT syncs every
 * row of the iteration, and only then are the replies of every client
 * answered in it flushed. What custodyd's cached-token path could reach
 * with the design's durability and nothing else.
 *
 * usage: echo_server SOCKET [REPLY_BYTES] [--store DIR]
 * Runs until SIGTERM/SIGINT; unlinks SOCKET on the way out. With --store:
 * nothing more is committed or sent after the signal; prints
 * "echo_server: committed N rows in M commits" (N counted in the store)
 * and unlinks the store's files. Errors: one line on stderr, exit 2.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "floor_store.h"

/* SQLite appends every commit to the WAL and (wal_autocheckpoint=0, as in
 * the store) never folds it back on its own: the file would grow by a few
 * frames per request for the whole run, and a commit that grows a file
 * syncs slower than one that overwrites (sqlite-floor's "WAL growing"
 * shape). The store folds from a thread of its own; this one thread folds
 * between iterations once the WAL passes this length (16 MiB of 4 KiB
 * pages, the broker's prefilled WAL), after which the WAL restarts from
 * its first frame and commits overwrite. */
#define WAL_FOLD_FRAMES 4096

struct client {
	int fd;               /* -1: gone, freed after the iteration's commit */
	char *in;
	size_t in_len, in_cap;
	char *out;
	size_t out_off, out_len, out_cap;
	size_t out_ready;     /* out[out_off, out_ready) may be written */
	bool want_out;
	bool answered;        /* --store: on the answered list */
	struct client *next_answered;
};

static volatile sig_atomic_t stop;
static char *reply_head, *reply_tail;
static size_t reply_head_len, reply_tail_len;

/* --store */
static bool durable;
static struct floor_store store;
static bool in_txn;              /* this iteration's BEGIN IMMEDIATE is open */
static uint64_t seq, commits;
static uint64_t committed;       /* seq of the last committed row */
static struct client *answered;  /* clients answered in this iteration */

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

/* Exit 2 once the line that says why is out; the store's files go too. */
static void fail_exit(void)
{
	if (durable)
		floor_store_close(&store);
	exit(2);
}

static void die(const char *what)
{
	fprintf(stderr, "echo_server: %s: %s\n", what, strerror(errno));
	fail_exit();
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
	if (c->fd >= 0)
		close(c->fd);
	free(c->in);
	free(c->out);
	free(c);
}

/* A client that left. With replies waiting for this iteration's commit it
 * stays on the answered list, closed, until the commit frees it. */
static void client_drop(struct client *c)
{
	if (!c->answered) {
		client_free(c);
		return;
	}
	close(c->fd);
	c->fd = -1;
}

/* Write what may be written; false when the client is gone. */
static bool client_flush(int ep, struct client *c)
{
	while (c->out_off < c->out_ready) {
		ssize_t n = write(c->fd, c->out + c->out_off, c->out_ready - c->out_off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			break;
		if (n < 0)
			return false;
		c->out_off += (size_t)n;
	}
	if (c->out_off == c->out_len)
		c->out_off = c->out_len = c->out_ready = 0;
	bool want = c->out_ready > c->out_off;
	if (want != c->want_out) {
		struct epoll_event ev = { .events = EPOLLIN | (want ? EPOLLOUT : 0), .data.ptr = c };

		if (epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev) < 0)
			return false;
		c->want_out = want;
	}
	return true;
}

/* --store: one row for one request, in this iteration's transaction. */
static void store_row(void)
{
	if (!in_txn) {
		if (floor_store_exec(&store, "BEGIN IMMEDIATE") < 0)
			fail_exit();
		in_txn = true;
	}
	if (floor_store_insert(&store, ++seq, 1) < 0)
		fail_exit();
}

/* --store, before the loop waits (Redis's beforeSleep): sync this
 * iteration's rows with one COMMIT, then let out the replies they cover. */
static void store_before_sleep(int ep)
{
	struct client *c, *next;

	if (in_txn) {
		if (floor_store_exec(&store, "COMMIT") < 0)
			fail_exit();
		in_txn = false;
		commits++;
		committed = seq;
	}
	for (c = answered; c != NULL; c = next) {
		next = c->next_answered;
		c->next_answered = NULL;
		c->answered = false;
		if (c->fd < 0) {
			client_free(c);
			continue;
		}
		c->out_ready = c->out_len;
		if (!client_flush(ep, c))
			client_free(c);
	}
	answered = NULL;
	if (store.wal_frames >= WAL_FOLD_FRAMES) {
		if (floor_store_exec(&store, "PRAGMA wal_checkpoint(PASSIVE)") < 0)
			fail_exit();
		store.wal_frames = 0;
	}
}

/* --store, at exit: drop the iteration's uncommitted rows, then count what
 * the commits made durable, which must be every row up to the last COMMIT. */
static int store_finish(void)
{
	sqlite3_stmt *st = NULL;
	sqlite3_int64 rows = -1;

	if (in_txn && floor_store_exec(&store, "ROLLBACK") < 0)
		return -EIO;
	if (sqlite3_prepare_v2(store.db, "SELECT count(*) FROM events", -1, &st, NULL) == SQLITE_OK &&
	    sqlite3_step(st) == SQLITE_ROW)
		rows = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	if (rows < 0) {
		fprintf(stderr, "echo_server: counting the store's rows: %s\n", sqlite3_errmsg(store.db));
		return -EIO;
	}
	if ((uint64_t)rows != committed) {
		fprintf(stderr, "echo_server: the store holds %lld rows, %" PRIu64 " were committed\n",
			(long long)rows, committed);
		return -EIO;
	}
	fprintf(stderr, "echo_server: committed %lld rows in %" PRIu64 " commits\n", (long long)rows,
		commits);
	return 0;
}

/* Answer every complete line; the id is copied from the text after "id":.
 * --store: each line's row is inserted, the replies wait for the commit. */
static void client_answer(struct client *c)
{
	size_t off = 0;

	for (;;) {
		char *line = c->in + off;
		char *nl = memchr(line, '\n', c->in_len - off);
		char *id, *end;

		if (nl == NULL)
			break;
		if (durable)
			store_row();
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
	if (!durable) {
		c->out_ready = c->out_len;
	} else if (off > 0 && !c->answered) {
		c->answered = true;
		c->next_answered = answered;
		answered = c;
	}
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
	sigset_t block, waiting;
	static int listener_tag;
	const char *bytes = NULL, *store_dir = NULL;
	bool usage = argc < 2 || strlen(argv[1]) >= sizeof(sa.sun_path);
	int ep, lfd;

	for (int i = 2; i < argc; i++) {
		if (strcmp(argv[i], "--store") == 0 && i + 1 < argc && store_dir == NULL)
			store_dir = argv[++i];
		else if (argv[i][0] != '-' && bytes == NULL)
			bytes = argv[i];
		else
			usage = true;
	}
	if (usage) {
		fprintf(stderr, "usage: echo_server SOCKET [REPLY_BYTES] [--store DIR]\n");
		return 2;
	}
	reply_init(bytes != NULL ? strtoul(bytes, NULL, 10) : 1500);
	/* the signals arrive only inside epoll_pwait, so one that comes
	 * between the check of `stop` and the wait still ends the wait */
	sigemptyset(&block);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGINT);
	sigprocmask(SIG_BLOCK, &block, &waiting);
	sigdelset(&waiting, SIGTERM);
	sigdelset(&waiting, SIGINT);
	sigaction(SIGTERM, &act, NULL);
	sigaction(SIGINT, &act, NULL);
	signal(SIGPIPE, SIG_IGN);
	/* the store before the socket: a client that connects finds it */
	if (store_dir != NULL) {
		if (floor_store_open(&store, store_dir, "echo_server") < 0)
			return 2;
		floor_store_watch_wal(&store, true);
		durable = true;
	}

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
		int n = epoll_pwait(ep, evs, 128, -1, &waiting);

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
				client_drop(c);
				continue;
			}
			if (!client_flush(ep, c))
				client_drop(c);
		}
		if (durable && !stop)
			store_before_sleep(ep);
	}
	close(lfd);
	unlink(argv[1]);
	free(reply_head);
	free(reply_tail);
	if (durable) {
		int rc = store_finish();

		floor_store_close(&store);
		if (rc < 0)
			return 2;
	}
	return 0;
}
