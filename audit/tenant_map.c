/* tenant_map.c — string-keyed hash table of tenant chain heads. */
#include "audit_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static size_t hash_str(const char *s)
{
	size_t h = 1469598103934665603ull; /* FNV-1a */

	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ull;
	return h;
}

int tenant_map_init(struct tenant_map *m)
{
	m->nb = 64;
	m->count = 0;
	m->b = calloc(m->nb, sizeof(*m->b));
	return m->b ? 0 : -ENOMEM;
}

void tenant_map_free(struct tenant_map *m)
{
	for (size_t i = 0; i < m->nb && m->b; i++) {
		struct tenant_ent *e = m->b[i], *n;

		for (; e; e = n) {
			n = e->next;
			free(e);
		}
	}
	free(m->b);
	memset(m, 0, sizeof(*m));
}

struct tenant_ent *tenant_map_get(struct tenant_map *m, const char *name)
{
	struct tenant_ent *e = m->b[hash_str(name) % m->nb];

	for (; e; e = e->next)
		if (strcmp(e->name, name) == 0)
			return e;
	return NULL;
}

static void grow(struct tenant_map *m)
{
	size_t nb = m->nb * 4;
	struct tenant_ent **b = calloc(nb, sizeof(*b));

	if (b == NULL)
		return; /* keep the longer chains */
	for (size_t i = 0; i < m->nb; i++) {
		struct tenant_ent *e = m->b[i], *n;

		for (; e; e = n) {
			size_t h = hash_str(e->name) % nb;

			n = e->next;
			e->next = b[h];
			b[h] = e;
		}
	}
	free(m->b);
	m->b = b;
	m->nb = nb;
}

struct tenant_ent *tenant_map_put(struct tenant_map *m, const char *name)
{
	struct tenant_ent *e = tenant_map_get(m, name);
	size_t len, h;

	if (e != NULL)
		return e;
	if (m->count + 1 > m->nb)
		grow(m);
	len = strlen(name);
	e = calloc(1, sizeof(*e) + len + 1);
	if (e == NULL)
		return NULL;
	memcpy(e->name, name, len + 1);
	h = hash_str(name) % m->nb;
	e->next = m->b[h];
	m->b[h] = e;
	m->count++;
	return e;
}
