/* loop.h — the broker's one event loop (epoll + timers), private to broker/.
 *
 * Everything in custodyd that waits — listening sockets, clients, libcurl's
 * sockets, the audit writer's completion fd, signals (signalfd) — is a file
 * descriptor registered here; everything that waits for time is a timer.
 * Callbacks run on the loop thread only.
 */
#ifndef CUSTODY_BROKER_LOOP_H
#define CUSTODY_BROKER_LOOP_H

#include <stdint.h>
#include <sys/epoll.h>

struct loop;
struct loop_timer;

typedef void (*loop_fd_cb)(struct loop *l, int fd, uint32_t events, void *ctx);
typedef void (*loop_timer_cb)(struct loop *l, struct loop_timer *t, void *ctx);

/* 0 or -errno. */
int loop_new(struct loop **out);
/* Frees the loop; fds are not closed, timers are freed. */
void loop_free(struct loop *l);

/* events: EPOLLIN / EPOLLOUT (level-triggered). 0, -EEXIST, -ENOMEM, -errno. */
int loop_fd_add(struct loop *l, int fd, uint32_t events, loop_fd_cb cb, void *ctx);
int loop_fd_mod(struct loop *l, int fd, uint32_t events);
/* Safe to call from inside any callback, for any fd. */
int loop_fd_del(struct loop *l, int fd);

/* Timers are one-shot; re-arm in the callback for periodic work. */
int loop_timer_new(struct loop *l, loop_timer_cb cb, void *ctx, struct loop_timer **out);
/* Fire after delay_ms from now (monotonic); replaces any earlier arming. */
void loop_timer_arm(struct loop_timer *t, int64_t delay_ms);
void loop_timer_disarm(struct loop_timer *t);
/* Safe to call from inside the timer's own callback. */
void loop_timer_free(struct loop_timer *t);

/* cb(ctx) runs once per iteration, after its callbacks and timers, right
 * before the loop waits again (Redis's beforeSleep): where work batched
 * over an iteration is flushed. One per loop; NULL removes it. */
void loop_set_before_wait(struct loop *l, void (*cb)(void *ctx), void *ctx);

/* Run until loop_stop(). Returns 0 or -errno from epoll_wait. */
int loop_run(struct loop *l);
void loop_stop(struct loop *l);
/* Monotonic milliseconds, refreshed once per iteration. */
int64_t loop_now_ms(struct loop *l);

#endif
