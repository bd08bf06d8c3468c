/* Compile test, second translation unit: declarations only. build.sh compiles this file
   WITHOUT -I/usr/include/stb: nam.h's declarations need nothing beyond the C library. */
#include "../../nam.h"

#include <stdio.h>
#include <string.h>

int nam_compile_tu_b(void);

int nam_compile_tu_b(void) {
    nam_error err;
    nam_recipe r;
    nam_mpattern mp;
    nam_status s;
    if (strcmp(nam_status_str(NAM_ERR_SYNTAX), "syntax error") != 0) {
        fprintf(stderr, "nam_status_str(NAM_ERR_SYNTAX) = \"%s\"\n", nam_status_str(NAM_ERR_SYNTAX));
        return 1;
    }
    s = nam_recipe_init(&r, &err);
    if (s != NAM_OK) {
        fprintf(stderr, "nam_recipe_init: %s: %s\n", nam_status_str(s), err.message);
        return 1;
    }
    nam_recipe_free(&r);
    memset(&mp, 0, sizeof mp);
    s = nam_megatron_parse("M*M*", 0, &mp, &err);
    if (s != NAM_OK) {
        fprintf(stderr, "nam_megatron_parse(\"M*M*\"): %s: %s\n", nam_status_str(s), err.message);
        return 1;
    }
    nam_megatron_free(&mp);
    return 0;
}
