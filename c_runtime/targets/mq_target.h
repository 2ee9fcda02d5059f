/* microq MCU targets: what startup, harness and the Python runner (runtime/mcu.py) agree on.
 *
 * Exit codes of the emulated program (QEMU exits with them through semihosting).
 */
#ifndef MQ_TARGET_H
#define MQ_TARGET_H

#include <stdint.h>

#define MQ_EXIT_OK 0
#define MQ_EXIT_IO 2     /* an input/output file could not be opened, read or written */
#define MQ_EXIT_STATUS 3 /* NAME_invoke_multi returned a non-zero mq_status */
#define MQ_EXIT_FAULT 70 /* a HardFault (or any other exception) was taken */

/* Linker script symbols (sections.ld). */
extern uint32_t _sidata[];
extern uint32_t _sdata[];
extern uint32_t _edata[];
extern uint32_t _sbss[];
extern uint32_t _ebss[];
extern uint32_t _stack_limit[];
extern uint32_t _stack_top[];

#endif /* MQ_TARGET_H */
