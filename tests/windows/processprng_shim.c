/*
 * WINE TEST SHIM -- NOT PART OF tcp-heartbeat, NEVER SHIPPED.
 *
 * Rust's standard library (since 1.78, rust-lang/rust#121337) imports
 * ProcessPrng from bcryptprimitives.dll. Wine 8 (Debian 12) has no such DLL,
 * so every Rust .exe dies at start with exit 53. `make test-windows` builds
 * this file with x86_64-w64-mingw32-gcc into the throwaway Wine prefix's
 * system32 (scripts/test-windows.sh) so the Windows build can be tested
 * under Wine. Real Windows 10 and later have the real DLL.
 *
 * ProcessPrng fills the buffer from the system RNG and always returns TRUE;
 * this forwards to BCryptGenRandom, in ULONG-sized pieces.
 */
#include <windows.h>
#include <bcrypt.h>

BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len)
{
    while (len > 0) {
        ULONG piece = len > 0x40000000 ? 0x40000000 : (ULONG)len;
        if (BCryptGenRandom(NULL, data, piece, BCRYPT_USE_SYSTEM_PREFERRED_RNG) != 0)
            return FALSE;
        data += piece;
        len -= piece;
    }
    return TRUE;
}
