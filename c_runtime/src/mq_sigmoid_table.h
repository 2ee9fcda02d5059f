/* microq runtime (internal): TFLite's table of sigmoid(k / 24) in unsigned Q0.16, k = 0..255
 * (tensorflow/lite/kernels/internal/common.h sigmoid_table_uint16; CMSIS-NN's arm_nntables.c
 * holds the same values), shared by the TFLite LSTM step (mq_recurrent.c) and the 16x8
 * logistic/tanh (mq_s16.c). The values are data: 44 of them differ from
 * round(65536 sigmoid(k / 24)). Python twin: ref.recurrent.TFL_SIGMOID_TABLE. */
#ifndef MQ_SIGMOID_TABLE_H
#define MQ_SIGMOID_TABLE_H

#include <stdint.h>

extern const uint16_t mq_tfl_sigmoid_table[256];

#endif
