/*
 * Rank placement with hwloc: one NUMA node per rank (round robin by node-local
 * rank), a disjoint share of that node's cores, process binding (threads
 * inherit it) and, where the OS allows, memory binding. A binding the launcher
 * made (mpirun --bind-to core|numa) is detected and kept.
 */
#include <errno.h>
#include <hwloc.h>
#include <stdio.h>
#include <string.h>

#include "distq/dist.h"
#include "distq/exec.h"

#define HWLOC_FAIL(what) distq_error_set(DISTQ_ERR_HWLOC, "hwloc: %s failed: %s", (what), strerror(errno))

/* The placement policies by name ([bench] bind, --bind); distq_place
 * carries them out. */
static const char *const bind_names[DISTQ_BIND_COUNT] = {"none", "core", "numa"};

const char *distq_bind_name(distq_bind b)
{
    return ((int)b >= 0 && b < DISTQ_BIND_COUNT) ? bind_names[b] : "?";
}

distq_status distq_bind_from_name(const char *name, distq_bind *out)
{
    for (int i = 0; i < DISTQ_BIND_COUNT; i++)
        if (strcmp(name, bind_names[i]) == 0) {
            *out = (distq_bind)i;
            return DISTQ_OK;
        }
    return distq_error_set(DISTQ_ERR_INVALID_ARG, "unknown binding '%s' (none, core, numa)", name);
}

/* Cores (not PUs) whose PUs intersect set. */
static int cores_in(hwloc_topology_t topo, hwloc_const_cpuset_t set)
{
    int n = hwloc_get_nbobjs_inside_cpuset_by_type(topo, set, HWLOC_OBJ_CORE);
    return n > 0 ? n : 1;
}

/* The NUMA node containing set, or -1 if it spans several. */
static int numa_of(hwloc_topology_t topo, hwloc_const_cpuset_t set)
{
    int n = hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_NUMANODE), found = -1;
    for (int i = 0; i < n; i++) {
        hwloc_obj_t node = hwloc_get_obj_by_type(topo, HWLOC_OBJ_NUMANODE, (unsigned)i);
        if (hwloc_bitmap_isincluded(set, node->cpuset)) found = (int)node->os_index;
    }
    return found;
}

distq_status distq_place(const distq_dist *d, distq_bind bind, int threads, distq_placement *out,
                         char *warn, size_t warn_len)
{
    distq_status st = DISTQ_OK;
    hwloc_topology_t topo = NULL;
    hwloc_bitmap_t current = hwloc_bitmap_alloc(), target = hwloc_bitmap_alloc();
    memset(out, 0, sizeof *out);
    warn[0] = '\0';
    snprintf(out->host, sizeof out->host, "%s", d->host);
    out->numa_node = -1;
    if (!current || !target) {
        st = distq_error_set(DISTQ_ERR_NOMEM, "hwloc: out of memory");
        goto cleanup;
    }
    if (hwloc_topology_init(&topo) != 0) {
        st = HWLOC_FAIL("hwloc_topology_init");
        goto cleanup;
    }
    if (hwloc_topology_load(topo) != 0) {
        st = HWLOC_FAIL("hwloc_topology_load");
        goto cleanup;
    }
    hwloc_const_cpuset_t all = hwloc_topology_get_allowed_cpuset(topo);
    if (hwloc_get_cpubind(topo, current, HWLOC_CPUBIND_PROCESS) != 0) {
        st = HWLOC_FAIL("hwloc_get_cpubind");
        goto cleanup;
    }
    int node_cores = cores_in(topo, all);
    out->oversubscribed = d->local_size > node_cores;

    if (!hwloc_bitmap_isequal(current, all) && !hwloc_bitmap_iszero(current)) {
        /* The launcher bound us (mpirun --bind-to ...): keep its choice. */
        snprintf(out->bound_by, sizeof out->bound_by, "launcher");
        hwloc_bitmap_copy(target, current);
    } else if (bind == DISTQ_BIND_NONE) {
        snprintf(out->bound_by, sizeof out->bound_by, "none");
        hwloc_bitmap_copy(target, all);
    } else {
        int n_nodes = hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_NUMANODE);
        if (n_nodes < 1) n_nodes = 1;
        int node_index = d->local_rank % n_nodes;
        hwloc_obj_t node = hwloc_get_obj_by_type(topo, HWLOC_OBJ_NUMANODE, (unsigned)node_index);
        hwloc_const_cpuset_t node_set = node ? node->cpuset : all;
        /* ranks sharing this node, and our index among them */
        int share = d->local_size / n_nodes + (node_index < d->local_size % n_nodes);
        int index = d->local_rank / n_nodes;
        int ncores = hwloc_get_nbobjs_inside_cpuset_by_type(topo, node_set, HWLOC_OBJ_CORE);
        hwloc_bitmap_zero(target);
        if (bind == DISTQ_BIND_NUMA || ncores < 1) {
            hwloc_bitmap_copy(target, node_set);
        } else if (share > ncores) {
            /* oversubscribed: ranks take turns on the cores */
            hwloc_obj_t core = hwloc_get_obj_inside_cpuset_by_type(topo, node_set, HWLOC_OBJ_CORE,
                                                                    (unsigned)(index % ncores));
            hwloc_bitmap_copy(target, core->cpuset);
        } else {
            int first = ncores * index / share, last = ncores * (index + 1) / share;
            for (int c = first; c < last; c++) {
                hwloc_obj_t core =
                    hwloc_get_obj_inside_cpuset_by_type(topo, node_set, HWLOC_OBJ_CORE, (unsigned)c);
                hwloc_bitmap_or(target, target, core->cpuset);
            }
        }
        if (hwloc_set_cpubind(topo, target, HWLOC_CPUBIND_PROCESS) != 0) {
            st = HWLOC_FAIL("hwloc_set_cpubind");
            goto cleanup;
        }
        snprintf(out->bound_by, sizeof out->bound_by, "distq");
        /* With one NUMA node all memory is local whatever the binding: there is
         * nothing to bind (many VMs and containers also refuse it). */
        if (node && n_nodes > 1 && hwloc_set_membind(topo, node->nodeset, HWLOC_MEMBIND_BIND,
                                      HWLOC_MEMBIND_PROCESS | HWLOC_MEMBIND_BYNODESET) == 0)
            out->membind = 1;
        else if (node && n_nodes > 1)
            snprintf(warn, warn_len, "memory binding to NUMA node %u refused (%s); memory is not bound",
                     node->os_index, strerror(errno));
    }
    out->numa_node = numa_of(topo, target);
    out->n_cores = cores_in(topo, target);
    hwloc_bitmap_list_snprintf(out->cpus, sizeof out->cpus, target);
    /* Unbound ranks share the node's cores; oversubscribed ones get one thread. */
    if (threads > 0)
        out->threads = threads;
    else if (!strcmp(out->bound_by, "none"))
        out->threads = node_cores / d->local_size > 0 ? node_cores / d->local_size : 1;
    else
        out->threads = out->n_cores;
    if (out->oversubscribed && !warn[0])
        snprintf(warn, warn_len, "%d ranks on %d cores of %s: oversubscribed, expect slow and noisy timings",
                 d->local_size, node_cores, d->host);
    st = distq_onednn_set_threads(out->threads);
cleanup:
    hwloc_bitmap_free(current);
    hwloc_bitmap_free(target);
    if (topo) hwloc_topology_destroy(topo);
    return st;
}
