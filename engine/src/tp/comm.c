/* tp/comm.c - the implementation-independent half of the collectives (tp/comm.h): group and
 * endpoint allocation, abort bookkeeping, call counting and the fault-injection hook, then
 * dispatch through the group's ops (comm_impl.h).
 */
#include "tp/comm_impl.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

eng_status eng_comm_group_alloc(const eng_comm_ops *ops, int world, int timeout_ms, eng_comm_group **out)
{
    *out = NULL;
    if (world < 1 || world > 1024)
        return eng_err_set(ENG_ERR_INVALID, "collectives: world size %d is outside [1, 1024]", world);
    eng_comm_group *g = eng_calloc(1, sizeof *g);
    if (!g) return eng_err_set(ENG_ERR_NOMEM, "collectives: out of memory");
    g->ranks = eng_calloc((size_t)world, sizeof *g->ranks);
    if (!g->ranks || pthread_mutex_init(&g->abort_mu, NULL) != 0) {
        eng_free(g->ranks);
        eng_free(g);
        return eng_err_set(ENG_ERR_NOMEM, "collectives: out of memory");
    }
    g->ops = ops;
    g->world = world;
    g->timeout_ms = timeout_ms > 0 ? timeout_ms : ENG_COMM_DEFAULT_TIMEOUT_MS;
    atomic_init(&g->aborted, 0);
    for (int r = 0; r < world; r++) {
        g->ranks[r].group = g;
        g->ranks[r].rank = r;
        g->ranks[r].world = world;
        g->ranks[r].stop_after = -1;
    }
    *out = g;
    return ENG_OK;
}

void eng_comm_group_destroy(eng_comm_group *g)
{
    if (!g) return;
    if (g->ops && g->ops->destroy) g->ops->destroy(g);
    pthread_mutex_destroy(&g->abort_mu);
    eng_free(g->ranks);
    eng_free(g);
}

eng_comm *eng_comm_group_rank(eng_comm_group *g, int r)
{
    return g && r >= 0 && r < g->world ? &g->ranks[r] : NULL;
}

int eng_comm_group_world(const eng_comm_group *g)
{
    return g->world;
}

void eng_comm_group_fail(eng_comm_group *g, eng_status st, const char *fmt, ...)
{
    pthread_mutex_lock(&g->abort_mu);
    bool first = !atomic_load(&g->aborted);
    if (first) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(g->abort_msg, sizeof g->abort_msg, fmt, ap);
        va_end(ap);
        g->abort_status = st;
        atomic_store(&g->aborted, 1);
    }
    pthread_mutex_unlock(&g->abort_mu);
    if (first && g->ops->abort) g->ops->abort(g);
}

void eng_comm_group_abort(eng_comm_group *g, const char *why)
{
    if (g) eng_comm_group_fail(g, ENG_ERR_TIMEOUT, "%s", why ? why : "aborted");
}

bool eng_comm_group_aborted(const eng_comm_group *g)
{
    return g && atomic_load(&((eng_comm_group *)g)->aborted);
}

eng_status eng_comm_aborted_error(const eng_comm *c, const char *op)
{
    eng_comm_group *g = c->group;
    return eng_err_set(g->abort_status != ENG_OK ? g->abort_status : ENG_ERR_TIMEOUT,
                       "collectives (%s): %s on rank %d refused: the group failed earlier: %s", g->ops->name,
                       op, c->rank, g->abort_msg);
}

/* The common prologue: injected stop, then an aborted group. ENG_OK to go on. */
static eng_status enter(eng_comm *c, const char *op)
{
    if (c->stop_after >= 0 && c->n_calls >= c->stop_after)
        return eng_err_set(ENG_ERR_INTERNAL,
                           "collectives: injected failure: rank %d stopped participating at %s "
                           "(call %ld)",
                           c->rank, op, c->n_calls + 1);
    c->n_calls++;
    if (atomic_load(&c->group->aborted)) return eng_comm_aborted_error(c, op);
    return ENG_OK;
}

eng_status eng_comm_all_reduce_sum(eng_comm *c, float *buf, size_t n)
{
    eng_status st = enter(c, "all_reduce");
    if (st != ENG_OK) return st;
    return c->world == 1 ? ENG_OK : c->group->ops->all_reduce_sum(c, buf, n);
}

eng_status eng_comm_all_gather(eng_comm *c, const void *send, void *recv, size_t bytes)
{
    eng_status st = enter(c, "all_gather");
    if (st != ENG_OK) return st;
    return c->group->ops->all_gather(c, send, recv, bytes);
}

eng_status eng_comm_broadcast(eng_comm *c, void *buf, size_t bytes, int root)
{
    if (root < 0 || root >= c->world)
        return eng_err_set(ENG_ERR_INVALID, "collectives: broadcast root %d outside [0, %d)", root, c->world);
    eng_status st = enter(c, "broadcast");
    if (st != ENG_OK) return st;
    return c->world == 1 ? ENG_OK : c->group->ops->broadcast(c, buf, bytes, root);
}

eng_status eng_comm_barrier(eng_comm *c)
{
    eng_status st = enter(c, "barrier");
    if (st != ENG_OK) return st;
    return c->world == 1 ? ENG_OK : c->group->ops->barrier(c);
}

bool eng_comm_async(const eng_comm *c)
{
    return c->group->ops->async && c->group->ops->async(c);
}

eng_status eng_comm_wait(eng_comm *c)
{
    if (!c->group->ops->wait) return ENG_OK;
    if (atomic_load(&c->group->aborted)) return eng_comm_aborted_error(c, "wait");
    return c->group->ops->wait(c);
}

int eng_comm_rank(const eng_comm *c)
{
    return c->rank;
}

int eng_comm_world(const eng_comm *c)
{
    return c->world;
}

const char *eng_comm_name(const eng_comm *c)
{
    return c->group->ops->name;
}

eng_comm_group *eng_comm_group_of(eng_comm *c)
{
    return c->group;
}

void eng_comm_debug_stop_after(eng_comm *c, long n_calls)
{
    c->stop_after = n_calls < 0 ? -1 : c->n_calls + n_calls;
}
