/* assert() for compiling ring's C code for another OS without its C library headers
 * (`cargo clippy --target ...`; the objects are never linked). */
#pragma once
#define assert(e) ((void)0)
