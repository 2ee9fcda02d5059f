/* microq targets: the case-table harness. A generated cases file (tests/case_recorder.py) defines
 * mq_cases_run() and mq_cases_count; each case copies its recorded buffers into fresh ones
 * with mq_case_buffer, calls one c_runtime kernel, then checks its return value and every
 * buffer against the recorded results and releases the buffers with mq_case_end.
 *
 * case_harness.c implements these for two platforms:
 * - the host (MQ_CASES_HOST, set where __arm__ is not): malloc'd buffers of exactly the recorded
 * size (so AddressSanitizer sees any access past them), reports with stdio;
 * - otherwise an emulated Cortex-M: buffers from a static scratch area, reports through
 *   semihosting (mq_semihost.h).
 * Output: one line per failed check, then "microq cases: <run> run, <failed> failed". The
 * exit status is 0 when every check passed, 1 otherwise. */
#ifndef MQ_CASE_HARNESS_H
#define MQ_CASE_HARNESS_H

#include <stdint.h>

/* The recorded data of the generated cases: on the emulated boards in its own section, which
 * mps2_cases.ld places in PSRAM (it does not fit the 4 MiB flash). */
#if defined(__arm__)
#define MQ_CASE_DATA __attribute__((section(".mq_case_data")))
#else
#define MQ_CASE_DATA
#endif

void *mq_case_buffer(const void *init, uint32_t bytes);
void mq_case_end(void);
void mq_case_ret(uint32_t case_id, int64_t got, int64_t want);
void mq_case_check(uint32_t case_id, uint32_t buffer, const void *got, const void *want,
                   uint32_t bytes);

/* Generated. */
void mq_cases_run(void);
extern const uint32_t mq_cases_count;

#endif /* MQ_CASE_HARNESS_H */
