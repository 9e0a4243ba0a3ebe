/* offload.c — one worker thread for the admin reads that can take long
 * (audit.export loads every leaf of the tree and a tenant's records;
 * audit.list reads up to 10,000 records), so they never stall the loop
 * and with it every token request.
 *
 * A job's run() executes on the worker and may touch only what it owns
 * and the audit store's read side (serialised by the store's read lock);
 * its done() executes back on the loop thread, where it answers the
 * request. Jobs run one at a time, in the order submitted. */
#include "broker_int.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

static void *worker_main(void *arg)
{
	struct broker *b = arg;

	pthread_setname_np(pthread_self(), "admin-reads");
	pthread_mutex_lock(&b->off_lock);
	for (;;) {
		struct offload_job *j;
		uint64_t one = 1;

		while (b->off_queue == NULL && !b->off_stop)
			pthread_cond_wait(&b->off_wake, &b->off_lock);
		if (b->off_stop)
			break;
		j = b->off_queue;
		b->off_queue = j->next;
		pthread_mutex_unlock(&b->off_lock);

		j->run(j);

		pthread_mutex_lock(&b->off_lock);
		j->next = b->off_done;
		b->off_done = j;
		if (write(b->off_efd, &one, sizeof(one)) < 0) {
			/* counter saturated: it is readable anyway */
		}
	}
	pthread_mutex_unlock(&b->off_lock);
	return NULL;
}

/* Loop thread: hand finished jobs to their done(), oldest first. */
static void on_done(struct loop *l, int fd, uint32_t events, void *ctx)
{
	struct broker *b = ctx;
	struct offload_job *list, *rev = NULL;
	uint64_t n;

	(void)l;
	(void)events;
	if (read(fd, &n, sizeof(n)) < 0) {
		/* EAGAIN: another wakeup already drained it */
	}
	pthread_mutex_lock(&b->off_lock);
	list = b->off_done;
	b->off_done = NULL;
	pthread_mutex_unlock(&b->off_lock);
	while (list != NULL) {
		struct offload_job *j = list;

		list = j->next;
		j->next = rev;
		rev = j;
	}
	while (rev != NULL) {
		struct offload_job *j = rev;

		rev = j->next;
		j->done(j, false);
	}
}

int offload_init(struct broker *b)
{
	int rc;

	b->off_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (b->off_efd < 0)
		return -errno;
	pthread_mutex_init(&b->off_lock, NULL);
	pthread_cond_init(&b->off_wake, NULL);
	rc = loop_fd_add(b->loop, b->off_efd, EPOLLIN, on_done, b);
	if (rc < 0)
		return rc;
	rc = -pthread_create(&b->off_thread, NULL, worker_main, b);
	if (rc < 0) {
		loop_fd_del(b->loop, b->off_efd);
		return rc;
	}
	b->off_started = true;
	return 0;
}

void offload_submit(struct broker *b, struct offload_job *j)
{
	struct offload_job **tail;

	j->next = NULL;
	pthread_mutex_lock(&b->off_lock);
	for (tail = &b->off_queue; *tail != NULL; tail = &(*tail)->next)
		;
	*tail = j;
	pthread_cond_signal(&b->off_wake);
	pthread_mutex_unlock(&b->off_lock);
}

static void cancel_all(struct offload_job *list)
{
	while (list != NULL) {
		struct offload_job *j = list;

		list = j->next;
		j->done(j, true);
	}
}

void offload_fini(struct broker *b)
{
	if (b->off_started) {
		pthread_mutex_lock(&b->off_lock);
		b->off_stop = true;
		pthread_cond_signal(&b->off_wake);
		pthread_mutex_unlock(&b->off_lock);
		/* a job that is running finishes first */
		pthread_join(b->off_thread, NULL);
		b->off_started = false;
		cancel_all(b->off_queue);
		cancel_all(b->off_done);
		b->off_queue = b->off_done = NULL;
		if (b->loop != NULL)
			loop_fd_del(b->loop, b->off_efd);
		pthread_cond_destroy(&b->off_wake);
		pthread_mutex_destroy(&b->off_lock);
	}
	if (b->off_efd >= 0)
		close(b->off_efd);
	b->off_efd = -1;
}
