/* microq runtime: exported wrapper of the requantization primitive (for tests and users). */
#include "mq_elementwise.h"
#include "mq_requant.h"

int32_t mq_multiply_by_quantized_multiplier(int32_t x, int32_t multiplier, int32_t shift)
{
    return mq_mbqm(x, multiplier, shift);
}
