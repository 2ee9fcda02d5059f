/* microq MCU targets: Arm semihosting calls through bkpt 0xAB (v6-M, v7-M, v8-M). */
#include "mq_semihost.h"

#define SYS_OPEN 0x01
#define SYS_CLOSE 0x02
#define SYS_WRITE0 0x04
#define SYS_WRITE 0x05
#define SYS_READ 0x06
#define SYS_FLEN 0x0C
#define SYS_EXIT_EXTENDED 0x20
#define ADP_STOPPED_APPLICATION_EXIT 0x20026

static int32_t sh_call(int32_t op, const void *arg)
{
    register int32_t r0 __asm__("r0") = op;
    register const void *r1 __asm__("r1") = arg;

    /* "memory": the host reads and writes the argument block and the buffers it points to. */
    __asm__ volatile("bkpt 0xAB" : "+r"(r0) : "r"(r1) : "memory");
    return r0;
}

/* The attribute stops gcc from turning this loop into a call to strlen, which we lack. */
__attribute__((optimize("no-tree-loop-distribute-patterns"))) static int32_t str_len(const char *s)
{
    int32_t n = 0;
    while (s[n] != '\0') {
        ++n;
    }
    return n;
}

int32_t mq_sh_open(const char *name, int32_t mode)
{
    uint32_t args[3];
    args[0] = (uint32_t)(uintptr_t)name;
    args[1] = (uint32_t)mode;
    args[2] = (uint32_t)str_len(name);
    return sh_call(SYS_OPEN, args);
}

int32_t mq_sh_close(int32_t handle)
{
    uint32_t args[1];
    args[0] = (uint32_t)handle;
    return sh_call(SYS_CLOSE, args);
}

int32_t mq_sh_read(int32_t handle, void *buf, int32_t len)
{
    uint32_t args[3];
    args[0] = (uint32_t)handle;
    args[1] = (uint32_t)(uintptr_t)buf;
    args[2] = (uint32_t)len;
    return sh_call(SYS_READ, args);
}

int32_t mq_sh_write(int32_t handle, const void *buf, int32_t len)
{
    uint32_t args[3];
    args[0] = (uint32_t)handle;
    args[1] = (uint32_t)(uintptr_t)buf;
    args[2] = (uint32_t)len;
    return sh_call(SYS_WRITE, args);
}

int32_t mq_sh_flen(int32_t handle)
{
    uint32_t args[1];
    args[0] = (uint32_t)handle;
    return sh_call(SYS_FLEN, args);
}

void mq_sh_write0(const char *text)
{
    (void)sh_call(SYS_WRITE0, text);
}

void mq_sh_exit(int32_t code)
{
    uint32_t args[2];
    args[0] = ADP_STOPPED_APPLICATION_EXIT;
    args[1] = (uint32_t)code;
    (void)sh_call(SYS_EXIT_EXTENDED, args);
    for (;;) {
        /* not reached: QEMU has exited */
    }
}
