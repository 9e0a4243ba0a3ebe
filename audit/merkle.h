/* merkle.h — RFC 6962 / RFC 9162 Merkle tree hashing and proofs (private).
 *
 * leaf = SHA-256(0x00 || data), node = SHA-256(0x01 || left || right),
 * the root of an empty tree is SHA-256(""). A compact range (one subtree
 * root per set bit of the size) appends in O(log n); a merkle_tree keeps
 * every level in memory to answer many proofs against one size.
 */
#ifndef CUSTODY_AUDIT_MERKLE_H
#define CUSTODY_AUDIT_MERKLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MERKLE_HASH 32

void merkle_leaf_hash(const void *data, size_t len, uint8_t out[static MERKLE_HASH]);
void merkle_node_hash(const uint8_t l[static MERKLE_HASH], const uint8_t r[static MERKLE_HASH],
		      uint8_t out[static MERKLE_HASH]);

/* Subtree roots for the set bits of size, largest (leftmost) first. */
struct merkle_range {
	uint64_t size;
	uint8_t node[64][MERKLE_HASH];
};

void merkle_range_init(struct merkle_range *r);
void merkle_range_append(struct merkle_range *r, const uint8_t leaf[static MERKLE_HASH]);
void merkle_range_root(const struct merkle_range *r, uint8_t out[static MERKLE_HASH]);
/* Number of stored subtree roots (the popcount of size). */
unsigned merkle_range_count(uint64_t size);

/* Every level of the tree over n leaves; level k node i covers leaves
 * [i*2^k, min((i+1)*2^k, n)) and equals the RFC 6962 MTH of that range. */
struct merkle_tree {
	uint64_t n;
	unsigned levels;
	uint8_t (*level[65])[MERKLE_HASH];
	uint64_t len[65];
};

/* Build over n leaf hashes (copied). 0, -ENOMEM. */
int merkle_tree_build(const uint8_t (*leaves)[MERKLE_HASH], uint64_t n, struct merkle_tree *t);
void merkle_tree_free(struct merkle_tree *t);
void merkle_tree_root(const struct merkle_tree *t, uint8_t out[static MERKLE_HASH]);
/* RFC 9162 §2.1.3.1 PATH(index, D[n]): *out malloc'd, *count hashes.
 * -EINVAL for an index outside the tree, -ENOMEM. */
int merkle_tree_inclusion(const struct merkle_tree *t, uint64_t index,
			  uint8_t (**out)[MERKLE_HASH], size_t *count);
/* RFC 9162 §2.1.4.1 PROOF(m, D[n]) for 0 < m <= n. -EINVAL, -ENOMEM. */
int merkle_tree_consistency(const struct merkle_tree *t, uint64_t m,
			    uint8_t (**out)[MERKLE_HASH], size_t *count);

/* RFC 9162 §2.1.3.2: true when leaf at index with the path gives root. */
bool merkle_verify_inclusion(uint64_t index, uint64_t size, const uint8_t leaf[static MERKLE_HASH],
			     const uint8_t (*path)[MERKLE_HASH], size_t count,
			     const uint8_t root[static MERKLE_HASH]) __attribute__((warn_unused_result));
/* The states of the last inclusion walk that verified, so a later walk
 * in the same tree (size, root) can stop early. Neighbouring leaves share
 * the top of their paths: when a walk reaches a state a verified walk was
 * in — same level, node index and node hash — and its remaining siblings
 * are byte for byte the ones that walk still had, the rest of the
 * computation is the same pure function of the same input, so it ends at
 * the root as that one did. No assumption on SHA-256 beyond today's: a
 * forged sibling anywhere differs from the remembered ones and the walk is
 * computed in full. Zero-initialise before the first use. */
#define MERKLE_MEMO_MAX 64
struct merkle_memo {
	uint64_t size;
	uint8_t root[MERKLE_HASH];
	size_t count;                               /* 0: nothing remembered */
	uint8_t path[MERKLE_MEMO_MAX][MERKLE_HASH]; /* the walk's siblings */
	uint8_t node[MERKLE_MEMO_MAX][MERKLE_HASH]; /* node hash before step i */
	uint64_t fn[MERKLE_MEMO_MAX];               /* its index at its level */
	uint8_t level[MERKLE_MEMO_MAX];
	uint8_t at_level[65];                       /* step+1 at that level, 0: none */
};

/* merkle_verify_inclusion, same answer for every input; remembers a walk
 * that verified in *m and ends a later one early on a remembered state. */
bool merkle_verify_inclusion_memo(struct merkle_memo *m, uint64_t index, uint64_t size,
				  const uint8_t leaf[static MERKLE_HASH],
				  const uint8_t (*path)[MERKLE_HASH], size_t count,
				  const uint8_t root[static MERKLE_HASH])
	__attribute__((warn_unused_result));
/* RFC 9162 §2.1.4.2: true when the proof shows the tree of size1 (root1)
 * is a prefix of the tree of size2 (root2). */
bool merkle_verify_consistency(uint64_t size1, uint64_t size2,
			       const uint8_t root1[static MERKLE_HASH],
			       const uint8_t root2[static MERKLE_HASH],
			       const uint8_t (*proof)[MERKLE_HASH], size_t count)
	__attribute__((warn_unused_result));

#endif
