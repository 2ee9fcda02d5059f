/* microq profiler: a QEMU TCG plugin (plugin API version 1, QEMU 7.x) that counts every guest
 * instruction executed, by timing class, and logs the running counts each time execution
 * reaches a marker address.
 *
 *   qemu-system-arm ... -plugin ./libmq_insn_count.so,out=LOG,marker=0xADDR[,marker=0xADDR...]
 *
 * LOG starts with one line "fields count NAME..." naming the columns; then one line
 * "ADDR COUNT N..." (hex, then decimal) per marker hit, in execution order, and at exit a line
 * "total COUNT N...". COUNT is the instruction count: exact and repeatable, an inline add on
 * every instruction, no sampling. Differences of two hits do not depend on whether a marker's
 * own instruction is already counted.
 *
 * The other columns feed the cycle estimate of microq/runtime/timing.py:
 *   - one count per instruction class (CLASS_NAMES): every executed instruction is in exactly
 *     one class, decoded from its Thumb / Thumb-2 encoding when its block is translated. Single
 *     loads and register-offset stores that directly follow a single load in the same block and
 *     do not use that load's destination for their address are their own classes (the M3/M4
 *     load/store pipelining rule);
 *   - "regs": registers moved by LDM/STM/PUSH/POP (the N of 1+N), an inline add of N;
 *   - "agu": loads and stores whose base or offset register was written by the data processing
 *     or multiply instruction just before them in the same block (the M3/M4 address stall);
 *   - "taken_CLASS" for each class that can write the PC: how often the next executed block
 *     did not start at the instruction's fall-through address (a block exec callback sees the
 *     previous block's last instruction: QEMU ends a block at every PC write);
 *   - "wide_CLASS": how many of those taken branches landed on a 32-bit instruction that is not
 *     word aligned (needs two fetches: the alignment part of the M3/M4 pipeline refill P).
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
void qemu_plugin_register_vcpu_tb_exec_cb(struct qemu_plugin_tb *tb, qemu_plugin_vcpu_udata_cb_t cb,
                                          enum qemu_plugin_cb_flags flags, void *userdata);
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *tb);
struct qemu_plugin_insn *qemu_plugin_tb_get_insn(const struct qemu_plugin_tb *tb, size_t idx);
uint64_t qemu_plugin_insn_vaddr(const struct qemu_plugin_insn *insn);
const void *qemu_plugin_insn_data(const struct qemu_plugin_insn *insn);
size_t qemu_plugin_insn_size(const struct qemu_plugin_insn *insn);
void qemu_plugin_register_vcpu_insn_exec_inline(struct qemu_plugin_insn *insn,
                                                enum qemu_plugin_op op, void *ptr, uint64_t imm);
void qemu_plugin_register_vcpu_insn_exec_cb(struct qemu_plugin_insn *insn,
                                            qemu_plugin_vcpu_udata_cb_t cb,
                                            enum qemu_plugin_cb_flags flags, void *userdata);
void qemu_plugin_register_atexit_cb(qemu_plugin_id_t id, qemu_plugin_udata_cb_t cb, void *userdata);

__attribute__((visibility("default"))) int qemu_plugin_version = 1;

#define MAX_MARKERS 4096

/* Instruction classes: the rows of the timing tables (runtime/timing.py keeps the same names).
 * Classes up to C_NOT_BRANCH_END never write the PC; the rest may. */
enum {
    C_ALU,        /* data processing, shifts, extends, SIMD add/sub, saturate, IT, hints, FP */
    C_MUL,        /* MUL/MLA/MLS, long multiplies, DSP multiply-accumulate (SMLAD, SMLABB...) */
    C_DIV,        /* SDIV, UDIV */
    C_LOAD,       /* single load (LDR/LDRB/LDRH/LDRSB/LDRSH/LDREX), not pipelined */
    C_LOAD_PIPE,  /* single load directly after a single load, address independent of it */
    C_STORE_IMM,  /* single store, immediate offset */
    C_STORE_REG,  /* single store, register offset (or STREX), not pipelined */
    C_STORE_PIPE, /* register-offset store directly after a single load, independent of it */
    C_LSD,        /* LDRD, STRD */
    C_LSM,        /* LDM, STM, PUSH, POP without the PC */
    C_BARRIER,    /* DMB, DSB, ISB */
    C_NOT_BRANCH_END,
    C_B = C_NOT_BRANCH_END, /* B (unconditional, direct) */
    C_BL,                   /* BL */
    C_BCOND,                /* B<cond> */
    C_CBZ,                  /* CBZ, CBNZ */
    C_BX,                   /* BX, BLX (register) */
    C_PC_ALU,               /* MOV PC / ADD PC (data processing into the PC) */
    C_POP_PC,               /* POP / LDM including the PC */
    C_LDR_PC,               /* LDR PC */
    C_TBB,                  /* TBB, TBH */
    N_CLASSES
};
#define N_BRANCH (N_CLASSES - C_NOT_BRANCH_END)

static const char *const CLASS_NAMES[N_CLASSES] = {
    "alu",        "mul", "div",    "load",    "load_pipe", "store_imm", "store_reg",
    "store_pipe", "lsd", "lsm",    "barrier", "b",         "bl",        "bcond",
    "cbz",        "bx",  "pc_alu", "pop_pc",  "ldr_pc",    "tbb",
};

struct insn_class {
    int cls;
    int regs;      /* registers of LDM/STM/PUSH/POP */
    int load_rt;   /* single load: its destination register, else -1 */
    int addr_regs; /* load/store: bit mask of its base and offset registers */
    int dest;      /* data processing and multiply: bit mask of the registers written */
};

struct tb_rec {
    uint64_t start;
    uint64_t fallthrough; /* address after the last instruction */
    int first_wide;       /* first instruction is 32-bit */
    int branch;           /* class of the last instruction if it may write the PC, else -1 */
};

static uint64_t g_count;
static uint64_t g_class[N_CLASSES];
static uint64_t g_regs;
static uint64_t g_agu;
static uint64_t g_taken[N_BRANCH];
static uint64_t g_wide[N_BRANCH];
static const struct tb_rec *g_prev;
static uint64_t g_markers[MAX_MARKERS];
static size_t g_num_markers;
static FILE *g_log;

static int popcount16(unsigned v)
{
    int n = 0;
    for (v &= 0xFFFFu; v != 0; v &= v - 1) {
        ++n;
    }
    return n;
}

static struct insn_class make(int cls)
{
    struct insn_class c;
    c.cls = cls;
    c.regs = 0;
    c.load_rt = -1;
    c.addr_regs = 0;
    c.dest = 0;
    return c;
}

static struct insn_class single(int cls, int rt, int rn, int rm)
{
    struct insn_class c = make(cls);
    if (cls == C_LOAD) {
        c.load_rt = rt;
    }
    c.addr_regs = (1 << rn) | (rm >= 0 ? 1 << rm : 0);
    return c;
}

static struct insn_class multiple(int load, unsigned list, int rn)
{
    struct insn_class c = make(load && (list & 0x8000u) ? C_POP_PC : C_LSM);
    c.regs = popcount16(list);
    c.addr_regs = 1 << rn;
    return c;
}

static int reg_mask(unsigned r)
{
    return r == 15u ? 0 : 1 << r; /* Rd = 1111: a compare or test, nothing written */
}

/* Registers written by a 16-bit data processing instruction (A5.2.1-A5.2.5). */
static int dest16(unsigned hw)
{
    if ((hw & 0xE000u) == 0x0000u) {
        return 1 << (hw & 7u); /* shift by immediate, ADD/SUB register or 3-bit immediate */
    }
    if ((hw & 0xE000u) == 0x2000u) { /* MOVS, CMP, ADDS, SUBS with an 8-bit immediate */
        return ((hw >> 11) & 3u) == 1u ? 0 : 1 << ((hw >> 8) & 7u);
    }
    if ((hw & 0xFC00u) == 0x4000u) { /* data processing: TST, CMP, CMN write nothing */
        unsigned op = (hw >> 6) & 0xFu;
        return op == 8u || op == 10u || op == 11u ? 0 : 1 << (hw & 7u);
    }
    if ((hw & 0xFC00u) == 0x4400u && ((hw >> 8) & 1u) == 0u) { /* ADD, MOV high registers */
        return reg_mask(((hw >> 4) & 8u) | (hw & 7u));
    }
    if ((hw & 0xF000u) == 0xA000u) {
        return 1 << ((hw >> 8) & 7u); /* ADR, ADD Rd, SP, #imm */
    }
    if ((hw & 0xFF00u) == 0xB000u) {
        return 1 << 13; /* ADD/SUB SP, SP, #imm */
    }
    if ((hw & 0xFF00u) == 0xB200u || (hw & 0xFF00u) == 0xBA00u) {
        return 1 << (hw & 7u); /* extend, reverse */
    }
    return 0;
}

/* Registers written by a 32-bit data processing or multiply instruction. */
static int dest32(unsigned hw1, unsigned hw2)
{
    if ((hw1 & 0xFE00u) == 0xEA00u || ((hw1 & 0xF800u) == 0xF000u && !(hw2 & 0x8000u)) ||
        (hw1 & 0xFF00u) == 0xFA00u || (hw1 & 0xFF80u) == 0xFB00u) {
        return reg_mask((hw2 >> 8) & 0xFu);
    }
    if ((hw1 & 0xFF80u) == 0xFB80u) { /* long multiply: RdLo and RdHi; divide: Rd */
        int div = ((hw2 >> 4) & 0xFu) == 0xFu;
        return reg_mask((hw2 >> 8) & 0xFu) | (div ? 0 : reg_mask((hw2 >> 12) & 0xFu));
    }
    return 0;
}

/* 16-bit Thumb (ARMv7-M ARM A5.2). */
static struct insn_class decode16(unsigned hw)
{
    unsigned rt = hw & 7u, rn = (hw >> 3) & 7u;
    if ((hw & 0xFFC0u) == 0x4340u) {
        return make(C_MUL); /* MULS */
    }
    if ((hw & 0xFC00u) == 0x4400u) { /* special data processing, branch and exchange */
        unsigned op = (hw >> 8) & 3u;
        unsigned rd = ((hw >> 4) & 8u) | rt;
        if (op == 3u) {
            return make(C_BX);
        }
        return make(op != 1u && rd == 15u ? C_PC_ALU : C_ALU);
    }
    if ((hw & 0xF800u) == 0x4800u) {
        return single(C_LOAD, (int)((hw >> 8) & 7u), 15, -1); /* LDR literal */
    }
    if ((hw & 0xF000u) == 0x5000u) { /* register offset: STR STRH STRB LDRSB LDR LDRH LDRB LDRSH */
        unsigned opb = (hw >> 9) & 7u;
        return single(opb <= 2u ? C_STORE_REG : C_LOAD, (int)rt, (int)rn, (int)((hw >> 6) & 7u));
    }
    if ((hw & 0xE000u) == 0x6000u || (hw & 0xF000u) == 0x8000u) { /* imm offset word/byte/half */
        return single((hw & 0x0800u) ? C_LOAD : C_STORE_IMM, (int)rt, (int)rn, -1);
    }
    if ((hw & 0xF000u) == 0x9000u) { /* SP relative */
        return single((hw & 0x0800u) ? C_LOAD : C_STORE_IMM, (int)((hw >> 8) & 7u), 13, -1);
    }
    if ((hw & 0xF500u) == 0xB100u) {
        return make(C_CBZ);
    }
    if ((hw & 0xFE00u) == 0xB400u) { /* PUSH {list, LR} */
        return multiple(0, (hw & 0xFFu) | ((hw & 0x100u) << 6), 13);
    }
    if ((hw & 0xFE00u) == 0xBC00u) { /* POP {list, PC} */
        return multiple(1, (hw & 0xFFu) | ((hw & 0x100u) << 7), 13);
    }
    if ((hw & 0xF000u) == 0xC000u) { /* STMIA / LDMIA */
        return multiple((hw & 0x0800u) != 0, hw & 0xFFu, (int)((hw >> 8) & 7u));
    }
    if ((hw & 0xF000u) == 0xD000u) {
        return make(((hw >> 8) & 0xEu) == 0xEu ? C_ALU : C_BCOND); /* UDF, SVC: not branches */
    }
    if ((hw & 0xF800u) == 0xE000u) {
        return make(C_B);
    }
    return make(C_ALU);
}

/* 32-bit Thumb-2 (ARMv7-M ARM A5.3). */
static struct insn_class decode32(unsigned hw1, unsigned hw2)
{
    unsigned rn = hw1 & 0xFu, rt = (hw2 >> 12) & 0xFu;
    if ((hw1 & 0xFE40u) == 0xE800u) { /* load/store multiple */
        return multiple((hw1 & 0x10u) != 0, hw2, (int)rn);
    }
    if ((hw1 & 0xFE40u) == 0xE840u) { /* dual, exclusive, table branch */
        if ((hw1 & 0xFFF0u) == 0xE8D0u && (hw2 & 0xFFE0u) == 0xF000u) {
            return make(C_TBB);
        }
        if ((hw1 & 0xFFF0u) == 0xE850u) {
            return single(C_LOAD, (int)rt, (int)rn, -1); /* LDREX */
        }
        if ((hw1 & 0xFFF0u) == 0xE840u) {
            return single(C_STORE_REG, (int)rt, (int)rn, -1); /* STREX */
        }
        if ((hw1 & 0xFFE0u) == 0xE8C0u && ((hw2 >> 4) & 0xCu) == 0x4u) { /* LDREXB/H, STREXB/H */
            return single((hw1 & 0x10u) ? C_LOAD : C_STORE_REG, (int)rt, (int)rn, -1);
        }
        return single(C_LSD, (int)rt, (int)rn, -1);
    }
    if ((hw1 & 0xF800u) == 0xF000u && (hw2 & 0x8000u)) { /* branches and miscellaneous control */
        unsigned op1 = (hw2 >> 12) & 5u;
        if (op1 == 5u) {
            return make(C_BL);
        }
        if (op1 == 1u) {
            return make(C_B);
        }
        if (op1 == 0u) {
            if (((hw1 >> 7) & 7u) != 7u) {
                return make(C_BCOND);
            }
            unsigned op = (hw2 >> 4) & 0xFu;
            if ((hw1 & 0xFFF0u) == 0xF3B0u && op >= 4u && op <= 6u) { /* DSB, DMB, ISB */
                return make(C_BARRIER);
            }
        }
        return make(C_ALU); /* MSR, MRS, hints, UDF */
    }
    if ((hw1 & 0xFE00u) == 0xF800u) { /* load/store single */
        int load = (hw1 & 0x10u) != 0;
        int reg_offset = !(hw1 & 0x80u) && rn != 15u && ((hw2 >> 6) & 0x3Fu) == 0u;
        int rm = reg_offset ? (int)(hw2 & 0xFu) : -1;
        if (!load) {
            return single(reg_offset ? C_STORE_REG : C_STORE_IMM, (int)rt, (int)rn, rm);
        }
        if (rt == 15u) {
            /* LDR PC; PLD / PLI (byte and halfword loads into the PC are preload hints) */
            return make(((hw1 >> 5) & 3u) == 2u ? C_LDR_PC : C_ALU);
        }
        return single(C_LOAD, (int)rt, (int)rn, rm);
    }
    if ((hw1 & 0xFF80u) == 0xFB00u) {
        return make(C_MUL); /* MUL, MLA, MLS, SMLAD, SMLABB, SMUAD, USADA8, ... */
    }
    if ((hw1 & 0xFF80u) == 0xFB80u) { /* long multiply, divide */
        unsigned op1 = (hw1 >> 4) & 7u, op2 = (hw2 >> 4) & 0xFu;
        return make((op1 == 1u || op1 == 3u) && op2 == 0xFu ? C_DIV : C_MUL);
    }
    return make(C_ALU);
}

static struct insn_class classify_bytes(const unsigned char *p, size_t size)
{
    unsigned hw1 = (unsigned)p[0] | ((unsigned)p[1] << 8);
    struct insn_class c;
    if (size >= 4) {
        unsigned hw2 = (unsigned)p[2] | ((unsigned)p[3] << 8);
        c = decode32(hw1, hw2);
        c.dest = c.cls <= C_DIV ? dest32(hw1, hw2) : 0;
    } else {
        c = decode16(hw1);
        c.dest = c.cls <= C_DIV ? dest16(hw1) : 0;
    }
    return c;
}

static struct insn_class classify(const struct qemu_plugin_insn *insn)
{
    return classify_bytes(qemu_plugin_insn_data(insn), qemu_plugin_insn_size(insn));
}

/* The decoder alone, for tests/test_profile_cycles.py (checked against objdump on whole
 * images): the class of the instruction at p (2 or 4 bytes), before the pipelining rule;
 * *regs, *addr_regs and *dest as in struct insn_class. */
__attribute__((visibility("default"))) int mq_classify(const unsigned char *p, unsigned size,
                                                       int *regs, int *addr_regs, int *dest)
{
    struct insn_class c = classify_bytes(p, size);
    *regs = c.regs;
    *addr_regs = c.addr_regs;
    *dest = c.dest;
    return c.cls;
}

static void on_block(unsigned int vcpu_index, void *userdata)
{
    const struct tb_rec *cur = userdata;
    (void)vcpu_index;
    if (g_prev != NULL && g_prev->branch >= 0 && cur->start != g_prev->fallthrough) {
        g_taken[g_prev->branch - C_NOT_BRANCH_END]++;
        if (cur->first_wide && (cur->start & 2u)) {
            g_wide[g_prev->branch - C_NOT_BRANCH_END]++;
        }
    }
    g_prev = cur;
}

static void print_counts(const char *label)
{
    int i;
    fprintf(g_log, "%s %" PRIu64, label, g_count);
    for (i = 0; i < N_CLASSES; ++i) {
        fprintf(g_log, " %" PRIu64, g_class[i]);
    }
    fprintf(g_log, " %" PRIu64 " %" PRIu64, g_regs, g_agu);
    for (i = 0; i < N_BRANCH; ++i) {
        fprintf(g_log, " %" PRIu64, g_taken[i]);
    }
    for (i = 0; i < N_BRANCH; ++i) {
        fprintf(g_log, " %" PRIu64, g_wide[i]);
    }
    fputc('\n', g_log);
}

static void on_marker(unsigned int vcpu_index, void *userdata)
{
    char label[32];
    (void)vcpu_index;
    snprintf(label, sizeof label, "%" PRIx64, (uint64_t)(uintptr_t)userdata);
    print_counts(label);
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
    struct tb_rec *rec;
    int prev_load_rt = -1; /* destination of the previous instruction if a single load */
    int prev_dest = 0;     /* registers the previous instruction wrote, if data processing */
    (void)id;
    if (n == 0 || (rec = calloc(1, sizeof *rec)) == NULL) {
        return;
    }
    rec->branch = -1;
    for (i = 0; i < n; ++i) {
        struct qemu_plugin_insn *insn = qemu_plugin_tb_get_insn(tb, i);
        uint64_t vaddr = qemu_plugin_insn_vaddr(insn);
        size_t size = qemu_plugin_insn_size(insn);
        struct insn_class c = classify(insn);
        int pipelined = prev_load_rt >= 0 && !(c.addr_regs & (1 << prev_load_rt));
        int agu_stall = (c.addr_regs & prev_dest) != 0;
        if (pipelined && c.cls == C_LOAD) {
            c.cls = C_LOAD_PIPE;
        } else if (pipelined && c.cls == C_STORE_REG) {
            c.cls = C_STORE_PIPE;
        }
        prev_load_rt = c.load_rt;
        prev_dest = c.dest;
        if (i == 0) {
            rec->start = vaddr;
            rec->first_wide = size >= 4;
        }
        if (i + 1 == n) {
            rec->fallthrough = vaddr + size;
            rec->branch = c.cls >= C_NOT_BRANCH_END ? c.cls : -1;
        }
        qemu_plugin_register_vcpu_insn_exec_inline(insn, QEMU_PLUGIN_INLINE_ADD_U64, &g_count, 1);
        qemu_plugin_register_vcpu_insn_exec_inline(insn, QEMU_PLUGIN_INLINE_ADD_U64,
                                                   &g_class[c.cls], 1);
        if (c.regs > 0) {
            qemu_plugin_register_vcpu_insn_exec_inline(insn, QEMU_PLUGIN_INLINE_ADD_U64, &g_regs,
                                                       (uint64_t)c.regs);
        }
        if (agu_stall) {
            qemu_plugin_register_vcpu_insn_exec_inline(insn, QEMU_PLUGIN_INLINE_ADD_U64, &g_agu, 1);
        }
        if (is_marker(vaddr)) {
            qemu_plugin_register_vcpu_insn_exec_cb(insn, on_marker, QEMU_PLUGIN_CB_NO_REGS,
                                                   (void *)(uintptr_t)vaddr);
        }
    }
    qemu_plugin_register_vcpu_tb_exec_cb(tb, on_block, QEMU_PLUGIN_CB_NO_REGS, rec);
}

static void on_exit(qemu_plugin_id_t id, void *userdata)
{
    (void)id;
    (void)userdata;
    print_counts("total");
    fclose(g_log);
}

__attribute__((visibility("default"))) int
qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc, char **argv)
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
    fprintf(g_log, "fields count");
    for (i = 0; i < N_CLASSES; ++i) {
        fprintf(g_log, " %s", CLASS_NAMES[i]);
    }
    fprintf(g_log, " regs agu");
    for (i = C_NOT_BRANCH_END; i < N_CLASSES; ++i) {
        fprintf(g_log, " taken_%s", CLASS_NAMES[i]);
    }
    for (i = C_NOT_BRANCH_END; i < N_CLASSES; ++i) {
        fprintf(g_log, " wide_%s", CLASS_NAMES[i]);
    }
    fputc('\n', g_log);
    qemu_plugin_register_vcpu_tb_trans_cb(id, on_translate);
    qemu_plugin_register_atexit_cb(id, on_exit, NULL);
    return 0;
}
