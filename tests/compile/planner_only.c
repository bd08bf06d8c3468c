/* Compile test: the planner half alone (NAM_NO_KERNELS). Built as C99 -pedantic with
   -Wall -Wextra -Werror. The file defines its own nam_ssd, nam_attention and nam_tensor
   with other types: that compiles only if nam.h declared none of the kernel API, and the
   implementation links without any kernel code. It then makes the built-in NAM56R plan. */
#define NAM_NO_KERNELS
#define NAM_IMPLEMENTATION
#include "../../nam.h"

#include <stdio.h>
#include <string.h>

typedef struct nam_tensor { int not_the_kernel_tensor; } nam_tensor;   /* clashes if nam.h declared it */
static int nam_ssd(int x) { return x + 1; }
static const char *nam_attention(void) { return "mine"; }

int main(void) {
    nam_recipe r;
    nam_plan plan;
    nam_error err;
    nam_tensor t;
    char *json = NULL;
    t.not_the_kernel_tensor = nam_ssd(1);
    if (nam_recipe_init(&r, &err) != NAM_OK) { fprintf(stderr, "nam_recipe_init: %s\n", err.message); return 1; }
    if (nam_plan_make(&r, &plan, &err) != NAM_OK) { fprintf(stderr, "nam_plan_make: %s\n", err.message); nam_recipe_free(&r); return 1; }
    if (nam_plan_json(&plan, NAM_JSON_PLAN, &json, &err) != NAM_OK || !strstr(json, "AEMEAEMEAEMR") || t.not_the_kernel_tensor != 2
        || strcmp(nam_attention(), "mine") != 0) {
        fprintf(stderr, "planner-only build: unexpected plan or shadowed names\n");
        nam_free(json);
        nam_plan_free(&plan);
        nam_recipe_free(&r);
        return 1;
    }
    nam_free(json);
    nam_plan_free(&plan);
    nam_recipe_free(&r);
    return 0;
}
