/* merkle.c — RFC 6962 / RFC 9162 tree hashes, compact ranges, proofs. */
#include "merkle.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

void merkle_leaf_hash(const void *data, size_t len, uint8_t out[static MERKLE_HASH])
{
	crypto_hash_sha256_state st;
	static const uint8_t zero = 0x00;

	crypto_hash_sha256_init(&st);
	crypto_hash_sha256_update(&st, &zero, 1);
	crypto_hash_sha256_update(&st, data, len);
	crypto_hash_sha256_final(&st, out);
}

void merkle_node_hash(const uint8_t l[static MERKLE_HASH], const uint8_t r[static MERKLE_HASH],
		      uint8_t out[static MERKLE_HASH])
{
	uint8_t buf[1 + 2 * MERKLE_HASH];

	buf[0] = 0x01;
	memcpy(buf + 1, l, MERKLE_HASH);
	memcpy(buf + 1 + MERKLE_HASH, r, MERKLE_HASH);
	crypto_hash_sha256(out, buf, sizeof(buf));
}

unsigned merkle_range_count(uint64_t size)
{
	return (unsigned)__builtin_popcountll(size);
}

void merkle_range_init(struct merkle_range *r)
{
	memset(r, 0, sizeof(*r));
}

void merkle_range_append(struct merkle_range *r, const uint8_t leaf[static MERKLE_HASH])
{
	uint8_t h[MERKLE_HASH];
	uint64_t s = r->size;
	unsigned n = merkle_range_count(s);

	memcpy(h, leaf, MERKLE_HASH);
	/* each trailing one bit of the old size is a subtree of the new
	 * leaf's size: merge right to left */
	while (s & 1) {
		merkle_node_hash(r->node[n - 1], h, h);
		n--;
		s >>= 1;
	}
	memcpy(r->node[n], h, MERKLE_HASH);
	r->size++;
}

void merkle_range_root(const struct merkle_range *r, uint8_t out[static MERKLE_HASH])
{
	unsigned n = merkle_range_count(r->size);
	uint8_t h[MERKLE_HASH];

	if (n == 0) {
		crypto_hash_sha256(out, NULL, 0);
		return;
	}
	memcpy(h, r->node[n - 1], MERKLE_HASH);
	for (unsigned i = n - 1; i-- > 0;)
		merkle_node_hash(r->node[i], h, h);
	memcpy(out, h, MERKLE_HASH);
}

void merkle_tree_free(struct merkle_tree *t)
{
	for (unsigned i = 0; i < t->levels; i++)
		free(t->level[i]);
	memset(t, 0, sizeof(*t));
}

int merkle_tree_build(const uint8_t (*leaves)[MERKLE_HASH], uint64_t n, struct merkle_tree *t)
{
	struct merkle_tree nt = {.n = n};
	uint64_t len = n;

	for (;;) {
		unsigned k = nt.levels;

		nt.level[k] = malloc((len ? len : 1) * MERKLE_HASH);
		if (nt.level[k] == NULL) {
			merkle_tree_free(&nt);
			return -ENOMEM;
		}
		nt.len[k] = len;
		nt.levels++;
		if (k == 0) {
			if (n > 0)
				memcpy(nt.level[0], leaves, n * MERKLE_HASH);
		} else {
			/* an unpaired last node is promoted unchanged: this
			 * is the same tree as RFC 6962's split at the largest
			 * power of two */
			for (uint64_t i = 0; i < len; i++) {
				uint64_t a = 2 * i, b = 2 * i + 1;

				if (b < nt.len[k - 1])
					merkle_node_hash(nt.level[k - 1][a], nt.level[k - 1][b],
							 nt.level[k][i]);
				else
					memcpy(nt.level[k][i], nt.level[k - 1][a], MERKLE_HASH);
			}
		}
		if (len <= 1)
			break;
		len = (len + 1) / 2;
	}
	*t = nt;
	return 0;
}

void merkle_tree_root(const struct merkle_tree *t, uint8_t out[static MERKLE_HASH])
{
	if (t->n == 0)
		crypto_hash_sha256(out, NULL, 0);
	else
		memcpy(out, t->level[t->levels - 1][0], MERKLE_HASH);
}

/* MTH(D[start:end]) for a range the RFC recursion produces: it starts on a
 * multiple of the smallest power of two >= its length. */
static const uint8_t *tree_node(const struct merkle_tree *t, uint64_t start, uint64_t end)
{
	unsigned k = 0;

	while (((uint64_t)1 << k) < end - start)
		k++;
	return t->level[k][start >> k];
}

static uint64_t split_point(uint64_t n)
{
	uint64_t k = 1;

	while (k << 1 < n)
		k <<= 1;
	return k;
}

struct proof_buf {
	uint8_t (*h)[MERKLE_HASH];
	size_t n;
};

static void proof_push(struct proof_buf *p, const uint8_t *h)
{
	memcpy(p->h[p->n++], h, MERKLE_HASH);
}

/* PATH(m, D[start:end]); siblings from the leaf upwards. */
static void path_rec(const struct merkle_tree *t, uint64_t m, uint64_t start, uint64_t end,
		     struct proof_buf *p)
{
	uint64_t n = end - start, k;

	if (n <= 1)
		return;
	k = split_point(n);
	if (m < k) {
		path_rec(t, m, start, start + k, p);
		proof_push(p, tree_node(t, start + k, end));
	} else {
		path_rec(t, m - k, start + k, end, p);
		proof_push(p, tree_node(t, start, start + k));
	}
}

int merkle_tree_inclusion(const struct merkle_tree *t, uint64_t index,
			  uint8_t (**out)[MERKLE_HASH], size_t *count)
{
	struct proof_buf p = {0};

	if (index >= t->n)
		return -EINVAL;
	p.h = malloc(65 * MERKLE_HASH);
	if (p.h == NULL)
		return -ENOMEM;
	path_rec(t, index, 0, t->n, &p);
	*out = p.h;
	*count = p.n;
	return 0;
}

/* SUBPROOF(m, D[start:end], b) */
static void subproof_rec(const struct merkle_tree *t, uint64_t m, uint64_t start, uint64_t end,
			 bool b, struct proof_buf *p)
{
	uint64_t n = end - start, k;

	if (m == n) {
		if (!b)
			proof_push(p, tree_node(t, start, end));
		return;
	}
	k = split_point(n);
	if (m <= k) {
		subproof_rec(t, m, start, start + k, b, p);
		proof_push(p, tree_node(t, start + k, end));
	} else {
		subproof_rec(t, m - k, start + k, end, false, p);
		proof_push(p, tree_node(t, start, start + k));
	}
}

int merkle_tree_consistency(const struct merkle_tree *t, uint64_t m,
			    uint8_t (**out)[MERKLE_HASH], size_t *count)
{
	struct proof_buf p = {0};

	if (m == 0 || m > t->n)
		return -EINVAL;
	p.h = malloc(130 * MERKLE_HASH);
	if (p.h == NULL)
		return -ENOMEM;
	subproof_rec(t, m, 0, t->n, true, &p);
	*out = p.h;
	*count = p.n;
	return 0;
}

/* One step of RFC 9162 §2.1.3.2's inclusion check: fold the sibling into
 * r and move (fn, sn) up past it. Returns the levels climbed (one, more
 * where r was a right edge). */
static unsigned inclusion_step(const uint8_t sibling[static MERKLE_HASH], uint8_t r[static MERKLE_HASH],
			       uint64_t *fn, uint64_t *sn)
{
	unsigned up = 1;

	if ((*fn & 1) || *fn == *sn) {
		merkle_node_hash(sibling, r, r);
		while (!(*fn & 1) && *fn != 0) {
			*fn >>= 1;
			*sn >>= 1;
			up++;
		}
	} else {
		merkle_node_hash(r, sibling, r);
	}
	*fn >>= 1;
	*sn >>= 1;
	return up;
}

bool merkle_verify_inclusion(uint64_t index, uint64_t size, const uint8_t leaf[static MERKLE_HASH],
			     const uint8_t (*path)[MERKLE_HASH], size_t count,
			     const uint8_t root[static MERKLE_HASH])
{
	uint64_t fn = index, sn;
	uint8_t r[MERKLE_HASH];

	if (index >= size)
		return false;
	sn = size - 1;
	memcpy(r, leaf, MERKLE_HASH);
	for (size_t i = 0; i < count; i++) {
		if (sn == 0)
			return false;
		inclusion_step(path[i], r, &fn, &sn);
	}
	return sn == 0 && sodium_memcmp(r, root, MERKLE_HASH) == 0;
}

/* Remember the walk that just verified: its own states before step hit
 * (all of them when it did not stop early), then the remembered states
 * from step j on, which its remaining steps shared. */
static void memo_keep(struct merkle_memo *m, uint64_t size, const uint8_t root[static MERKLE_HASH],
		      const uint8_t (*path)[MERKLE_HASH], size_t count, size_t hit, size_t j,
		      const uint8_t (*node)[MERKLE_HASH], const uint64_t *fn, const uint8_t *level)
{
	if (hit < count) {
		memmove(m->node[hit], m->node[j], (count - hit) * MERKLE_HASH);
		memmove(&m->fn[hit], &m->fn[j], (count - hit) * sizeof(m->fn[0]));
		memmove(&m->level[hit], &m->level[j], count - hit);
	}
	memcpy(m->node, node, hit * MERKLE_HASH);
	memcpy(m->fn, fn, hit * sizeof(m->fn[0]));
	memcpy(m->level, level, hit);
	memcpy(m->path, path, count * MERKLE_HASH);
	m->count = count;
	m->size = size;
	memcpy(m->root, root, MERKLE_HASH);
	memset(m->at_level, 0, sizeof(m->at_level));
	for (size_t k = 0; k < count; k++)
		m->at_level[m->level[k]] = (uint8_t)(k + 1);
}

bool merkle_verify_inclusion_memo(struct merkle_memo *m, uint64_t index, uint64_t size,
				  const uint8_t leaf[static MERKLE_HASH],
				  const uint8_t (*path)[MERKLE_HASH], size_t count,
				  const uint8_t root[static MERKLE_HASH])
{
	uint8_t node[MERKLE_MEMO_MAX][MERKLE_HASH], level[MERKLE_MEMO_MAX];
	uint64_t fns[MERKLE_MEMO_MAX], fn = index, sn;
	uint8_t r[MERKLE_HASH];
	unsigned lv = 0;
	size_t i, j = 0;
	bool same;

	/* a longer path cannot verify (sn reaches 0 within 64 steps) */
	if (count > MERKLE_MEMO_MAX)
		return merkle_verify_inclusion(index, size, leaf, path, count, root);
	if (index >= size)
		return false;
	same = m->count > 0 && m->size == size && memcmp(m->root, root, MERKLE_HASH) == 0;
	sn = size - 1;
	memcpy(r, leaf, MERKLE_HASH);
	for (i = 0; i < count; i++) {
		if (sn == 0)
			return false;
		/* the state (level, fn, r) with sn = (size-1) >> level and the
		 * siblings still to come decide the rest of the walk */
		if (same && m->at_level[lv] != 0) {
			j = m->at_level[lv] - 1u;
			if (m->fn[j] == fn && m->count - j == count - i &&
			    memcmp(m->node[j], r, MERKLE_HASH) == 0 &&
			    memcmp(m->path[j], path[i], (count - i) * MERKLE_HASH) == 0)
				break;
		}
		memcpy(node[i], r, MERKLE_HASH);
		fns[i] = fn;
		level[i] = (uint8_t)lv;
		lv += inclusion_step(path[i], r, &fn, &sn);
	}
	if (i == count && !(sn == 0 && sodium_memcmp(r, root, MERKLE_HASH) == 0))
		return false;
	memo_keep(m, size, root, path, count, i, j, (const uint8_t(*)[MERKLE_HASH])node, fns,
		  level);
	return true;
}

bool merkle_verify_consistency(uint64_t size1, uint64_t size2,
			       const uint8_t root1[static MERKLE_HASH],
			       const uint8_t root2[static MERKLE_HASH],
			       const uint8_t (*proof)[MERKLE_HASH], size_t count)
{
	uint8_t fr[MERKLE_HASH], sr[MERKLE_HASH];
	uint64_t fn, sn;
	size_t i = 0;

	if (size1 > size2)
		return false;
	if (size1 == size2)
		return count == 0 && sodium_memcmp(root1, root2, MERKLE_HASH) == 0;
	if (size1 == 0)
		return count == 0; /* the empty tree is a prefix of every tree */
	if (count == 0)
		return false;
	/* a power-of-two first tree is itself a node of the second: its
	 * root is the proof's implicit first element */
	if ((size1 & (size1 - 1)) == 0) {
		memcpy(fr, root1, MERKLE_HASH);
	} else {
		memcpy(fr, proof[0], MERKLE_HASH);
		i = 1;
	}
	memcpy(sr, fr, MERKLE_HASH);
	fn = size1 - 1;
	sn = size2 - 1;
	while (fn & 1) {
		fn >>= 1;
		sn >>= 1;
	}
	for (; i < count; i++) {
		if (sn == 0)
			return false;
		if ((fn & 1) || fn == sn) {
			merkle_node_hash(proof[i], fr, fr);
			merkle_node_hash(proof[i], sr, sr);
			if (!(fn & 1))
				while (!(fn & 1) && fn != 0) {
					fn >>= 1;
					sn >>= 1;
				}
		} else {
			merkle_node_hash(sr, proof[i], sr);
		}
		fn >>= 1;
		sn >>= 1;
	}
	return sn == 0 && sodium_memcmp(fr, root1, MERKLE_HASH) == 0 &&
	       sodium_memcmp(sr, root2, MERKLE_HASH) == 0;
}
