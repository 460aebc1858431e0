/*
 * bcryptprimitives.dll for Wine 8.0 (Debian 12's): Rust's standard library
 * (1.78 and later) draws its random numbers from ProcessPrng in
 * bcryptprimitives.dll, which Windows 10 and later have and Wine 8.0 does
 * not, so no Rust program starts under it. This one export, built with
 * mingw-w64 into the test prefix by scripts/wine-test.sh, forwards to
 * BCryptGenRandom, which Wine has. Nothing of it ships: it exists only in
 * the Wine prefix the tests run in.
 */
#include <windows.h>
#include <bcrypt.h>

BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len)
{
    while (len > 0) {
        ULONG chunk = len > 0x40000000 ? 0x40000000 : (ULONG)len;
        if (BCryptGenRandom(NULL, data, chunk, BCRYPT_USE_SYSTEM_PREFERRED_RNG) != 0)
            return FALSE;
        data += chunk;
        len -= chunk;
    }
    return TRUE;
}
