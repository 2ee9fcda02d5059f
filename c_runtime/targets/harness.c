/* microq MCU targets: runs a generated model on every sample of a host file (semihosting).
 *
 * mq_model.h (written by runtime/mcu.py next to the build) includes NAME.h and names the model:
 * MQ_MODEL_INVOKE, MQ_MODEL_NUM_INPUTS/OUTPUTS, MQ_MODEL_INPUT/OUTPUT_SIZES ({...} in bytes),
 * MQ_MODEL_INPUT/OUTPUT_BYTES (their sums).
 *
 * mq_in.bin holds N samples back to back, each the model's inputs back to back, in order;
 * mq_out.bin receives each sample's outputs likewise. mq_stats.bin receives three uint32
 * words: samples completed, the last kernel status, and the deepest stack use of one invoke
 * in bytes (measured by painting the stack).
 *
 * runtime/profile.py counts instructions between the call to MQ_MODEL_INVOKE in main and its
 * return address, so main must call it directly (it does: another translation unit, no LTO).
 */
#include <stdint.h>

#include "mq_model.h"
#include "mq_semihost.h"
#include "mq_target.h"

#define STACK_PAINT 0xA5A5A5A5u
#define STACK_PAINT_MAX_BYTES (64u * 1024u)

/* 4-byte aligned: a 16x8 model reads and writes its I/O as int16 (M0+ faults unaligned) */
static union {
    int8_t b[MQ_MODEL_INPUT_BYTES];
    int32_t align;
} g_in_u;
static union {
    int8_t b[MQ_MODEL_OUTPUT_BYTES];
    int32_t align;
} g_out_u;
#define g_in g_in_u.b
#define g_out g_out_u.b
static const int32_t k_input_sizes[MQ_MODEL_NUM_INPUTS] = MQ_MODEL_INPUT_SIZES;
static const int32_t k_output_sizes[MQ_MODEL_NUM_OUTPUTS] = MQ_MODEL_OUTPUT_SIZES;

static uintptr_t current_sp(void)
{
    uintptr_t sp;
    __asm__ volatile("mov %0, sp" : "=r"(sp));
    return sp;
}

static uintptr_t paint_floor(uintptr_t sp)
{
    uintptr_t floor = (uintptr_t)_stack_limit;
    if (sp - floor > STACK_PAINT_MAX_BYTES) {
        floor = sp - STACK_PAINT_MAX_BYTES;
    }
    return floor & ~(uintptr_t)3u;
}

/* Paints from the stack floor up to 64 bytes below this function's own frame. */
static void __attribute__((noinline)) paint_stack(void)
{
    uintptr_t top = (current_sp() - 64u) & ~(uintptr_t)3u;
    volatile uint32_t *p = (volatile uint32_t *)paint_floor(top);

    while ((uintptr_t)p < top) {
        *p++ = STACK_PAINT;
    }
}

/* Bytes of stack below `sp` that were written since paint_stack (an upper bound when the use
 * stays within paint_stack's own unpainted frame). */
static uint32_t stack_used_below(uintptr_t sp)
{
    volatile const uint32_t *p = (volatile const uint32_t *)paint_floor(sp);

    while ((uintptr_t)p < sp && *p == STACK_PAINT) {
        ++p;
    }
    return (uint32_t)(sp - (uintptr_t)p);
}

static int write_stats(uint32_t samples, uint32_t status, uint32_t stack_bytes)
{
    uint32_t stats[3];
    int32_t handle = mq_sh_open("mq_stats.bin", MQ_SH_MODE_WB);
    int32_t left;

    if (handle < 0) {
        return MQ_EXIT_IO;
    }
    stats[0] = samples;
    stats[1] = status;
    stats[2] = stack_bytes;
    left = mq_sh_write(handle, stats, (int32_t)sizeof(stats));
    (void)mq_sh_close(handle);
    return left == 0 ? MQ_EXIT_OK : MQ_EXIT_IO;
}

int main(void)
{
    const int8_t *inputs[MQ_MODEL_NUM_INPUTS];
    int8_t *outputs[MQ_MODEL_NUM_OUTPUTS];
    int32_t in_file;
    int32_t out_file;
    int32_t length;
    int32_t samples;
    int32_t i;
    int32_t k;
    int32_t pos;
    int status = 0;
    uint32_t stack_max = 0;

    pos = 0;
    for (k = 0; k < MQ_MODEL_NUM_INPUTS; ++k) {
        inputs[k] = g_in + pos;
        pos += k_input_sizes[k];
    }
    pos = 0;
    for (k = 0; k < MQ_MODEL_NUM_OUTPUTS; ++k) {
        outputs[k] = g_out + pos;
        pos += k_output_sizes[k];
    }

    in_file = mq_sh_open("mq_in.bin", MQ_SH_MODE_RB);
    if (in_file < 0) {
        mq_sh_write0("microq: cannot open mq_in.bin\n");
        return MQ_EXIT_IO;
    }
    length = mq_sh_flen(in_file);
    if (length < 0 || length % MQ_MODEL_INPUT_BYTES != 0) {
        mq_sh_write0("microq: mq_in.bin is not a whole number of samples\n");
        return MQ_EXIT_IO;
    }
    samples = length / MQ_MODEL_INPUT_BYTES;
    out_file = mq_sh_open("mq_out.bin", MQ_SH_MODE_WB);
    if (out_file < 0) {
        mq_sh_write0("microq: cannot open mq_out.bin\n");
        return MQ_EXIT_IO;
    }

    for (i = 0; i < samples; ++i) {
        uintptr_t sp;
        uint32_t used;

        if (mq_sh_read(in_file, g_in, MQ_MODEL_INPUT_BYTES) != 0) {
            mq_sh_write0("microq: short read from mq_in.bin\n");
            return MQ_EXIT_IO;
        }
        paint_stack();
        sp = current_sp();
        status = MQ_MODEL_INVOKE(inputs, outputs);
        used = stack_used_below(sp);
        stack_max = used > stack_max ? used : stack_max;
        if (status != 0) {
            break;
        }
        if (mq_sh_write(out_file, g_out, MQ_MODEL_OUTPUT_BYTES) != 0) {
            mq_sh_write0("microq: short write to mq_out.bin\n");
            return MQ_EXIT_IO;
        }
    }
    (void)mq_sh_close(in_file);
    (void)mq_sh_close(out_file);
    if (write_stats((uint32_t)i, (uint32_t)status, stack_max) != MQ_EXIT_OK) {
        return MQ_EXIT_IO;
    }
    return status != 0 ? MQ_EXIT_STATUS : MQ_EXIT_OK;
}
