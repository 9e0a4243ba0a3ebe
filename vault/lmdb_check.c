/* lmdb_check.c — a structural check of data.mdb before LMDB maps it.
 *
 * LMDB keeps no checksums and trusts its pages: a flipped byte in a page
 * header makes it read past the page or the file and die of SIGBUS or
 * SIGFPE. custody's promise for a tampered vault is a clean error, so
 * before opening, with the vault lock held (no writer can be active), we
 * walk the tree LMDB will use: the newer meta page, the free and main
 * databases, the named databases in the main one, every branch, leaf and
 * overflow page they reach. Anything out of bounds is -EBADMSG.
 *
 * Layout: LMDB 0.9 on a 64-bit host (the only kind custody builds for):
 *   page header 16: pgno u64 @0, flags u16 @10, lower u16 @12, upper u16 @14
 *                   (overflow pages: page count u32 @12)
 *   node 8 + key + data: lo u16, hi u16, flags u16, ksize u16
 *   meta @16: magic u32 @0, psize (free db md_pad) @24, free db @24,
 *             main db @72 (48 bytes each, md_root @40), last_pg @120,
 *             txnid @128
 * Record contents are authenticated elsewhere; this only keeps LMDB from
 * faulting on a damaged structure. */
#include "vault_private.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define P_BRANCH 0x01
#define P_LEAF 0x02
#define P_OVERFLOW 0x04
#define F_BIGDATA 0x01
#define F_SUBDATA 0x02
#define F_DUPDATA 0x04
#define HDR 16
#define NODESZ 8
#define DBSZ 48
#define P_INVALID UINT64_MAX
#define MAX_DEPTH 32

struct walk {
	int fd;
	uint32_t psize;
	uint64_t last_pg;
	uint8_t *seen; /* one bit per page */
	uint8_t *page;
};

static uint16_t u16(const uint8_t *p)
{
	return (uint16_t)(p[0] | (p[1] << 8));
}

static uint32_t u32(const uint8_t *p)
{
	return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
	       ((uint32_t)p[3] << 24);
}

static uint64_t u64(const uint8_t *p)
{
	return (uint64_t)u32(p) | ((uint64_t)u32(p + 4) << 32);
}

static int mark(struct walk *w, uint64_t pg)
{
	if (pg < 2 || pg > w->last_pg)
		return -EBADMSG;
	if (w->seen[pg / 8] & (1u << (pg % 8)))
		return -EBADMSG; /* a page reached twice: a cycle or shared page */
	w->seen[pg / 8] |= (uint8_t)(1u << (pg % 8));
	return 0;
}

static int read_page(struct walk *w, uint64_t pg, uint8_t *buf)
{
	if (pread(w->fd, buf, w->psize, (off_t)(pg * w->psize)) != (ssize_t)w->psize)
		return -EBADMSG;
	if (u64(buf) != pg)
		return -EBADMSG;
	return 0;
}

static int walk_tree(struct walk *w, uint64_t root, int depth, bool main_db);

static int check_overflow(struct walk *w, uint64_t pg, uint64_t dsize)
{
	uint8_t *buf = malloc(w->psize);
	uint32_t pages;
	int rc;

	if (buf == NULL)
		return -ENOMEM;
	rc = read_page(w, pg, buf);
	if (rc == 0 && !(u16(buf + 10) & P_OVERFLOW))
		rc = -EBADMSG;
	if (rc == 0) {
		pages = u32(buf + 12);
		if (pages == 0 || pg + pages - 1 > w->last_pg ||
		    dsize > (uint64_t)pages * w->psize - HDR)
			rc = -EBADMSG;
		for (uint32_t i = 0; rc == 0 && i < pages; i++)
			rc = mark(w, pg + i);
	}
	free(buf);
	return rc;
}

static int walk_tree(struct walk *w, uint64_t root, int depth, bool main_db)
{
	uint8_t *buf;
	uint16_t flags, lower, upper;
	size_t n;
	int rc;

	if (root == P_INVALID)
		return 0; /* empty database */
	if (depth > MAX_DEPTH)
		return -EBADMSG;
	rc = mark(w, root);
	if (rc < 0)
		return rc;
	buf = malloc(w->psize);
	if (buf == NULL)
		return -ENOMEM;
	rc = read_page(w, root, buf);
	if (rc < 0)
		goto out;
	flags = u16(buf + 10);
	lower = u16(buf + 12);
	upper = u16(buf + 14);
	rc = -EBADMSG;
	if (((flags & P_BRANCH) != 0) == ((flags & P_LEAF) != 0) ||
	    (flags & ~(P_BRANCH | P_LEAF | 0x10)) != 0)
		goto out;
	if (lower < HDR || (lower & 1) || lower > upper || upper > w->psize)
		goto out;
	n = (size_t)(lower - HDR) / 2;
	if (n == 0 && (flags & P_BRANCH))
		goto out;
	for (size_t i = 0; i < n; i++) {
		uint16_t ptr = u16(buf + HDR + 2 * i);
		const uint8_t *node;
		uint16_t nflags, ksize;
		uint64_t dsize;

		if (ptr < upper || (size_t)ptr + NODESZ > w->psize)
			goto out;
		node = buf + ptr;
		nflags = u16(node + 4);
		ksize = u16(node + 6);
		if ((size_t)ptr + NODESZ + ksize > w->psize)
			goto out;
		if (flags & P_BRANCH) {
			uint64_t child = (uint64_t)u16(node) | ((uint64_t)u16(node + 2) << 16) |
					 ((uint64_t)nflags << 32);

			if (walk_tree(w, child, depth + 1, main_db) < 0)
				goto out;
			continue;
		}
		dsize = (uint64_t)u16(node) | ((uint64_t)u16(node + 2) << 16);
		if (nflags & ~(F_BIGDATA | F_SUBDATA))
			goto out; /* custody uses no duplicate-key databases */
		if (nflags & F_BIGDATA) {
			if ((size_t)ptr + NODESZ + ksize + 8 > w->psize ||
			    check_overflow(w, u64(node + NODESZ + ksize), dsize) < 0)
				goto out;
			continue;
		}
		if ((size_t)ptr + NODESZ + ksize + dsize > w->psize)
			goto out;
		if (nflags & F_SUBDATA) {
			/* a named database: only in the main database */
			if (!main_db || dsize != DBSZ ||
			    walk_tree(w, u64(node + NODESZ + ksize + 40), depth + 1, false) < 0)
				goto out;
		}
	}
	rc = 0;
out:
	free(buf);
	return rc;
}

int vault_lmdb_check(const char *dir)
{
	char *path = util_path_join(dir, VAULT_DATA);
	struct walk w = {.fd = -1};
	uint8_t m[2][160];
	struct stat st;
	const uint8_t *meta;
	int rc = 0;

	if (path == NULL)
		return -ENOMEM;
	w.fd = open(path, O_RDONLY | O_CLOEXEC);
	free(path);
	if (w.fd < 0)
		return errno == ENOENT ? 0 : -errno;
	if (fstat(w.fd, &st) < 0) {
		rc = -errno;
		goto out;
	}
	if (st.st_size == 0)
		goto out; /* new: LMDB initialises it */
	rc = -EBADMSG;
	for (int i = 0; i < 2; i++) {
		uint32_t ps;

		if (pread(w.fd, m[i], sizeof(m[i]), (off_t)i * w.psize) != (ssize_t)sizeof(m[i]))
			goto out;
		ps = u32(m[i] + HDR + 24);
		if (u32(m[i] + HDR) != 0xBEEFC0DEu || ps < 512 || ps > 65536 ||
		    (ps & (ps - 1)) != 0 || (i == 1 && ps != w.psize) ||
		    (uint64_t)st.st_size < 2 * (uint64_t)ps)
			goto out;
		w.psize = ps;
	}
	/* LMDB uses the meta page with the higher transaction id */
	meta = (u64(m[0] + HDR + 128) < u64(m[1] + HDR + 128) ? m[1] : m[0]) + HDR;
	w.last_pg = u64(meta + 120);
	if (w.last_pg < 1 || w.last_pg >= (uint64_t)st.st_size / w.psize)
		goto out;
	w.seen = calloc(w.last_pg / 8 + 1, 1);
	if (w.seen == NULL) {
		rc = -ENOMEM;
		goto out;
	}
	rc = walk_tree(&w, u64(meta + 24 + 40), 0, false);
	if (rc == 0)
		rc = walk_tree(&w, u64(meta + 72 + 40), 0, true);
	if (rc == -ENOMEM)
		goto out;
	if (rc < 0)
		rc = -EBADMSG;
out:
	free(w.seen);
	close(w.fd);
	return rc;
}
