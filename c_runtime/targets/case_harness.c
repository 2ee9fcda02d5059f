/* microq targets: runs a generated case table (see case_harness.h) on the host or on an
 * emulated Cortex-M core. */
#include <stddef.h>
#include <stdint.h>

#include "case_harness.h"

#define MQ_CASE_MAX_BUFFERS 64u

#if !defined(__arm__)
#define MQ_CASES_HOST 1
#endif

#ifdef MQ_CASES_HOST
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void *g_buffers[MQ_CASE_MAX_BUFFERS];

static void put(const char *text)
{
    fputs(text, stdout);
}

static void fatal(const char *text)
{
    put(text);
    fflush(stdout);
    exit(2);
}

void *mq_case_buffer(const void *init, uint32_t bytes)
{
    uint32_t i;
    void *p;

    for (i = 0; i < MQ_CASE_MAX_BUFFERS && g_buffers[i] != NULL; ++i) {
    }
    if (i == MQ_CASE_MAX_BUFFERS) {
        fatal("microq cases: too many buffers in one case\n");
    }
    /* Exactly `bytes`: AddressSanitizer reports any access past the recorded size. */
    p = malloc(bytes > 0u ? bytes : 1u);
    if (p == NULL) {
        fatal("microq cases: out of memory\n");
    }
    memcpy(p, init, bytes);
    g_buffers[i] = p;
    return p;
}

void mq_case_end(void)
{
    uint32_t i;

    for (i = 0; i < MQ_CASE_MAX_BUFFERS; ++i) {
        free(g_buffers[i]);
        g_buffers[i] = NULL;
    }
}

#else /* emulated Cortex-M */
#include "mq_semihost.h"

#ifndef MQ_CASE_SCRATCH_BYTES
#define MQ_CASE_SCRATCH_BYTES (3u * 1024u * 1024u)
#endif

static uint64_t g_scratch[MQ_CASE_SCRATCH_BYTES / 8u];
static uint32_t g_used;

static void put(const char *text)
{
    mq_sh_write0(text);
}

static void fatal(const char *text)
{
    put(text);
    mq_sh_exit(2);
}

void *mq_case_buffer(const void *init, uint32_t bytes)
{
    uint8_t *p = (uint8_t *)g_scratch + g_used;
    const uint8_t *s = (const uint8_t *)init;
    uint32_t i;

    if (bytes > MQ_CASE_SCRATCH_BYTES - g_used) {
        fatal("microq cases: scratch area too small for one case\n");
    }
    for (i = 0; i < bytes; ++i) {
        p[i] = s[i];
    }
    g_used += (bytes + 7u) & ~7u;
    return p;
}

void mq_case_end(void)
{
    g_used = 0;
}
#endif

static uint32_t g_failed_checks;
static uint32_t g_checks;

static void put_int(int64_t v)
{
    char buf[24];
    int i = 23;
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;

    buf[i] = '\0';
    do {
        buf[--i] = (char)('0' + (int)(u % 10u));
        u /= 10u;
    } while (u != 0u);
    if (v < 0) {
        buf[--i] = '-';
    }
    put(buf + i);
}

void mq_case_ret(uint32_t case_id, int64_t got, int64_t want)
{
    ++g_checks;
    if (got != want) {
        ++g_failed_checks;
        put("FAIL case ");
        put_int((int64_t)case_id);
        put(" return ");
        put_int(got);
        put(" want ");
        put_int(want);
        put("\n");
    }
}

void mq_case_check(uint32_t case_id, uint32_t buffer, const void *got, const void *want,
                   uint32_t bytes)
{
    const uint8_t *g = (const uint8_t *)got;
    const uint8_t *w = (const uint8_t *)want;
    uint32_t i;
    uint32_t bad = 0;
    uint32_t first = 0;

    ++g_checks;
    for (i = 0; i < bytes; ++i) {
        if (g[i] != w[i]) {
            if (bad == 0u) {
                first = i;
            }
            ++bad;
        }
    }
    if (bad != 0u) {
        ++g_failed_checks;
        put("FAIL case ");
        put_int((int64_t)case_id);
        put(" buffer ");
        put_int((int64_t)buffer);
        put(": ");
        put_int((int64_t)bad);
        put(" bytes differ, first at byte ");
        put_int((int64_t)first);
        put(": got ");
        put_int((int64_t)g[first]);
        put(" want ");
        put_int((int64_t)w[first]);
        put("\n");
    }
}

int main(void)
{
    mq_cases_run();
    put("microq cases: ");
    put_int((int64_t)mq_cases_count);
    put(" cases, ");
    put_int((int64_t)g_checks);
    put(" checks, ");
    put_int((int64_t)g_failed_checks);
    put(" failed\n");
    return g_failed_checks == 0u ? 0 : 1;
}
