// Upstream libFuzzer (Debian's compiler-rt 14) in place of Jazzer's fork.
#include <cstdint>
namespace libfuzzer { extern void (*PrintCrashingInput)(); }
extern "C" {
void __jazzer_set_death_callback(void (*callback)());
// Upstream registers its crash-input writer through the sanitizer hook.
void __sanitizer_set_death_callback(void (*callback)()) { __jazzer_set_death_callback(callback); }
void __sanitizer_cov_trace_const_cmp8(uint64_t a, uint64_t b);
void __sanitizer_cov_trace_pc_indir(uintptr_t callee);
// The fork's _with_pc variants take the JS compare site's id; upstream takes the caller's PC.
void __sanitizer_cov_trace_const_cmp8_with_pc(uintptr_t, uint64_t a, uint64_t b) { __sanitizer_cov_trace_const_cmp8(a, b); }
void __sanitizer_cov_trace_pc_indir_with_pc(void *, uintptr_t callee) { __sanitizer_cov_trace_pc_indir(callee); }
}
