/* distq ops: the op registry and each kernel table, as the markdown table
 * that docs/ops.md carries (a test holds the two together). */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "distq/exec.h"
#include "distq/graph.h"
#include "distq/train.h"


static const char *const role_names[] = {
    [DISTQ_QROLE_FP32] = "stays fp32",
    [DISTQ_QROLE_HEAD] = "int8 pattern head",
    [DISTQ_QROLE_POST_OP] = "fused post-op",
    [DISTQ_QROLE_SHARES_INPUT] = "int8, input's qparams",
    [DISTQ_QROLE_QDQ] = "quantize / dequantize",
};

static const char *const kind_names[] = {
    [DISTQ_ATTR_I64] = "int64", [DISTQ_ATTR_PAIR] = "int64[2]", [DISTQ_ATTR_F32] = "float32",
    [DISTQ_ATTR_DIMS] = "int64[8]", [DISTQ_ATTR_OP] = "op name"};

/* "weight, bias?" for the slots in mask; "?" marks an optional one. */
static void slots_text(unsigned mask, unsigned required, char *buf, size_t len)
{
    size_t used = 0;
    buf[0] = '\0';
    for (int s = 0; s < DISTQ_MAX_PARAMS && used < len; s++)
        if (mask & DISTQ_PARAM_BIT(s))
            used += (size_t)snprintf(buf + used, len - used, "%s%s%s", used ? ", " : "",
                                     distq_param_slot_name(s), required & DISTQ_PARAM_BIT(s) ? "" : "?");
    if (!used) snprintf(buf, len, "-");
}

static void attrs_text(const distq_op_info *info, char *buf, size_t len)
{
    size_t used = 0;
    buf[0] = '\0';
    for (int a = 0; a < info->n_attrs && used < len; a++)
        used += (size_t)snprintf(buf + used, len - used, "%s`%s` %s%s", a ? ", " : "",
                                 info->attrs[a].name, kind_names[info->attrs[a].kind],
                                 info->attrs[a].optional ? "?" : "");
    if (!used) snprintf(buf, len, "-");
}

/* "f32, int8", "f32", "int8" or "-": which kernels backend b has for op. */
static const char *kernels_text(distq_backend b, distq_op op)
{
    static const char *const text[4] = {"-", "f32", "int8", "f32, int8"};
    return text[(distq_exec_has_kernel(b, op) ? 1 : 0) + (distq_exec_has_int8_kernel(b, op) ? 2 : 0)];
}

int cmd_ops(const cli_ctx *ctx, int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "--help") == 0) {
        printf("usage: distq ops   (prints the op registry as a markdown table)\n");
        return CLI_OK;
    }
    if (argc != 1) return cli_usage_error("ops", "", "takes no arguments");
    if (ctx->rank != 0) return CLI_OK;
    printf("| op | inputs | parameters (`?` optional) | trained | attributes | x86 int8 role | ref | onednn | trainer |\n");
    printf("|----|--------|---------------------------|---------|------------|---------------|-----|--------|---------|\n");
    for (int i = 0; i < DISTQ_OP_COUNT; i++) {
        const distq_op_info *info = distq_op_info_of((distq_op)i);
        char inputs[32], params[128], trained[128], attrs[512];
        if (info->max_inputs == DISTQ_VARIADIC) snprintf(inputs, sizeof inputs, "%d or more", info->min_inputs);
        else if (info->max_inputs > info->min_inputs)
            snprintf(inputs, sizeof inputs, "%d or %d", info->min_inputs, info->max_inputs);
        else snprintf(inputs, sizeof inputs, "%d", info->min_inputs);
        slots_text(info->params, info->params_required, params, sizeof params);
        slots_text(info->params_trained, info->params_trained, trained, sizeof trained);
        attrs_text(info, attrs, sizeof attrs);
        printf("| `%s` | %s | %s | %s | %s | %s | %s | %s | %s |\n", info->name, inputs, params, trained,
               attrs, role_names[info->qrole], kernels_text(DISTQ_BACKEND_REF, (distq_op)i),
               kernels_text(DISTQ_BACKEND_ONEDNN, (distq_op)i),
               distq_train_has_kernel((distq_op)i) ? "yes" : "-");
    }
    return CLI_OK;
}
