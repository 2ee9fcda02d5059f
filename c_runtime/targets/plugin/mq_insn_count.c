/* microq profiler: a QEMU TCG plugin (plugin API version 1, QEMU 7.x) that counts every guest
 * instruction executed and logs the running count each time execution reaches a marker address.
 *
 *   qemu-system-arm ... -plugin ./libmq_insn_count.so,out=LOG,marker=0xADDR[,marker=0xADDR...]
 *
 * LOG gets one line "ADDR COUNT" (hex, decimal) per marker hit, in execution order. The count
 * is exact and repeatable: an inline add on every instruction, no sampling. Differences of two
 * hits do not depend on whether a marker's own instruction is already counted.
 *
 * Debian ships no qemu-plugin.h, so the few API declarations used are written out here; they
 * match QEMU 7.2's include/qemu/qemu-plugin.h. Built with the host gcc by runtime/profile.py.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef uint64_t qemu_plugin_id_t;
struct qemu_plugin_tb;
struct qemu_plugin_insn;
typedef struct qemu_info_t qemu_info_t;

enum qemu_plugin_cb_flags { QEMU_PLUGIN_CB_NO_REGS, QEMU_PLUGIN_CB_R_REGS, QEMU_PLUGIN_CB_RW_REGS };
enum qemu_plugin_op { QEMU_PLUGIN_INLINE_ADD_U64 };

typedef void (*qemu_plugin_vcpu_tb_trans_cb_t)(qemu_plugin_id_t id, struct qemu_plugin_tb *tb);
typedef void (*qemu_plugin_vcpu_udata_cb_t)(unsigned int vcpu_index, void *userdata);
typedef void (*qemu_plugin_udata_cb_t)(qemu_plugin_id_t id, void *userdata);

void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t id, qemu_plugin_vcpu_tb_trans_cb_t cb);
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *tb);
struct qemu_plugin_insn *qemu_plugin_tb_get_insn(const struct qemu_plugin_tb *tb, size_t idx);
uint64_t qemu_plugin_insn_vaddr(const struct qemu_plugin_insn *insn);
void qemu_plugin_register_vcpu_insn_exec_inline(struct qemu_plugin_insn *insn,
                                                enum qemu_plugin_op op, void *ptr, uint64_t imm);
void qemu_plugin_register_vcpu_insn_exec_cb(struct qemu_plugin_insn *insn,
                                            qemu_plugin_vcpu_udata_cb_t cb,
                                            enum qemu_plugin_cb_flags flags, void *userdata);
void qemu_plugin_register_atexit_cb(qemu_plugin_id_t id, qemu_plugin_udata_cb_t cb,
                                    void *userdata);

__attribute__((visibility("default"))) int qemu_plugin_version = 1;

#define MAX_MARKERS 4096

static uint64_t g_count;
static uint64_t g_markers[MAX_MARKERS];
static size_t g_num_markers;
static FILE *g_log;

static void on_marker(unsigned int vcpu_index, void *userdata)
{
    (void)vcpu_index;
    fprintf(g_log, "%" PRIx64 " %" PRIu64 "\n", (uint64_t)(uintptr_t)userdata, g_count);
    fflush(g_log);
}

static int is_marker(uint64_t vaddr)
{
    size_t i;
    for (i = 0; i < g_num_markers; ++i) {
        if (g_markers[i] == vaddr) {
            return 1;
        }
    }
    return 0;
}

static void on_translate(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
    size_t n = qemu_plugin_tb_n_insns(tb);
    size_t i;
    (void)id;
    for (i = 0; i < n; ++i) {
        struct qemu_plugin_insn *insn = qemu_plugin_tb_get_insn(tb, i);
        uint64_t vaddr = qemu_plugin_insn_vaddr(insn);
        qemu_plugin_register_vcpu_insn_exec_inline(insn, QEMU_PLUGIN_INLINE_ADD_U64, &g_count, 1);
        if (is_marker(vaddr)) {
            qemu_plugin_register_vcpu_insn_exec_cb(insn, on_marker, QEMU_PLUGIN_CB_NO_REGS,
                                                   (void *)(uintptr_t)vaddr);
        }
    }
}

static void on_exit(qemu_plugin_id_t id, void *userdata)
{
    (void)id;
    (void)userdata;
    fprintf(g_log, "total %" PRIu64 "\n", g_count);
    fclose(g_log);
}

__attribute__((visibility("default"))) int qemu_plugin_install(qemu_plugin_id_t id,
                                                               const qemu_info_t *info, int argc,
                                                               char **argv)
{
    const char *out = NULL;
    int i;
    (void)info;
    for (i = 0; i < argc; ++i) {
        if (strncmp(argv[i], "out=", 4) == 0) {
            out = argv[i] + 4;
        } else if (strncmp(argv[i], "marker=", 7) == 0 && g_num_markers < MAX_MARKERS) {
            g_markers[g_num_markers++] = strtoull(argv[i] + 7, NULL, 0);
        } else {
            fprintf(stderr, "mq_insn_count: unknown argument '%s'\n", argv[i]);
            return -1;
        }
    }
    if (out == NULL || (g_log = fopen(out, "w")) == NULL) {
        fprintf(stderr, "mq_insn_count: needs out=FILE (a writable path)\n");
        return -1;
    }
    qemu_plugin_register_vcpu_tb_trans_cb(id, on_translate);
    qemu_plugin_register_atexit_cb(id, on_exit, NULL);
    return 0;
}
