/* The few Apple SDK macros ring's C code reads, for `cargo clippy --target *-apple-darwin`
 * on a machine without Apple's SDK (the objects are compiled, never linked). */
#pragma once
#define TARGET_OS_OSX 1
#define TARGET_OS_IPHONE 0
#define TARGET_OS_IOS 0
#define TARGET_OS_TV 0
#define TARGET_OS_WATCH 0
#define TARGET_OS_SIMULATOR 0
