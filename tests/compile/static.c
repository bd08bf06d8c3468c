/* Compile test: NAM_STATIC makes every public function static, so a program can carry a
   private copy. Built as C99 -pedantic with -Wall -Wextra -Werror: the implementation must
   not warn about the static functions this file does not call. */
#define NAM_STATIC
#define NAM_IMPLEMENTATION
#include "../../nam.h"

#include <stdio.h>
#include <string.h>

int main(void) {
    nam_error err;
    nam_mpattern mp;
    nam_status s;
    memset(&mp, 0, sizeof mp);
    s = nam_megatron_parse("M*M*", 0, &mp, &err);
    if (s != NAM_OK) {
        fprintf(stderr, "nam_megatron_parse(\"M*M*\"): %s: %s\n", nam_status_str(s), err.message);
        return 1;
    }
    nam_megatron_free(&mp);
    return strcmp(nam_status_str(NAM_OK), "ok") != 0;
}
