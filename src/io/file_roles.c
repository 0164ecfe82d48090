/*
 * An output never replaces an input, and two outputs of one run are never
 * the same file. Files are compared by what they are, not by how they are
 * spelled: device and inode for a file that exists (symlinks, hard links,
 * "./x.h5" vs "x.h5"), and for one not written yet its directory's device and
 * inode plus its name. Runs before any work, so a refused run has written
 * nothing.
 */
#include <libgen.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "distq/io.h"

typedef struct {
    dev_t dev;
    ino_t ino;
    char name[256]; /* "" for an existing file; else the name inside dev/ino's directory */
    int known;      /* 0: neither the file nor its directory exists (no clash is possible) */
} file_id;

static void identify(const char *path, file_id *id)
{
    struct stat s;
    memset(id, 0, sizeof *id);
    if (stat(path, &s) == 0) {
        id->dev = s.st_dev;
        id->ino = s.st_ino;
        id->known = 1;
        return;
    }
    /* dirname / basename may modify their argument: work on copies */
    char dir_copy[DISTQ_PATH_MAX], base_copy[DISTQ_PATH_MAX];
    snprintf(dir_copy, sizeof dir_copy, "%s", path);
    snprintf(base_copy, sizeof base_copy, "%s", path);
    const char *dir = dirname(dir_copy), *base = basename(base_copy);
    if (stat(dir, &s) != 0) return;
    id->dev = s.st_dev;
    id->ino = s.st_ino;
    snprintf(id->name, sizeof id->name, "%s", base);
    id->known = 1;
}

static int same_file(const file_id *a, const file_id *b)
{
    return a->known && b->known && a->dev == b->dev && a->ino == b->ino && strcmp(a->name, b->name) == 0;
}

static int given(const distq_file_role *r) { return r->path && r->path[0]; }

/* The first of roles[0, n) that is the same file as out, or -1. */
static int same_as_any(const file_id *out, const distq_file_role *roles, int n)
{
    for (int i = 0; i < n; i++) {
        if (!given(&roles[i])) continue;
        file_id other;
        identify(roles[i].path, &other);
        if (same_file(out, &other)) return i;
    }
    return -1;
}

distq_status distq_check_outputs(const distq_file_role *inputs, int n_in, const distq_file_role *outputs,
                                 int n_out)
{
    for (int o = 0; o < n_out; o++) {
        if (!given(&outputs[o])) continue;
        file_id out;
        identify(outputs[o].path, &out);
        int i = same_as_any(&out, inputs, n_in), p = same_as_any(&out, outputs, o);
        if (i >= 0)
            return distq_error_set(DISTQ_ERR_INVALID_ARG,
                                   "%s %s is the same file as %s %s: an output never replaces an input "
                                   "(write it elsewhere)",
                                   outputs[o].what, outputs[o].path, inputs[i].what, inputs[i].path);
        if (p >= 0)
            return distq_error_set(DISTQ_ERR_INVALID_ARG,
                                   "%s %s is the same file as %s %s: one would overwrite the other",
                                   outputs[o].what, outputs[o].path, outputs[p].what, outputs[p].path);
    }
    return DISTQ_OK;
}
