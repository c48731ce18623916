/* The mem* declarations ring's C code uses, for compiling it for another OS without that
 * OS's C library headers (`cargo clippy --target ...`; the objects are never linked). */
#pragma once
#include <stddef.h>
void *memcpy(void *dst, const void *src, size_t n);
void *memmove(void *dst, const void *src, size_t n);
void *memset(void *dst, int c, size_t n);
int memcmp(const void *a, const void *b, size_t n);
