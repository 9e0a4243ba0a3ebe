/* loop.c — epoll event loop with a small timer list.
 *
 * Timers live in an unsorted array scanned once per iteration: the broker
 * has few timers (per-connection idle timers are checked by a single sweep
 * timer, and libcurl needs one), so a heap would only add code.
 */
#include "loop.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct fdw {
	int fd;
	loop_fd_cb cb;
	void *ctx;
	bool live;
	uint64_t born;    /* the batch during which it was added */
};

struct loop_timer {
	struct loop *loop;
	loop_timer_cb cb;
	void *ctx;
	int64_t due_ms; /* -1: disarmed */
	bool dead;
};

struct loop {
	int epfd;
	bool stop;
	int64_t now_ms;
	struct fdw **fds; /* indexed by fd */
	size_t nfds;
	struct loop_timer **timers;
	size_t ntimers, captimers;
	bool in_timers;
	uint64_t batch;   /* epoll_wait calls so far */
	void (*before_wait)(void *ctx);
	void *before_wait_ctx;
};

static int64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int loop_new(struct loop **out)
{
	struct loop *l = calloc(1, sizeof(*l));

	if (l == NULL)
		return -ENOMEM;
	l->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (l->epfd < 0) {
		int rc = -errno;

		free(l);
		return rc;
	}
	l->now_ms = mono_ms();
	*out = l;
	return 0;
}

void loop_free(struct loop *l)
{
	if (l == NULL)
		return;
	for (size_t i = 0; i < l->nfds; i++)
		free(l->fds[i]);
	free(l->fds);
	for (size_t i = 0; i < l->ntimers; i++)
		free(l->timers[i]);
	free(l->timers);
	close(l->epfd);
	free(l);
}

int loop_fd_add(struct loop *l, int fd, uint32_t events, loop_fd_cb cb, void *ctx)
{
	struct epoll_event ev = {.events = events, .data.fd = fd};

	if (fd < 0)
		return -EBADF;
	if ((size_t)fd >= l->nfds) {
		size_t n = (size_t)fd + 64;
		struct fdw **nf = realloc(l->fds, n * sizeof(*nf));

		if (nf == NULL)
			return -ENOMEM;
		memset(nf + l->nfds, 0, (n - l->nfds) * sizeof(*nf));
		l->fds = nf;
		l->nfds = n;
	}
	if (l->fds[fd] != NULL && l->fds[fd]->live)
		return -EEXIST;
	if (l->fds[fd] == NULL) {
		l->fds[fd] = calloc(1, sizeof(struct fdw));
		if (l->fds[fd] == NULL)
			return -ENOMEM;
	}
	if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
		return -errno;
	*l->fds[fd] = (struct fdw){.fd = fd, .cb = cb, .ctx = ctx, .live = true, .born = l->batch};
	return 0;
}

int loop_fd_mod(struct loop *l, int fd, uint32_t events)
{
	struct epoll_event ev = {.events = events, .data.fd = fd};

	if (fd < 0 || (size_t)fd >= l->nfds || l->fds[fd] == NULL || !l->fds[fd]->live)
		return -ENOENT;
	return epoll_ctl(l->epfd, EPOLL_CTL_MOD, fd, &ev) < 0 ? -errno : 0;
}

int loop_fd_del(struct loop *l, int fd)
{
	if (fd < 0 || (size_t)fd >= l->nfds || l->fds[fd] == NULL || !l->fds[fd]->live)
		return -ENOENT;
	/* Marking dead (not freeing) keeps a pending event for this fd in the
	 * current epoll batch from calling a stale callback. */
	l->fds[fd]->live = false;
	return epoll_ctl(l->epfd, EPOLL_CTL_DEL, fd, NULL) < 0 ? -errno : 0;
}

int loop_timer_new(struct loop *l, loop_timer_cb cb, void *ctx, struct loop_timer **out)
{
	struct loop_timer *t;

	if (l->ntimers == l->captimers) {
		size_t n = l->captimers ? l->captimers * 2 : 16;
		struct loop_timer **nt = realloc(l->timers, n * sizeof(*nt));

		if (nt == NULL)
			return -ENOMEM;
		l->timers = nt;
		l->captimers = n;
	}
	t = calloc(1, sizeof(*t));
	if (t == NULL)
		return -ENOMEM;
	*t = (struct loop_timer){.loop = l, .cb = cb, .ctx = ctx, .due_ms = -1};
	l->timers[l->ntimers++] = t;
	*out = t;
	return 0;
}

void loop_timer_arm(struct loop_timer *t, int64_t delay_ms)
{
	if (delay_ms < 0)
		delay_ms = 0;
	t->due_ms = mono_ms() + delay_ms;
}

void loop_timer_disarm(struct loop_timer *t)
{
	t->due_ms = -1;
}

static void timers_reap(struct loop *l)
{
	size_t j = 0;

	for (size_t i = 0; i < l->ntimers; i++) {
		if (l->timers[i]->dead)
			free(l->timers[i]);
		else
			l->timers[j++] = l->timers[i];
	}
	l->ntimers = j;
}

void loop_timer_free(struct loop_timer *t)
{
	if (t == NULL)
		return;
	t->dead = true;
	t->due_ms = -1;
	if (!t->loop->in_timers)
		timers_reap(t->loop);
}

static int next_timeout(struct loop *l)
{
	int64_t best = -1;

	for (size_t i = 0; i < l->ntimers; i++) {
		int64_t d = l->timers[i]->due_ms;

		if (d < 0)
			continue;
		if (best < 0 || d < best)
			best = d;
	}
	if (best < 0)
		return -1;
	best -= mono_ms();
	if (best < 0)
		return 0;
	return best > 60000 ? 60000 : (int)best;
}

static void run_timers(struct loop *l)
{
	l->in_timers = true;
	/* ntimers may grow while callbacks add timers; new ones are not due yet
	 * unless armed with 0, which then runs on this pass: harmless. */
	for (size_t i = 0; i < l->ntimers; i++) {
		struct loop_timer *t = l->timers[i];

		if (t->dead || t->due_ms < 0 || t->due_ms > l->now_ms)
			continue;
		t->due_ms = -1;
		t->cb(l, t, t->ctx);
	}
	l->in_timers = false;
	timers_reap(l);
}

int loop_run(struct loop *l)
{
	struct epoll_event evs[128];

	l->stop = false;
	while (!l->stop) {
		int n;

		if (l->before_wait != NULL)
			l->before_wait(l->before_wait_ctx);
		n = epoll_wait(l->epfd, evs, 128, next_timeout(l));

		if (n < 0 && errno != EINTR)
			return -errno;
		l->now_ms = mono_ms();
		l->batch++;
		for (int i = 0; i < n; i++) {
			int fd = evs[i].data.fd;
			struct fdw *w;

			/* An fd closed earlier in this batch and its number reused
			 * by a new registration (accept, a libcurl socket) must not
			 * get the old fd's event: a stale EPOLLHUP closed brand-new
			 * admin connections under load. */
			if ((size_t)fd >= l->nfds || (w = l->fds[fd]) == NULL || !w->live ||
			    w->born == l->batch)
				continue;
			w->cb(l, fd, evs[i].events, w->ctx);
		}
		l->now_ms = mono_ms();
		run_timers(l);
	}
	return 0;
}

void loop_set_before_wait(struct loop *l, void (*cb)(void *ctx), void *ctx)
{
	l->before_wait = cb;
	l->before_wait_ctx = ctx;
}

void loop_stop(struct loop *l)
{
	l->stop = true;
}

int64_t loop_now_ms(struct loop *l)
{
	return l->now_ms;
}
