/* microq targets: runs a generated model on the host, one sample at a time, as a standalone
 * program (the sanitizer builds of tests/test_sanitizers.py use it: no Python in the process).
 *
 * mq_model.h (runtime/mcu.py's glue, as for harness.c) names the model. Usage:
 *     prog IN OUT
 * IN holds N samples back to back, each the model's inputs back to back, in order; OUT
 * receives each sample's outputs likewise. Every input and output is its own malloc'd buffer
 * of exactly its size, so AddressSanitizer reports any access past one. Exit status: 0, 2 on
 * an I/O error, 3 when the model returned a non-zero status (printed). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "mq_model.h"

static const int32_t k_input_sizes[MQ_MODEL_NUM_INPUTS] = MQ_MODEL_INPUT_SIZES;
static const int32_t k_output_sizes[MQ_MODEL_NUM_OUTPUTS] = MQ_MODEL_OUTPUT_SIZES;

int main(int argc, char **argv)
{
    int8_t *inputs[MQ_MODEL_NUM_INPUTS];
    int8_t *outputs[MQ_MODEL_NUM_OUTPUTS];
    FILE *in;
    FILE *out;
    int k;
    long sample = 0;
    int status = 0;

    if (argc != 3) {
        fputs("usage: prog IN OUT\n", stderr);
        return 2;
    }
    for (k = 0; k < MQ_MODEL_NUM_INPUTS; ++k) {
        inputs[k] = (int8_t *)malloc((size_t)k_input_sizes[k]);
        if (inputs[k] == NULL) {
            return 2;
        }
    }
    for (k = 0; k < MQ_MODEL_NUM_OUTPUTS; ++k) {
        outputs[k] = (int8_t *)malloc((size_t)k_output_sizes[k]);
        if (outputs[k] == NULL) {
            return 2;
        }
    }
    in = fopen(argv[1], "rb");
    out = fopen(argv[2], "wb");
    if (in == NULL || out == NULL) {
        fputs("microq: cannot open the input or output file\n", stderr);
        return 2;
    }
    for (;;) {
        int c = fgetc(in);
        if (c == EOF) {
            break;
        }
        if (ungetc(c, in) == EOF) {
            return 2;
        }
        for (k = 0; k < MQ_MODEL_NUM_INPUTS; ++k) {
            if (fread(inputs[k], 1, (size_t)k_input_sizes[k], in) != (size_t)k_input_sizes[k]) {
                fputs("microq: the input file is not a whole number of samples\n", stderr);
                return 2;
            }
        }
        status = MQ_MODEL_INVOKE((const int8_t *const *)inputs, outputs);
        if (status != 0) {
            fprintf(stderr, "microq: the model returned status %d on sample %ld\n", status, sample);
            return 3;
        }
        for (k = 0; k < MQ_MODEL_NUM_OUTPUTS; ++k) {
            if (fwrite(outputs[k], 1, (size_t)k_output_sizes[k], out) !=
                (size_t)k_output_sizes[k]) {
                return 2;
            }
        }
        ++sample;
    }
    fclose(in);
    if (fclose(out) != 0) {
        return 2;
    }
    for (k = 0; k < MQ_MODEL_NUM_INPUTS; ++k) {
        free(inputs[k]);
    }
    for (k = 0; k < MQ_MODEL_NUM_OUTPUTS; ++k) {
        free(outputs[k]);
    }
    return 0;
}
