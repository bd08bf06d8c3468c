/* Compile test, two translation units: this one instantiates the implementation,
   tu_b.c only includes the declarations. Linking both checks that nam.h defines nothing
   outside NAM_IMPLEMENTATION (no duplicate symbols) and that the extern API links. */
#define NAM_IMPLEMENTATION
#include "../../nam.h"

int nam_compile_tu_b(void);

int main(void) {
    return nam_compile_tu_b();
}
