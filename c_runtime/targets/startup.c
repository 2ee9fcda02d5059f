/* microq MCU targets: reset handler, fault report and the libc functions gcc may call.
 *
 * No vendor SDK and no C library: the image is linked with -nostdlib -lgcc.
 */
#include <stddef.h>
#include <stdint.h>

#include "mq_semihost.h"
#include "mq_target.h"

int main(void);
void mq_reset_handler(void) __attribute__((noreturn));
void mq_fault_report(const uint32_t *frame) __attribute__((noreturn));

/* gcc turns byte loops into calls to these (even under -ffreestanding), so they must exist;
 * the attribute stops it from turning these very loops into calls to themselves. */
#define MQ_NO_LOOP_TO_CALL __attribute__((optimize("no-tree-loop-distribute-patterns")))

/* Word copies when both pointers are word aligned (the arena and most buffers are), bytes
 * otherwise; v6-M faults on unaligned word access, so alignment is checked, not assumed. */
MQ_NO_LOOP_TO_CALL void *memcpy(void *dst, const void *src, size_t n)
{
    uint8_t *d = (uint8_t *)dst;
    const uint8_t *s = (const uint8_t *)src;
    if ((((uintptr_t)d | (uintptr_t)s) & 3u) == 0u) {
        for (; n >= 4u; n -= 4u, d += 4, s += 4) {
            *(uint32_t *)(void *)d = *(const uint32_t *)(const void *)s;
        }
    }
    while (n-- > 0u) {
        *d++ = *s++;
    }
    return dst;
}

MQ_NO_LOOP_TO_CALL void *memmove(void *dst, const void *src, size_t n)
{
    uint8_t *d = (uint8_t *)dst;
    const uint8_t *s = (const uint8_t *)src;
    if (d <= s || d >= s + n) {
        return memcpy(dst, src, n);
    }
    while (n-- > 0u) {
        d[n] = s[n];
    }
    return dst;
}

MQ_NO_LOOP_TO_CALL void *memset(void *dst, int value, size_t n)
{
    uint8_t *d = (uint8_t *)dst;
    uint32_t word = (uint8_t)value * 0x01010101u;
    if (((uintptr_t)d & 3u) == 0u) {
        for (; n >= 4u; n -= 4u, d += 4) {
            *(uint32_t *)(void *)d = word;
        }
    }
    while (n-- > 0u) {
        *d++ = (uint8_t)word;
    }
    return dst;
}

void mq_reset_handler(void)
{
    uint32_t *src = _sidata;
    uint32_t *dst = _sdata;

    while (dst < _edata) {
        *dst++ = *src++;
    }
    for (dst = _sbss; dst < _ebss; ++dst) {
        *dst = 0;
    }
#if defined(__ARM_FP) || defined(__ARM_FEATURE_MVE)
    /* Full access to CP10/CP11 in CPACR: with a hard-float ABI gcc may use FP registers even in
     * integer code (spills, moves), and the first FP instruction faults while they are off. */
    *(volatile uint32_t *)0xE000ED88u |= 0xFu << 20;
    __asm__ volatile("dsb\n\tisb" ::: "memory");
#endif
    mq_sh_exit(main());
}

static void put_hex(char *out, uint32_t value)
{
    int i;
    for (i = 7; i >= 0; --i) {
        uint32_t nibble = value & 0xFu;
        out[i] = (char)(nibble < 10u ? '0' + nibble : 'a' + nibble - 10u);
        value >>= 4;
    }
}

/* frame: r0, r1, r2, r3, r12, lr, pc, xpsr as the core stacked them. */
void mq_fault_report(const uint32_t *frame)
{
    char msg[] = "microq: guest fault at pc=0x........ lr=0x........ xpsr=0x........\n";
    put_hex(msg + 28, frame[6]);
    put_hex(msg + 42, frame[5]);
    put_hex(msg + 58, frame[7]);
    mq_sh_write0(msg);
    mq_sh_exit(MQ_EXIT_FAULT);
}
