/* peer.c — who is on the other end of a socket, from the kernel's word
 * only (SO_PEERCRED, SO_PEERGROUPS, SCM_CREDENTIALS, /proc), and which
 * principal that is.
 *
 * The identity belongs to the process that connected and is resolved
 * once, at accept: uid, gid, groups, pid, a pidfd of that very process
 * (SO_PEERPIDFD; else pidfd_open, with the start time as a second check),
 * and the executable as a file — device and inode of /proc/<pid>/exe —
 * never as the path text a process in another mount namespace shows. An
 * `exe` match stats the configured path in custodyd's own namespace and
 * compares device and inode. Every chunk read from the socket carries its
 * sender's credentials (SO_PASSCRED), and a chunk another process sent on
 * an inherited or passed socket is refused (server.c). Before a token
 * leaves, the process must still be there and, for principals that match
 * on the executable, still run the same file.
 *
 * The SHA-256 of the executable, where a principal asks for it, is read
 * from the file opened at accept, on the offload worker (a large file
 * would stall the loop), up to limits.max_exe_bytes. Results are cached
 * by (dev, inode, size, mtime, ctime): mtime can be set back with
 * utime(2), ctime cannot, so a file rewritten in place is hashed again.
 */
#include "broker_int.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <sodium.h>

#define EXE_CACHE_SLOTS 64

#ifndef SO_PEERPIDFD
#define SO_PEERPIDFD 77 /* Linux 6.5 */
#endif

struct exe_hash {
	dev_t dev;
	ino_t ino;
	struct timespec mtime, ctime;
	off_t size;
	uint8_t sha256[32];
	bool used;
};

/* A peer waiting for a hash, and whom to tell once it is in. */
struct hash_waiter {
	struct peer *p;
	void (*done)(void *ctx, bool cancelled);
	void *ctx;
};

/* A hash on the offload worker, and the peers waiting for it (one job per
 * file however many connections run it). */
struct hash_job {
	struct offload_job job;
	struct hash_job *next_inflight;
	struct exe_hash key;
	int fd;
	int rc;
	struct hash_waiter *waiters;
	size_t n_waiters;
};

static struct hash_job *hash_inflight;

static struct exe_hash exe_cache[EXE_CACHE_SLOTS];
static unsigned exe_cache_next;

void broker_user_name(uid_t uid, char out[static 64])
{
	struct passwd pw, *res = NULL;
	char buf[4096];

	if (getpwuid_r(uid, &pw, buf, sizeof(buf), &res) == 0 && res != NULL &&
	    strlen(pw.pw_name) < 64)
		snprintf(out, 64, "%s", pw.pw_name);
	else
		snprintf(out, 64, "uid:%u", (unsigned)uid);
}

/* Field 22 of /proc/<pid>/stat, counted after the ')' that ends comm
 * (comm itself may hold spaces and parentheses). */
static uint64_t proc_start_time(pid_t pid)
{
	char path[64], buf[1024];
	unsigned long long st = 0;
	const char *p;
	ssize_t n;
	int fd, field;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	p = strrchr(buf, ')');
	if (p == NULL)
		return 0;
	/* after ')' comes " S ..." : field 3 is the state */
	p++;
	for (field = 2; field < 22 && *p != '\0'; p++)
		if (*p == ' ')
			field++;
	if (field != 22 || sscanf(p, "%llu", &st) != 1)
		return 0;
	return (uint64_t)st;
}

/* The pidfd is taken before the start time is read, so both name the
 * same process unless the pid was recycled before we got here (only the
 * pidfd_open fallback has that window; SO_PEERPIDFD has none). */
static void peer_open_pidfd(int sock, struct peer *p)
{
	socklen_t len = sizeof(p->pidfd);
	long fd;

	if (getsockopt(sock, SOL_SOCKET, SO_PEERPIDFD, &p->pidfd, &len) == 0 &&
	    len == sizeof(p->pidfd) && p->pidfd >= 0) {
		p->has_pidfd = true;
		return;
	}
	fd = syscall(SYS_pidfd_open, p->pid, 0);
	if (fd >= 0) {
		p->pidfd = (int)fd;
		p->has_pidfd = true;
	}
}

static bool pidfd_exited(int pidfd);

/* The executable as a file: fstat of /proc/<pid>/exe (the file the
 * process runs, whatever namespace its path text comes from). The fd is
 * kept only while a hash may be needed (peer_resolve). */
static void peer_read_exe(struct peer *p)
{
	char path[64], exe[PATH_MAX];
	struct stat st;
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/exe", (int)p->pid);
	n = readlink(path, exe, sizeof(exe) - 1);
	if (n > 0) {
		exe[n] = '\0';
		p->exe = strdup(exe);
	}
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return;
	}
	/* the pid must still be the process that connected (the pidfd was
	 * taken first; without one, the start time says so) */
	if (p->start_time == 0 ||
	    (p->has_pidfd ? pidfd_exited(p->pidfd) : proc_start_time(p->pid) != p->start_time)) {
		close(fd);
		return;
	}
	p->have_exe_id = true;
	p->exe_dev = st.st_dev;
	p->exe_ino = st.st_ino;
	p->exe_size = st.st_size;
	p->exe_mtime = st.st_mtim;
	p->exe_ctime = st.st_ctim;
	p->exe_fd = fd;
}

int peer_from_socket(int fd, struct peer *p)
{
	struct ucred cr;
	socklen_t len = sizeof(cr);
	gid_t *groups = NULL;
	int one = 1;

	*p = (struct peer){.exe_fd = -1};
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) < 0)
		return -errno;
	/* every chunk read from now on says who sent it (data queued before
	 * accept carries credentials already) */
	if (setsockopt(fd, SOL_SOCKET, SO_PASSCRED, &one, sizeof(one)) < 0)
		return -errno;
	p->pid = cr.pid;
	peer_open_pidfd(fd, p);
	p->uid = cr.uid;
	p->gid = cr.gid;
	len = 64 * sizeof(gid_t);
	for (;;) {
		gid_t *ng = realloc(groups, len ? len : sizeof(gid_t));

		if (ng == NULL) {
			free(groups);
			peer_clear(p);
			return -ENOMEM;
		}
		groups = ng;
		if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &len) == 0)
			break;
		if (errno != ERANGE || len > 65536 * sizeof(gid_t)) {
			/* No groups known: match on primary uid/gid only. */
			len = 0;
			break;
		}
	}
	p->groups = groups;
	p->n_groups = len / sizeof(gid_t);
	p->start_time = proc_start_time(p->pid);
	peer_read_exe(p);
	broker_user_name(p->uid, p->user);
	return 0;
}

void peer_clear(struct peer *p)
{
	if (p->has_pidfd)
		close(p->pidfd);
	if (p->exe_fd >= 0)
		close(p->exe_fd);
	json_decref(p->json);
	free(p->json_canon);
	free(p->groups);
	free(p->exe);
	*p = (struct peer){.exe_fd = -1};
}

/* A pidfd turns readable once its process has exited. */
static bool pidfd_exited(int pidfd)
{
	struct pollfd pfd = {.fd = pidfd, .events = POLLIN};

	return poll(&pfd, 1, 0) != 0;
}

/* Does the pid still run the file seen at accept? An exec of another
 * program keeps pid, start time and pidfd: only the file tells. */
static bool peer_same_exe(const struct peer *p)
{
	char path[64];
	struct stat st;

	if (!p->have_exe_id)
		return false;
	snprintf(path, sizeof(path), "/proc/%d/exe", (int)p->pid);
	return stat(path, &st) == 0 && st.st_dev == p->exe_dev && st.st_ino == p->exe_ino;
}

int peer_check_conn(const struct peer *p, int sock, bool same_exe)
{
	struct pollfd pfd[2] = {{.fd = sock, .events = POLLIN},
				{.fd = p->has_pidfd ? p->pidfd : -1, .events = POLLIN}};
	int n = poll(pfd, 2, 0);

	/* a half-closed client (it shut down its writing side and still
	 * reads) is not gone: only POLLHUP/POLLERR say so */
	if (n < 0)
		return -EPIPE;
	if (pfd[0].revents & (POLLHUP | POLLERR))
		return -EPIPE;
	if (p->start_time == 0)
		return -ESRCH;
	if (p->has_pidfd ? pfd[1].revents != 0 : proc_start_time(p->pid) != p->start_time)
		return -ESRCH;
	/* checked after the pidfd: the pid still names the same process */
	if (same_exe && !peer_same_exe(p))
		return -ESRCH;
	return 0;
}

ssize_t peer_recv(int fd, void *buf, size_t len, struct ucred *sender, bool *have)
{
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(sizeof(struct ucred)) + CMSG_SPACE(16 * sizeof(int))];
	} ctl;
	struct iovec iov = {.iov_base = buf, .iov_len = len};
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1,
			    .msg_control = ctl.buf, .msg_controllen = sizeof(ctl.buf)};
	ssize_t n;

	*have = false;
	n = recvmsg(fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
	if (n < 0)
		return -errno;
	for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm != NULL; cm = CMSG_NXTHDR(&mh, cm)) {
		if (cm->cmsg_level != SOL_SOCKET)
			continue;
		if (cm->cmsg_type == SCM_CREDENTIALS &&
		    cm->cmsg_len == CMSG_LEN(sizeof(struct ucred))) {
			memcpy(sender, CMSG_DATA(cm), sizeof(*sender));
			*have = true;
		} else if (cm->cmsg_type == SCM_RIGHTS) {
			/* nobody passes us descriptors: close what came */
			size_t nfd = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);

			for (size_t i = 0; i < nfd; i++) {
				int pfd;

				memcpy(&pfd, CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
				close(pfd);
			}
		}
	}
	return n;
}

bool peer_sent_by(const struct peer *p, const struct ucred *sender, bool have)
{
	/* pid 0: a process custodyd cannot see (another pid namespace) */
	return have && p->pid != 0 && sender->pid == p->pid && sender->uid == p->uid &&
	       sender->gid == p->gid;
}

bool peer_in_group(const struct peer *p, gid_t g)
{
	if (p->gid == g)
		return true;
	for (size_t i = 0; i < p->n_groups; i++)
		if (p->groups[i] == g)
			return true;
	return false;
}

/* Everything a principal checks except the executable's hash. */
static bool match_ids(const struct peer *p, const struct principal_match *m)
{
	if (m->has_uid && p->uid != m->uid)
		return false;
	if (m->has_user && p->uid != m->user_uid)
		return false;
	if (m->has_gid && p->gid != m->gid)
		return false;
	if (m->has_group && !peer_in_group(p, m->group_gid))
		return false;
	if (m->exe != NULL) {
		struct stat st;

		/* the configured file as custodyd sees it, against the file
		 * the process runs: a bind mount in the caller's private
		 * mount namespace changes the path text, never the inode */
		if (!p->have_exe_id || stat(m->exe, &st) < 0 || st.st_dev != p->exe_dev ||
		    st.st_ino != p->exe_ino)
			return false;
	}
	return true;
}

static bool match_one(struct peer *p, const struct principal_match *m)
{
	if (!match_ids(p, m))
		return false;
	if (m->has_exe_sha256) {
		if (p->hash != PEER_HASH_DONE)
			return false;
		if (sodium_memcmp(p->exe_sha256, m->exe_sha256, 32) != 0)
			return false;
	}
	return true;
}

int peer_match_principal(struct peer *p, const struct broker_config *c)
{
	for (size_t i = 0; i < c->n_principals; i++)
		if (match_one(p, &c->principals[i].match))
			return (int)i;
	return -1;
}

/* ---- hashing the executable --------------------------------------------- */

static bool cache_key_eq(const struct exe_hash *e, const struct peer *p)
{
	return e->used && e->dev == p->exe_dev && e->ino == p->exe_ino && e->size == p->exe_size &&
	       e->mtime.tv_sec == p->exe_mtime.tv_sec && e->mtime.tv_nsec == p->exe_mtime.tv_nsec &&
	       e->ctime.tv_sec == p->exe_ctime.tv_sec && e->ctime.tv_nsec == p->exe_ctime.tv_nsec;
}

static void hash_set(struct peer *p, int rc, const uint8_t sha[32])
{
	if (p->exe_fd >= 0) {
		close(p->exe_fd);
		p->exe_fd = -1;
	}
	if (rc < 0) {
		p->hash = PEER_HASH_FAILED;
		p->hash_err = rc;
		return;
	}
	memcpy(p->exe_sha256, sha, 32);
	p->hash = PEER_HASH_DONE;
}

/* Worker thread: only the job's own fd and buffer. */
static void hash_run(struct offload_job *job)
{
	struct hash_job *j = (struct hash_job *)job;
	crypto_hash_sha256_state h;
	uint8_t buf[65536];
	uint64_t total = 0;

	crypto_hash_sha256_init(&h);
	j->rc = 0;
	for (;;) {
		ssize_t n = read(j->fd, buf, sizeof(buf));

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			j->rc = -errno;
			break;
		}
		if (n == 0)
			break;
		total += (uint64_t)n;
		crypto_hash_sha256_update(&h, buf, (unsigned long long)n);
	}
	/* a file that changed size under us is not the file we keyed */
	if (j->rc == 0 && total != (uint64_t)j->key.size)
		j->rc = -EAGAIN;
	crypto_hash_sha256_final(&h, j->key.sha256);
	sodium_memzero(&h, sizeof(h));
}

static void hash_done(struct offload_job *job, bool cancelled)
{
	struct hash_job *j = (struct hash_job *)job;

	for (struct hash_job **pp = &hash_inflight; *pp != NULL; pp = &(*pp)->next_inflight)
		if (*pp == j) {
			*pp = j->next_inflight;
			break;
		}
	if (!cancelled && j->rc == 0) {
		struct exe_hash *slot = &exe_cache[exe_cache_next++ % EXE_CACHE_SLOTS];

		*slot = j->key;
	}
	for (size_t i = 0; i < j->n_waiters; i++) {
		struct hash_waiter *w = &j->waiters[i];

		/* the waiter's owner keeps the peer alive until done runs */
		hash_set(w->p, cancelled ? -ECANCELED : j->rc, j->key.sha256);
		if (j->rc < 0 && !cancelled)
			broker_log("cannot hash the executable of pid %d (%s): %s", (int)w->p->pid,
				   w->p->exe ? w->p->exe : "?", strerror(-j->rc));
		w->done(w->ctx, cancelled);
	}
	close(j->fd);
	free(j->waiters);
	free(j);
}

/* Could a principal asking for exe_sha256 match p once hashed? */
static bool peer_wants_hash(const struct peer *p, const struct broker_config *cfg)
{
	for (size_t i = 0; i < cfg->n_principals; i++) {
		const struct principal_match *m = &cfg->principals[i].match;

		if (m->has_exe_sha256 && match_ids(p, m))
			return true;
	}
	return false;
}

bool peer_resolve(struct broker *b, struct peer *p, bool admin,
		  void (*done)(void *ctx, bool cancelled), void *ctx)
{
	struct hash_job *j;
	struct hash_waiter *w;

	if (admin || !p->have_exe_id || p->exe_fd < 0 || !peer_wants_hash(p, b->cfg)) {
		if (p->exe_fd >= 0) {
			close(p->exe_fd);
			p->exe_fd = -1;
		}
		return false;
	}
	for (unsigned i = 0; i < EXE_CACHE_SLOTS; i++)
		if (cache_key_eq(&exe_cache[i], p)) {
			hash_set(p, 0, exe_cache[i].sha256);
			return false;
		}
	if ((uint64_t)p->exe_size > b->cfg->limits.max_exe_bytes) {
		broker_log("executable of pid %d (%s) not hashed: %lld bytes, limits.max_exe_bytes is %llu",
			   (int)p->pid, p->exe ? p->exe : "?", (long long)p->exe_size,
			   (unsigned long long)b->cfg->limits.max_exe_bytes);
		hash_set(p, -E2BIG, NULL);
		return false;
	}
	/* the same file already hashing: wait for that job */
	for (j = hash_inflight; j != NULL; j = j->next_inflight)
		if (cache_key_eq(&j->key, p))
			break;
	if (j == NULL) {
		j = calloc(1, sizeof(*j));
		if (j == NULL) {
			hash_set(p, -ENOMEM, NULL);
			return false;
		}
		j->fd = p->exe_fd;
		p->exe_fd = -1;
		j->key = (struct exe_hash){.dev = p->exe_dev, .ino = p->exe_ino,
					   .mtime = p->exe_mtime, .ctime = p->exe_ctime,
					   .size = p->exe_size, .used = true};
		j->job = (struct offload_job){.run = hash_run, .done = hash_done};
		j->next_inflight = hash_inflight;
		hash_inflight = j;
		offload_submit(b, &j->job);
	}
	w = realloc(j->waiters, (j->n_waiters + 1) * sizeof(*w));
	if (w == NULL) {
		hash_set(p, -ENOMEM, NULL);
		return false;
	}
	j->waiters = w;
	j->waiters[j->n_waiters++] = (struct hash_waiter){.p = p, .done = done, .ctx = ctx};
	if (p->exe_fd >= 0) {
		close(p->exe_fd);
		p->exe_fd = -1;
	}
	p->hash = PEER_HASH_PENDING;
	return true;
}

void peer_cache_free(void)
{
	memset(exe_cache, 0, sizeof(exe_cache));
}

json_t *peer_json_borrow(struct peer *p)
{
	/* built once per connection: every record of it carries the same
	 * object (records are serialised on the loop thread, so sharing the
	 * reference count is safe) */
	if (p->json == NULL)
		p->json = json_pack("{s:I,s:I,s:I,s:s?}", "uid", (json_int_t)p->uid, "gid",
				    (json_int_t)p->gid, "pid", (json_int_t)p->pid, "exe", p->exe);
	return p->json;
}

const char *peer_json_canon(struct peer *p, size_t *len)
{
	if (p->json_canon == NULL && peer_json_borrow(p) != NULL)
		p->json_canon = audit_canonical_json(p->json, &p->json_canon_len);
	*len = p->json_canon_len;
	return p->json_canon;
}

json_t *peer_json(struct peer *p)
{
	return json_incref(peer_json_borrow(p));
}
