/*
 * loadgen: closed-loop load generator for custody's benchmark.
 *
 * N connections to a Unix stream socket, each keeping D requests in flight
 * (closed loop: a new request leaves only when a reply came back). Two
 * protocols:
 *
 *   ndjson    one request line per request, built from a template in which
 *             "@ID@" is replaced by a unique integer id; every reply line
 *             must be a JSON object with "ok":true and that id.
 *   sshagent  SSH_AGENTC_REQUEST_IDENTITIES (11), length-prefixed; every
 *             reply must be SSH_AGENT_IDENTITIES_ANSWER (12).
 *
 * Timed mode (default): warm-up, then a fixed measuring window; requests/s
 * and the latency percentiles count replies that arrive inside the window.
 * Lines mode (--lines FILE): every line of FILE is sent exactly once, spread
 * over the connections; reports the total wall time.
 *
 * Prints one JSON object on stdout. Any failed reply makes the exit status
 * 1 and is reported on stderr (never a success line: it may hold a token).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

enum mode { MODE_NDJSON, MODE_SSHAGENT };

#define MAX_REPLY (16u * 1024u * 1024u)
/* Replies kept for the full parse after the run; beyond this, parse inline. */
#define DEFERRED_MAX ((size_t)2 << 30)

struct slot {
	uint64_t id;
	uint64_t sent_ns;
};

struct conn {
	int fd;
	char *in;
	size_t in_len, in_cap;
	char *out;
	size_t out_off, out_len, out_cap;
	struct slot *slots; /* ndjson: unordered set; sshagent: FIFO ring */
	unsigned inflight, head;
	bool want_out;
};

struct template {
	char *prefix, *suffix;
	size_t prefix_len, suffix_len;
};

static struct {
	enum mode mode;
	const char *socket_path;
	unsigned connections, depth;
	double warmup_s, duration_s;
	struct template tmpl;
	struct template *lines;
	size_t nlines, next_line;
	uint64_t next_id;
	uint64_t warm_end_ns, end_ns;
	bool stopping;
	/* results */
	uint64_t *samples;
	size_t nsamples, samples_cap;
	uint64_t replies, failures, measured;
	uint64_t first_measured_ns, last_measured_ns;
	bool reported_failure;
	bool defer;
	char *deferred;
	size_t deferred_len, deferred_cap;
} g = {
	.mode = MODE_NDJSON,
	.connections = 1,
	.depth = 1,
	.warmup_s = 1.0,
	.duration_s = 5.0,
	.next_id = 1,
	.defer = true,
};

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void die(const char *what)
{
	fprintf(stderr, "loadgen: %s: %s\n", what, strerror(errno));
	exit(2);
}

static void *xrealloc(void *p, size_t n)
{
	void *q = realloc(p, n);

	if (q == NULL)
		die("out of memory");
	return q;
}

/* Split a request template at "@ID@"; without the marker the id goes at
 * the end (useful only for protocols that do not check ids). */
static void template_init(struct template *t, const char *text, size_t len)
{
	const char *mark = memmem(text, len, "@ID@", 4);
	size_t pre = mark ? (size_t)(mark - text) : len;
	size_t suf_off = mark ? pre + 4 : len;

	t->prefix = xrealloc(NULL, pre + 1);
	memcpy(t->prefix, text, pre);
	t->prefix_len = pre;
	t->suffix_len = len - suf_off;
	t->suffix = xrealloc(NULL, t->suffix_len + 2);
	memcpy(t->suffix, text + suf_off, t->suffix_len);
	t->suffix[t->suffix_len++] = '\n';
}

static void out_append(struct conn *c, const void *p, size_t n)
{
	if (c->out_len + n > c->out_cap) {
		c->out_cap = (c->out_len + n) * 2;
		c->out = xrealloc(c->out, c->out_cap);
	}
	memcpy(c->out + c->out_len, p, n);
	c->out_len += n;
}

static void conn_flush(int ep, struct conn *c)
{
	while (c->out_off < c->out_len) {
		ssize_t n = write(c->fd, c->out + c->out_off, c->out_len - c->out_off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			break;
		if (n < 0)
			die("write");
		c->out_off += (size_t)n;
	}
	if (c->out_off == c->out_len)
		c->out_off = c->out_len = 0;
	bool want = c->out_len > 0;
	if (want != c->want_out) {
		struct epoll_event ev = { .events = EPOLLIN | (want ? EPOLLOUT : 0), .data.ptr = c };

		if (epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev) < 0)
			die("epoll_ctl");
		c->want_out = want;
	}
}

/* Queue one request on c; false when there is nothing left to send. */
static bool conn_send_one(struct conn *c)
{
	struct slot s = { .id = g.next_id++, .sent_ns = now_ns() };

	if (g.stopping)
		return false;
	if (g.mode == MODE_SSHAGENT) {
		static const unsigned char req[5] = { 0, 0, 0, 1, 11 };

		out_append(c, req, sizeof(req));
		c->slots[(c->head + c->inflight) % g.depth] = s;
	} else {
		const struct template *t = &g.tmpl;
		char num[24];
		int n;

		if (g.lines != NULL) {
			if (g.next_line >= g.nlines)
				return false;
			t = &g.lines[g.next_line++];
		}
		n = snprintf(num, sizeof(num), "%" PRIu64, s.id);
		out_append(c, t->prefix, t->prefix_len);
		out_append(c, num, (size_t)n);
		out_append(c, t->suffix, t->suffix_len);
		c->slots[c->inflight] = s;
	}
	c->inflight++;
	return true;
}

static void record_failure(const char *why, const char *line, size_t len)
{
	g.failures++;
	if (g.reported_failure)
		return;
	g.reported_failure = true;
	/* A success line may carry a token; only failed lines are shown, and
	 * only when they hold no access_token. */
	if (line != NULL && memmem(line, len, "access_token", 12) == NULL)
		fprintf(stderr, "loadgen: first failed reply (%s): %.*s\n", why,
			(int)(len > 300 ? 300 : len), line);
	else
		fprintf(stderr, "loadgen: first failed reply: %s\n", why);
}

static void record_latency(uint64_t sent_ns, uint64_t t)
{
	g.replies++;
	if (g.lines == NULL && (t < g.warm_end_ns || t > g.end_ns))
		return;
	if (g.measured == 0)
		g.first_measured_ns = t;
	g.last_measured_ns = t;
	g.measured++;
	if (g.nsamples == g.samples_cap) {
		g.samples_cap = g.samples_cap ? g.samples_cap * 2 : 1u << 16;
		g.samples = xrealloc(g.samples, g.samples_cap * sizeof(*g.samples));
	}
	g.samples[g.nsamples++] = t - sent_ns;
}

/*
 * Full check of one reply line: a JSON object with an integer "id" and
 * "ok":true. Returns 0 and sets *id (a reply that is not ok is recorded as
 * a failure but still answers its request), or -1 when no id can be read.
 */
static int reply_check(const char *line, size_t len, uint64_t *id)
{
	json_error_t err;
	json_t *root = json_loadb(line, len, 0, &err);
	json_t *jid = root ? json_object_get(root, "id") : NULL;
	int r = -1;

	if (root == NULL || !json_is_object(root)) {
		record_failure("not a JSON object", line, len);
		goto out;
	}
	if (!json_is_integer(jid)) {
		record_failure("no integer id", line, len);
		goto out;
	}
	if (!json_is_true(json_object_get(root, "ok")))
		record_failure("ok is not true", line, len);
	*id = (uint64_t)json_integer_value(jid);
	r = 0;
out:
	json_decref(root);
	return r;
}

/*
 * The id without a JSON parse: the first "id": followed by digits and ','
 * or '}'. Only a hint for matching the reply to its request while the
 * clock runs: every line is parsed in full afterwards (deferred_check), and
 * at once whenever the hint fails.
 */
static bool reply_id_hint(const char *line, size_t len, uint64_t *id)
{
	const char *p = memmem(line, len, "\"id\":", 5);
	const char *end = line + len;
	uint64_t v = 0;

	if (p == NULL || memmem(line, len, "\"ok\":true", 9) == NULL)
		return false;
	for (p += 5; p < end && *p >= '0' && *p <= '9'; p++)
		v = v * 10 + (uint64_t)(*p - '0');
	if (p == end || (*p != ',' && *p != '}') || p == line)
		return false;
	*id = v;
	return true;
}

/* Keep a reply for deferred_check: [id u64][len u32][bytes]. */
static bool deferred_store(uint64_t id, const char *line, size_t len)
{
	uint32_t len32 = (uint32_t)len;
	size_t need = sizeof(id) + sizeof(len32) + len;

	if (g.deferred_len + need > DEFERRED_MAX)
		return false;
	if (g.deferred_len + need > g.deferred_cap) {
		g.deferred_cap = (g.deferred_len + need) * 2;
		if (g.deferred_cap > DEFERRED_MAX)
			g.deferred_cap = DEFERRED_MAX;
		g.deferred = xrealloc(g.deferred, g.deferred_cap);
	}
	memcpy(g.deferred + g.deferred_len, &id, sizeof(id));
	memcpy(g.deferred + g.deferred_len + sizeof(id), &len32, sizeof(len32));
	memcpy(g.deferred + g.deferred_len + sizeof(id) + sizeof(len32), line, len);
	g.deferred_len += need;
	return true;
}

/* Parse every stored reply in full; its id must be the one the hint read. */
static void deferred_check(void)
{
	size_t off = 0;

	while (off < g.deferred_len) {
		uint64_t hint, id;
		uint32_t len;
		const char *line;

		memcpy(&hint, g.deferred + off, sizeof(hint));
		memcpy(&len, g.deferred + off + sizeof(hint), sizeof(len));
		line = g.deferred + off + sizeof(hint) + sizeof(len);
		if (reply_check(line, len, &id) == 0 && id != hint)
			record_failure("id differs from the one matched", line, len);
		off += sizeof(hint) + sizeof(len) + len;
	}
	free(g.deferred);
	g.deferred = NULL;
	g.deferred_len = g.deferred_cap = 0;
}

/* Match one NDJSON reply line to its request and retire it. */
static void handle_ndjson_reply(struct conn *c, const char *line, size_t len, uint64_t t)
{
	uint64_t id;
	unsigned i;

	if (!(g.defer && reply_id_hint(line, len, &id) && deferred_store(id, line, len)) &&
	    reply_check(line, len, &id) < 0)
		exit(1); /* the request it answers would stay in flight for ever */
	for (i = 0; i < c->inflight; i++)
		if (c->slots[i].id == id)
			break;
	if (i == c->inflight) {
		record_failure("id matches no request in flight", line, len);
		exit(1);
	}
	record_latency(c->slots[i].sent_ns, t);
	c->slots[i] = c->slots[--c->inflight];
}

/* Consume every complete reply in c->in; returns the number retired. */
static unsigned conn_parse(struct conn *c)
{
	size_t off = 0;
	unsigned done = 0;
	uint64_t t = now_ns();

	for (;;) {
		if (g.mode == MODE_SSHAGENT) {
			const unsigned char *p = (const unsigned char *)c->in + off;
			uint32_t len;

			if (c->in_len - off < 4)
				break;
			len = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
			if (len == 0 || len > MAX_REPLY) {
				record_failure("bad agent message length", NULL, 0);
				exit(1);
			}
			if (c->in_len - off - 4 < len)
				break;
			if (c->inflight == 0) {
				record_failure("reply with nothing in flight", NULL, 0);
				exit(1);
			}
			if (p[4] != 12)
				record_failure("agent reply is not IDENTITIES_ANSWER", NULL, 0);
			record_latency(c->slots[c->head].sent_ns, t);
			c->head = (c->head + 1) % g.depth;
			c->inflight--;
			off += 4 + len;
		} else {
			char *nl = memchr(c->in + off, '\n', c->in_len - off);

			if (nl == NULL)
				break;
			handle_ndjson_reply(c, c->in + off, (size_t)(nl - (c->in + off)), t);
			off = (size_t)(nl - c->in) + 1;
		}
		done++;
	}
	memmove(c->in, c->in + off, c->in_len - off);
	c->in_len -= off;
	return done;
}

/* Read what is there; false when the peer closed the connection. */
static bool conn_read(struct conn *c)
{
	for (;;) {
		ssize_t n;

		if (c->in_cap - c->in_len < 65536) {
			if (c->in_cap > MAX_REPLY) {
				record_failure("reply too large", NULL, 0);
				exit(1);
			}
			c->in_cap = c->in_cap ? c->in_cap * 2 : 131072;
			c->in = xrealloc(c->in, c->in_cap);
		}
		size_t room = c->in_cap - c->in_len;

		n = read(c->fd, c->in + c->in_len, room);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return true;
		if (n < 0)
			die("read");
		if (n == 0)
			return false;
		c->in_len += (size_t)n;
		if ((size_t)n < room)
			return true; /* short read: the socket is drained */
	}
}

static int conn_open(void)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd;

	if (strlen(g.socket_path) >= sizeof(sa.sun_path)) {
		fprintf(stderr, "loadgen: socket path too long\n");
		exit(2);
	}
	strcpy(sa.sun_path, g.socket_path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		die("socket");
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		die(g.socket_path);
	if (fcntl(fd, F_SETFL, O_NONBLOCK) < 0)
		die("fcntl");
	return fd;
}

static void read_lines_file(const char *path)
{
	FILE *f = fopen(path, "r");
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;

	if (f == NULL)
		die(path);
	while ((n = getline(&line, &cap, f)) > 0) {
		if (line[n - 1] == '\n')
			n--;
		if (n == 0)
			continue;
		g.lines = xrealloc(g.lines, (g.nlines + 1) * sizeof(*g.lines));
		template_init(&g.lines[g.nlines++], line, (size_t)n);
	}
	free(line);
	fclose(f);
	if (g.nlines == 0) {
		fprintf(stderr, "loadgen: %s holds no request lines\n", path);
		exit(2);
	}
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static double percentile_us(double q)
{
	size_t i;

	if (g.nsamples == 0)
		return 0;
	i = (size_t)ceil(q * (double)g.nsamples);
	if (i > 0)
		i--;
	if (i >= g.nsamples)
		i = g.nsamples - 1;
	return (double)g.samples[i] / 1000.0;
}

static void usage(void)
{
	fprintf(stderr,
		"usage: loadgen --socket PATH [--mode ndjson|sshagent] [--connections N] [--depth D]\n"
		"               [--warmup SECONDS] [--duration SECONDS]\n"
		"               (--request TEMPLATE | --lines FILE)   (ndjson; \"@ID@\" becomes the id)\n"
		"               [--check-inline]   (parse every reply in full at once, not after the run)\n");
	exit(2);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "socket", required_argument, NULL, 's' },
		{ "mode", required_argument, NULL, 'm' },
		{ "connections", required_argument, NULL, 'c' },
		{ "depth", required_argument, NULL, 'd' },
		{ "warmup", required_argument, NULL, 'w' },
		{ "duration", required_argument, NULL, 't' },
		{ "request", required_argument, NULL, 'r' },
		{ "lines", required_argument, NULL, 'l' },
		{ "check-inline", no_argument, NULL, 'i' },
		{ NULL, 0, NULL, 0 },
	};
	const char *request = NULL, *lines_path = NULL;
	struct conn *conns;
	struct epoll_event evs[256];
	uint64_t t0, t_done;
	int ep, opt;

	while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (opt) {
		case 's': g.socket_path = optarg; break;
		case 'm':
			if (strcmp(optarg, "ndjson") == 0)
				g.mode = MODE_NDJSON;
			else if (strcmp(optarg, "sshagent") == 0)
				g.mode = MODE_SSHAGENT;
			else
				usage();
			break;
		case 'c': g.connections = (unsigned)strtoul(optarg, NULL, 10); break;
		case 'd': g.depth = (unsigned)strtoul(optarg, NULL, 10); break;
		case 'w': g.warmup_s = strtod(optarg, NULL); break;
		case 't': g.duration_s = strtod(optarg, NULL); break;
		case 'r': request = optarg; break;
		case 'l': lines_path = optarg; break;
		case 'i': g.defer = false; break;
		default: usage();
		}
	}
	if (g.socket_path == NULL || g.connections == 0 || g.connections > 4096 ||
	    g.depth == 0 || g.depth > 1024 || g.warmup_s < 0 || g.duration_s <= 0)
		usage();
	if (g.mode == MODE_NDJSON) {
		if ((request == NULL) == (lines_path == NULL))
			usage();
		if (request != NULL)
			template_init(&g.tmpl, request, strlen(request));
		else
			read_lines_file(lines_path);
	}

	ep = epoll_create1(EPOLL_CLOEXEC);
	if (ep < 0)
		die("epoll_create1");
	conns = calloc(g.connections, sizeof(*conns));
	if (conns == NULL)
		die("calloc");
	for (unsigned i = 0; i < g.connections; i++) {
		struct conn *c = &conns[i];
		struct epoll_event ev = { .events = EPOLLIN, .data.ptr = c };

		c->fd = conn_open();
		c->slots = calloc(g.depth, sizeof(*c->slots));
		if (c->slots == NULL)
			die("calloc");
		if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev) < 0)
			die("epoll_ctl");
	}

	t0 = now_ns();
	g.warm_end_ns = t0 + (uint64_t)(g.warmup_s * 1e9);
	g.end_ns = g.warm_end_ns + (uint64_t)(g.duration_s * 1e9);
	if (g.lines != NULL)
		g.warm_end_ns = t0;
	for (unsigned i = 0; i < g.connections; i++) {
		for (unsigned d = 0; d < g.depth; d++)
			if (!conn_send_one(&conns[i]))
				break;
		conn_flush(ep, &conns[i]);
	}

	for (;;) {
		unsigned open_inflight = 0;
		int n = epoll_wait(ep, evs, 256, 100);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			die("epoll_wait");
		if (g.lines == NULL && now_ns() >= g.end_ns)
			g.stopping = true;
		for (int i = 0; i < n; i++) {
			struct conn *c = evs[i].data.ptr;

			if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
				bool open = conn_read(c);
				unsigned done = conn_parse(c);

				if (!open && c->inflight > 0) {
					record_failure("connection closed by the server with requests in flight", NULL, 0);
					fprintf(stderr, "loadgen: %" PRIu64 " failures\n", g.failures);
					return 1;
				}
				while (done-- > 0)
					conn_send_one(c);
			}
			conn_flush(ep, c);
		}
		for (unsigned i = 0; i < g.connections; i++)
			open_inflight += conns[i].inflight;
		if (g.lines != NULL && g.next_line >= g.nlines && open_inflight == 0)
			break;
		if (g.stopping)
			break;
	}
	t_done = now_ns();
	deferred_check();

	qsort(g.samples, g.nsamples, sizeof(*g.samples), cmp_u64);
	{
		double window_s;
		double sum = 0;

		if (g.lines != NULL)
			window_s = (double)(t_done - t0) / 1e9;
		else
			window_s = g.duration_s;
		for (size_t i = 0; i < g.nsamples; i++)
			sum += (double)g.samples[i];
		printf("{\"mode\":\"%s\",\"connections\":%u,\"depth\":%u,\"seconds\":%.6f,"
		       "\"requests\":%" PRIu64 ",\"failures\":%" PRIu64 ",\"rps\":%.1f,"
		       "\"mean_us\":%.1f,\"p50_us\":%.1f,\"p99_us\":%.1f,\"p999_us\":%.1f,\"max_us\":%.1f}\n",
		       g.mode == MODE_SSHAGENT ? "sshagent" : "ndjson", g.connections, g.depth, window_s,
		       g.measured, g.failures, (double)g.measured / window_s,
		       g.nsamples ? sum / (double)g.nsamples / 1000.0 : 0.0,
		       percentile_us(0.50), percentile_us(0.99), percentile_us(0.999),
		       g.nsamples ? (double)g.samples[g.nsamples - 1] / 1000.0 : 0.0);
	}
	for (unsigned i = 0; i < g.connections; i++) {
		close(conns[i].fd);
		free(conns[i].in);
		free(conns[i].out);
		free(conns[i].slots);
	}
	free(conns);
	free(g.samples);
	free(g.tmpl.prefix);
	free(g.tmpl.suffix);
	for (size_t i = 0; i < g.nlines; i++) {
		free(g.lines[i].prefix);
		free(g.lines[i].suffix);
	}
	free(g.lines);
	close(ep);
	if (g.failures > 0) {
		fprintf(stderr, "loadgen: FAILED: %" PRIu64 " of %" PRIu64 " replies were not ok\n",
			g.failures, g.replies);
		return 1;
	}
	return 0;
}
