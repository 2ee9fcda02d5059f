/* microq MCU targets: Arm semihosting calls (file I/O, console, exit) without a C library.
 *
 * QEMU serves these with -semihosting-config enable=on,target=native; file names are relative
 * to QEMU's working directory.
 */
#ifndef MQ_SEMIHOST_H
#define MQ_SEMIHOST_H

#include <stdint.h>

#define MQ_SH_MODE_RB 1
#define MQ_SH_MODE_WB 5

/* Returns a handle >= 0, or -1. */
int32_t mq_sh_open(const char *name, int32_t mode);
int32_t mq_sh_close(int32_t handle);
/* Both return the number of bytes NOT transferred (0 = complete), as the semihosting spec. */
int32_t mq_sh_read(int32_t handle, void *buf, int32_t len);
int32_t mq_sh_write(int32_t handle, const void *buf, int32_t len);
/* Length of an open file in bytes, or -1. */
int32_t mq_sh_flen(int32_t handle);
/* Write a NUL-terminated string to the debug console (QEMU's stderr). */
void mq_sh_write0(const char *text);
/* End the emulation; QEMU exits with `code`. */
void mq_sh_exit(int32_t code) __attribute__((noreturn));

#endif /* MQ_SEMIHOST_H */
