// Declarations of upstream libFuzzer's driver (compiler-rt/lib/fuzzer/FuzzerDefs.h), which Debian does not install.
#pragma once
#include <cstddef>
#include <cstdint>
namespace fuzzer {
typedef int (*UserCallback)(const uint8_t *Data, size_t Size);
int FuzzerDriver(int *argc, char ***argv, UserCallback Callback);
}
