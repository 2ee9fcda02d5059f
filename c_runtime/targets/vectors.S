/* microq MCU targets: vector table and fault entry, shared by every Cortex-M board.
 *
 * Thumb code valid on ARMv6-M, ARMv7-M and ARMv8-M. Every exception other than reset lands in
 * mq_fault_entry: this harness enables no interrupts, so any exception is a fault, and a fault
 * must end the emulated run with a non-zero status instead of hanging QEMU.
 */
    .syntax unified
    .thumb

    .section .vectors, "a"
    .align 2
    .global mq_vectors
mq_vectors:
    .word _stack_top            /* initial MSP */
    .word mq_reset_handler
    .word mq_fault_entry        /* NMI */
    .word mq_fault_entry        /* HardFault */
    .word mq_fault_entry        /* MemManage */
    .word mq_fault_entry        /* BusFault */
    .word mq_fault_entry        /* UsageFault */
    .word mq_fault_entry        /* SecureFault (v8-M) */
    .word 0, 0, 0
    .word mq_fault_entry        /* SVCall */
    .word mq_fault_entry        /* DebugMonitor */
    .word 0
    .word mq_fault_entry        /* PendSV */
    .word mq_fault_entry        /* SysTick */
    .rept 32
    .word mq_fault_entry        /* external interrupts */
    .endr

    .text
    .align 1
    .global mq_fault_entry
    .thumb_func
    .type mq_fault_entry, %function
/* Pass the stacked exception frame (r0-r3, r12, lr, pc, xpsr) to mq_fault_report. Bit 2 of
 * EXC_RETURN tells which stack the frame was pushed on. Written with v6-M instructions only. */
mq_fault_entry:
    movs r0, #4
    mov r1, lr
    tst r0, r1
    beq 1f
    mrs r0, psp
    b 2f
1:  mrs r0, msp
2:  ldr r2, =mq_fault_report
    bx r2
    .pool
    .size mq_fault_entry, . - mq_fault_entry
