/* Compile test: nam.h included once for the declarations, then again after
   NAM_IMPLEMENTATION (stb rule 1: a header that includes nam.h may itself be included in
   the implementation file). build.sh compiles this file as C99 (-std=c99 -pedantic) and as
   C++ (-std=c++11 -x c++), both with -Wall -Wextra -Werror, and tests/run.sh runs both. */
#include "../../nam.h"
#define NAM_IMPLEMENTATION
#include "../../nam.h"

#include <stdio.h>
#include <string.h>

int main(void) {
    int s;
    for (s = 0; s < (int)NAM_STATUS_COUNT; ++s) {
        const char *text = nam_status_str((nam_status)s);
        if (text == NULL || text[0] == '\0') {
            fprintf(stderr, "nam_status_str(%d) is empty\n", s);
            return 1;
        }
    }
    if (strcmp(nam_status_str(NAM_OK), "ok") != 0) {
        fprintf(stderr, "nam_status_str(NAM_OK) = \"%s\", want \"ok\"\n", nam_status_str(NAM_OK));
        return 1;
    }
    return 0;
}
