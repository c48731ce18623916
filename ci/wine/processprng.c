/*
 * bcryptprimitives.dll for Wine 8.0, which lacks it: exports ProcessPrng, which Rust's
 * standard library (1.78 and later) imports for its random numbers. Fills the buffer from
 * advapi32's RtlGenRandom (SystemFunction036), which takes at most ULONG bytes per call.
 */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len)
{
    while (len > 0) {
        ULONG chunk = len > 0x10000000 ? 0x10000000 : (ULONG)len;
        if (!SystemFunction036(data, chunk))
            return FALSE;
        data += chunk;
        len -= chunk;
    }
    return TRUE;
}
