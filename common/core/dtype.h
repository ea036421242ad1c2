/* Element types of tensors, shared by safetensors files, the wire format and the op
 * table. Names follow safetensors ("F32", "BF16", "F8_E4M3", ...). */
#ifndef SUSHI_DTYPE_H
#define SUSHI_DTYPE_H

#include <stddef.h>
#include <stdint.h>

enum dtype {
    DT_F32 = 0, DT_BF16, DT_F16, DT_F64, DT_F8_E4M3, DT_F8_E5M2,
    DT_I8, DT_I16, DT_I32, DT_I64, DT_U8, DT_U16, DT_U32, DT_U64, DT_BOOL,
    DT_COUNT
};

size_t dtype_size(enum dtype dt);          /* bytes per element; 0 for an invalid value */
const char *dtype_name(enum dtype dt);     /* "F32", ...; "?" for an invalid value */
int dtype_from_name(const char *name);     /* enum value, or -1 when unknown */

/* scalar conversions (round-to-nearest-even for bf16/f16) */
float bf16_to_f32(uint16_t h);
uint16_t f32_to_bf16(float f);
float f16_to_f32(uint16_t h);
uint16_t f32_to_f16(float f);
float f8e4m3_to_f32(uint8_t b);            /* OCP e4m3fn: no inf, 0x7f/0xff are NaN */
/* n elements of any floating dtype to f32 (DT_F32/BF16/F16/F8_E4M3/F64) */
int dtype_convert_to_f32(float *dst, const void *src, enum dtype dt, size_t n);

#endif
