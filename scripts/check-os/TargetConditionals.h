/* A stand-in for the macOS SDK's TargetConditionals.h, used only by
 * `make check-os`: ring (rustls's crypto provider) compiles C for the
 * target, and its headers read TARGET_OS_* to tell macOS from iOS. There is
 * no Apple SDK on Linux; `cargo check` needs ring's build script to succeed
 * but never links what it compiles. */
#define TARGET_OS_MAC 1
#define TARGET_OS_OSX 1
#define TARGET_OS_IPHONE 0
