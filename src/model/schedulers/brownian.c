/* brownian.c: torchsde 0.2.6's BrownianInterval (torchsde/_brownian/brownian_interval.py) with halfway_tree=True,
 * tol=1e-6, pool_size=24 and no Levy area, as diffusers 0.31's BatchedBrownianTree makes it. The plan is the tree's
 * shape (_Interval's _start, _end, _midway, spawn key and depth; _loc's answers); brownian_increment then walks
 * _increment_and_space_time_levy_area for one entropy, each float32 operation as torch makes it (a Python float
 * times a float32 tensor is the float rounded to float32 first). The LRU cache of torchsde only saves time; here
 * one query's nodes are kept while it is answered. */
#include "schedulers/brownian.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "seed_sequence.h"

enum {
    BROWNIAN_POOL_SIZE = 24, /* BatchedBrownianTree's pool_size */
    BROWNIAN_MAX_DEPTH = 60, /* a node's spawn key 2 * parent's + side stays in 64 bits; torchsde's own trees over
                              * sigma ranges a noise schedule makes are 20-35 deep */
    BROWNIAN_MAX_WALK = 100000, /* _loc's steps for one query (it visits each tree level a few times) */
};

typedef struct {
    double start, end, midway; /* rounded to 6 decimals; midway only once split */
    int parent, left, right;   /* node indices; -1: the root's parent, the children of a node not split */
    int is_left;
    int depth;                 /* the root 0 */
    uint64_t spawn_key;        /* the root 0; a child 2 * its parent's + (0 left, 1 right) */
} BrownianNode;

struct BrownianPlan {
    double t0, t1;        /* the range as given (the whole increment's scale is sqrt(t1 - t0)) */
    BrownianNode *nodes;  /* (n_nodes,) [0] is the root */
    int n_nodes, cap_nodes;
    int last;             /* _last_interval: where the next query's search starts */
    int *first, *count;   /* (n_queries,) each query's intervals: intervals[first .. first + count); count 0: ta == tb */
    int n_queries, cap_queries;
    int *intervals;       /* (n_intervals,) */
    int n_intervals, cap_intervals;
};

/* Python's round(x, 6): the decimal correctly rounded (half to even on the exact binary value, as glibc's printf
 * rounds it), read back. */
static double round6(double x)
{
    char text[512];
    snprintf(text, sizeof text, "%.6f", x);
    return strtod(text, NULL);
}

static int grow(void **items, int *cap, int need, size_t size)
{
    if (need <= *cap)
        return SOWER_OK;
    int cap2 = *cap ? *cap : 64;
    while (cap2 < need)
        cap2 *= 2;
    void *p = realloc(*items, (size_t)cap2 * size);
    if (!p)
        return SOWER_FAIL(SOWER_ENOMEM, "out of memory for the Brownian tree");
    *items = p, *cap = cap2;
    return SOWER_OK;
}

static int add_node(BrownianPlan *p, double start, double end, int parent, int is_left, int *index)
{
    SOWER_TRY(grow((void **)&p->nodes, &p->cap_nodes, p->n_nodes + 1, sizeof *p->nodes));
    BrownianNode *n = &p->nodes[p->n_nodes];
    *n = (BrownianNode){.start = round6(start), .end = round6(end), .parent = parent, .left = -1, .right = -1,
                        .is_left = is_left};
    if (parent >= 0) {
        const BrownianNode *up = &p->nodes[parent];
        n->depth = up->depth + 1;
        n->spawn_key = 2 * up->spawn_key + (is_left ? 0 : 1);
    }
    *index = p->n_nodes++;
    return SOWER_OK;
}

BrownianPlan *brownian_plan_new(double t0, double t1)
{
    BrownianPlan *p = calloc(1, sizeof *p);
    int root;
    if (!p || add_node(p, t0, t1, -1, 0, &root) != SOWER_OK) {
        brownian_plan_free(p);
        return NULL;
    }
    p->t0 = t0, p->t1 = t1;
    return p;
}

void brownian_plan_free(BrownianPlan *p)
{
    if (!p)
        return;
    free(p->nodes);
    free(p->first);
    free(p->count);
    free(p->intervals);
    free(p);
}

/* _split_exact(0.5 * (end + start)): the node's two children. */
static int split_exact(BrownianPlan *p, int node)
{
    const BrownianNode n = p->nodes[node];
    if (n.depth + 1 > BROWNIAN_MAX_DEPTH)
        return SOWER_FAIL(SOWER_EINPUT, "the Brownian tree over sigmas %.9g..%.9g needs more than %d levels to reach a "
                                        "query: the noise schedule's sigmas are too far apart for DPMSolverSDEScheduler",
                          p->t0, p->t1, BROWNIAN_MAX_DEPTH);
    const double mid = 0.5 * (n.end + n.start);
    int left, right;
    SOWER_TRY(add_node(p, n.start, mid, node, 1, &left));
    SOWER_TRY(add_node(p, mid, n.end, node, 0, &right));
    BrownianNode *s = &p->nodes[node];
    s->midway = round6(mid), s->left = left, s->right = right;
    return SOWER_OK;
}

/* _split(q): split at the midpoint, then the child holding q, until a midpoint is q. */
static int split_toward(BrownianPlan *p, int node, double q)
{
    for (;;) {
        SOWER_TRY(split_exact(p, node));
        const BrownianNode *n = &p->nodes[node];
        if (q == n->midway)
            return SOWER_OK;
        node = q > n->midway ? n->right : n->left;
    }
}

static int add_interval(BrownianPlan *p, int node)
{
    SOWER_TRY(grow((void **)&p->intervals, &p->cap_intervals, p->n_intervals + 1, sizeof *p->intervals));
    p->intervals[p->n_intervals++] = node;
    return SOWER_OK;
}

/* _loc_inner(ta, tb): up to the first node holding [ta, tb], down to the intervals that tile it, left to right. */
static int loc_inner(BrownianPlan *p, int node, double ta, double tb, int *walk)
{
    for (;;) {
        if (++*walk > BROWNIAN_MAX_WALK)
            return SOWER_FAIL(SOWER_EINPUT, "the Brownian tree over sigmas %.9g..%.9g cannot locate [%.9g, %.9g] "
                                            "(torchsde's search does not end there)",
                              p->t0, p->t1, ta, tb);
        const BrownianNode n = p->nodes[node];
        if (ta < n.start || tb > n.end) {
            if (n.parent < 0)
                return SOWER_FAIL(SOWER_EINTERNAL, "Brownian query [%.9g, %.9g] outside its tree", ta, tb);
            node = n.parent;
            continue;
        }
        if (ta == n.start && tb == n.end)
            return add_interval(p, node);
        if (n.left < 0) {
            const int at_start = ta == n.start;
            SOWER_TRY(split_toward(p, node, at_start ? tb : ta));
            node = at_start ? p->nodes[node].left : p->nodes[node].right;
            continue;
        }
        if (tb <= n.midway) {
            node = n.left;
        } else if (ta >= n.midway) {
            node = n.right;
        } else {
            SOWER_TRY(loc_inner(p, n.left, ta, n.midway, walk));
            node = n.right, ta = n.midway;
        }
    }
}

int brownian_plan_query(BrownianPlan *p, double ta, double tb, int *query)
{
    const BrownianNode *root = &p->nodes[0];
    /* __call__: clamped to [t0, t1] (rounded), as torchsde does with a warning */
    ta = ta < root->start ? root->start : ta > root->end ? root->end : ta;
    tb = tb < root->start ? root->start : tb > root->end ? root->end : tb;
    if (!(ta <= tb))
        return SOWER_FAIL(SOWER_EINPUT, "Brownian query [%.9g, %.9g]: its start is after its end", ta, tb);
    if (p->n_queries == p->cap_queries) { /* first and count grow together */
        const int cap = p->cap_queries ? 2 * p->cap_queries : 64;
        int *first = realloc(p->first, (size_t)cap * sizeof *first);
        if (first)
            p->first = first;
        int *count = first ? realloc(p->count, (size_t)cap * sizeof *count) : NULL;
        if (!count)
            return SOWER_FAIL(SOWER_ENOMEM, "out of memory for the Brownian tree");
        p->count = count, p->cap_queries = cap;
    }
    const int q = p->n_queries, before = p->n_intervals;
    if (ta != tb) { /* _loc(ta, tb) from the last interval, both ends rounded */
        int walk = 0;
        SOWER_TRY(loc_inner(p, p->last, round6(ta), round6(tb), &walk));
        p->last = p->intervals[p->n_intervals - 1];
    }
    p->first[q] = before, p->count[q] = p->n_intervals - before;
    p->n_queries++;
    *query = q;
    return SOWER_OK;
}

/* One sample's values of the nodes a query reads: w[node] (n,) once made. */
typedef struct {
    const BrownianPlan *p;
    uint32_t entropy[2];
    int n_entropy;
    BrownianDrawFn draw;
    void *ctx;
    size_t n;
    float **w; /* (n_nodes,) NULL until made */
} Walk;

/* The noise torchsde draws at a split node: randn from SeedSequence(entropy, spawn_key=(key, depth)) word 0
 * (_W_seed; the others seed the Levy areas, not used here). */
static int split_noise(Walk *k, const BrownianNode *n, float *out)
{
    uint32_t spawn[4], seeds[4];
    int n_spawn = seed_sequence_int_words(n->spawn_key, spawn);
    n_spawn += seed_sequence_int_words((uint64_t)n->depth, spawn + n_spawn);
    seed_sequence_state(k->entropy, k->n_entropy, spawn, n_spawn, BROWNIAN_POOL_SIZE, seeds, 4);
    return k->draw(k->ctx, seeds[0], out, k->n);
}

/* The increment over node i: the root's randn * sqrt(t1 - t0); a left child's the bridge's mean plus its spread
 * times the parent's noise; a right child's its parent's minus its sibling's. */
static int node_value(Walk *k, int i)
{
    if (k->w[i])
        return SOWER_OK;
    const BrownianNode *n = &k->p->nodes[i];
    float *w = malloc(k->n * sizeof *w); /* (n,) */
    if (!w)
        return SOWER_FAIL(SOWER_ENOMEM, "out of memory for the Brownian tree's values");
    k->w[i] = w;
    if (n->parent < 0) {
        uint32_t seeds[3];
        seed_sequence_state(k->entropy, k->n_entropy, NULL, 0, BROWNIAN_POOL_SIZE, seeds, 3);
        SOWER_TRY(k->draw(k->ctx, seeds[0], w, k->n));
        const float scale = (float)sqrt(k->p->t1 - k->p->t0);
        for (size_t j = 0; j < k->n; j++)
            w[j] = w[j] * scale;
        return SOWER_OK;
    }
    const BrownianNode *up = &k->p->nodes[n->parent];
    SOWER_TRY(node_value(k, n->parent));
    const float *wp = k->w[n->parent];
    if (!n->is_left) {
        SOWER_TRY(node_value(k, up->left));
        const float *wl = k->w[up->left];
        for (size_t j = 0; j < k->n; j++)
            w[j] = wp[j] - wl[j];
        return SOWER_OK;
    }
    SOWER_TRY(split_noise(k, up, w)); /* the noise, turned into the value in place */
    const double h_reciprocal = 1.0 / (up->end - up->start);
    const double left_diff = up->midway - up->start, right_diff = up->end - up->midway;
    const float f_left = (float)left_diff, f_h = (float)h_reciprocal;
    const float spread = (float)sqrt(left_diff * right_diff * h_reciprocal);
    for (size_t j = 0; j < k->n; j++)
        w[j] = wp[j] * f_left * f_h + w[j] * spread; /* mean = left_diff * W * h_reciprocal; + sqrt(var) * noise */
    return SOWER_OK;
}

int brownian_increment(const BrownianPlan *p, int q, uint64_t entropy, BrownianDrawFn draw, void *ctx, float *out,
                       size_t n)
{
    Walk k = {.p = p, .draw = draw, .ctx = ctx, .n = n};
    k.n_entropy = seed_sequence_int_words(entropy, k.entropy);
    if (p->count[q] == 0) { /* ta == tb: torch.zeros */
        for (size_t j = 0; j < n; j++)
            out[j] = 0.0f;
        return SOWER_OK;
    }
    k.w = calloc((size_t)p->n_nodes, sizeof *k.w);
    if (!k.w)
        return SOWER_FAIL(SOWER_ENOMEM, "out of memory for the Brownian tree's values");
    int status = SOWER_OK;
    for (int c = 0; c < p->count[q] && status == SOWER_OK; c++) {
        const int node = p->intervals[p->first[q] + c];
        status = node_value(&k, node);
        if (status != SOWER_OK)
            break;
        const float *w = k.w[node];
        for (size_t j = 0; j < n; j++)
            out[j] = c == 0 ? w[j] : out[j] + w[j]; /* W = W + Wi, left to right */
    }
    for (int i = 0; i < p->n_nodes; i++)
        free(k.w[i]);
    free(k.w);
    return status;
}
