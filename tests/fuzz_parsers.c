/* fuzz_parsers.c - libFuzzer target for every parser of untrusted text in nam.h.

   Build (build.sh does this):
       clang -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -g -O1 \
             -I/usr/include/stb tests/fuzz_parsers.c -o build/fuzz_parsers -lstb -lm
   Run:   ./build.sh fuzz [seconds]        (or build/fuzz_parsers DIR_OR_FILES...)

   INPUT LAYOUT. data[0] is the selector:
       data[0] & 3 == 0   authored pattern   nam_pattern_parse          ('p' = 0x70)
       data[0] & 3 == 1   Megatron pattern   nam_megatron_parse +       ('m' = 0x6d)
                                             nam_megatron_layout
       data[0] & 3 == 2   recipe             nam_recipe_init +          ('r' = 0x72)
                                             nam_recipe_parse (+ write/re-parse)
       data[0] & 3 == 3   recipe -> plan     as 2, then nam_plan_make,  ('s' = 0x73)
                                             nam_plan_json x3, nam_plan_args_text
       data[0] & 3 == 1   and (data[0] & 0x0c) == 0: an argv for     ('a' = 0x61)
                          nam_args_compare against the built-in plan
       data[0] & 0x80     pass a NULL nam_error * (error records are optional)
   Authored pattern:  data[1] options, data[2] depth, data[3..] text
       opt & 0x01  tile = 1
       opt & 0x02  families = "XY"
       opt & 0x04  depth = data[2] * 64 (else depth = data[2]; 0 means "the written length")
       opt & 0x38  stages = (opt >> 3) & 7
       opt & 0x40  pass len = 0 (text NUL-terminated; strlen stops at an embedded NUL)
   Megatron pattern:  data[1] layout options, data[2..] text (empty text -> NULL, Python None)
       opt & 0x07  pp = 1 + (opt & 7)
       opt & 0x08  no_overlap_p2p = 1
       opt & 0x30  first_stage_layers = (opt >> 4) & 3
       opt & 0xc0  last_stage_layers  = (opt >> 6) & 3
   Recipe / plan:     data[1..] recipe text.

   Text is copied into a heap buffer of exactly its length (no terminator) whenever an
   explicit length is passed, so ASan catches any read past `len`. NUL bytes are passed
   through. Besides memory errors and leaks the target aborts when an error record
   disagrees with the returned status, when a message is empty or unterminated, when a
   parsed pattern's stage table is inconsistent, or when a recipe that parsed cannot be
   written and read back. The seed corpus is tests/corpus/ (one file per case, named
   after the selector: pattern-*, megatron-*, recipe-*, plan-*). */
#define NAM_IMPLEMENTATION
#include "../nam.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FUZZ_CHECK(cond, what)                                                          \
    do {                                                                                \
        if (!(cond)) {                                                                  \
            fprintf(stderr, "fuzz_parsers: invariant failed: %s (%s:%d)\n", what,        \
                    __FILE__, __LINE__);                                                \
            abort();                                                                    \
        }                                                                               \
    } while (0)

/* A copy of the text the parsers see. With nul = 0 the buffer has exactly n bytes. */
static char *fuzz_copy(const uint8_t *data, size_t n, int nul) {
    char *p = (char *)malloc(n + (nul ? 1 : 0) + (n == 0 ? 1 : 0));
    FUZZ_CHECK(p != NULL, "malloc");
    if (n) memcpy(p, data, n);
    if (nul || n == 0) p[n] = '\0';
    return p;
}

static void fuzz_err_reset(nam_error *err) {
    if (err) memset(err, 0xAB, sizeof *err);
}

/* Every call returns a status in range; on failure the record matches it. */
static void fuzz_check_status(nam_status s, const nam_error *err) {
    FUZZ_CHECK((int)s >= 0 && (int)s < (int)NAM_STATUS_COUNT, "status out of range");
    FUZZ_CHECK(nam_status_str(s) != NULL, "nam_status_str returned NULL");
    if (s == NAM_OK || err == NULL) return;
    FUZZ_CHECK(err->code == s, "err->code differs from the returned status");
    FUZZ_CHECK(memchr(err->message, '\0', sizeof err->message) != NULL, "err->message unterminated");
    FUZZ_CHECK(err->message[0] != '\0', "err->message empty");
    FUZZ_CHECK(memchr(err->source, '\0', sizeof err->source) != NULL, "err->source unterminated");
}

static void fuzz_pattern(const uint8_t *data, size_t size, nam_error *err) {
    nam_pattern_desc d;
    nam_pattern p;
    nam_status s;
    uint8_t opt, depth;
    char *text;
    size_t n;
    int i;
    if (size < 3) return;
    opt = data[1];
    depth = data[2];
    n = size - 3;
    memset(&d, 0, sizeof d);
    d.tile = opt & 0x01;
    d.families = (opt & 0x02) ? "XY" : NULL;
    d.depth = (opt & 0x04) ? depth * 64 : depth;
    d.stages = (opt >> 3) & 7;
    text = fuzz_copy(data + 3, n, opt & 0x40);
    d.text = text;
    d.len = (opt & 0x40) ? 0 : n;
    memset(&p, 0, sizeof p);
    fuzz_err_reset(err);
    s = nam_pattern_parse(&d, &p, err);
    fuzz_check_status(s, err);
    if (s == NAM_OK) {
        FUZZ_CHECK(p.depth > 0 && p.depth <= NAM_MAX_DEPTH, "pattern depth out of range");
        FUZZ_CHECK(p.num_stages >= 1 && p.num_stages <= p.depth, "pattern num_stages out of range");
        FUZZ_CHECK(p.layers != NULL && p.stage_begin != NULL, "pattern tables missing");
        FUZZ_CHECK(p.stage_begin[0] == 0 && p.stage_begin[p.num_stages] == p.depth,
                   "stage_begin does not span the layers");
        for (i = 0; i < p.num_stages; ++i)
            FUZZ_CHECK(p.stage_begin[i] < p.stage_begin[i + 1], "empty or unordered stage");
        for (i = 0; i < p.depth; ++i)
            FUZZ_CHECK(p.layers[i].index == i && p.layers[i].family >= 'A' && p.layers[i].family <= 'Z',
                       "bad layer record");
        FUZZ_CHECK((p.mtp == NULL) == (p.mtp_depths == 0), "mtp and mtp_depths disagree");
    }
    nam_pattern_free(&p); /* documented safe on error */
    free(text);
}

static void fuzz_megatron(const uint8_t *data, size_t size, nam_error *err) {
    nam_mpattern mp;
    nam_layout_desc ld;
    nam_layout lay;
    nam_status s;
    uint8_t opt;
    char *text = NULL;
    size_t n;
    int i;
    if (size < 2) return;
    opt = data[1];
    n = size - 2;
    if (n) text = fuzz_copy(data + 2, n, 0);
    memset(&mp, 0, sizeof mp);
    fuzz_err_reset(err);
    s = nam_megatron_parse(text, n, &mp, err); /* n == 0 only with text == NULL (None) */
    fuzz_check_status(s, err);
    if (s == NAM_OK) {
        int total = 0;
        for (i = 0; i < NAM_MSYM_COUNT; ++i) total += mp.counts[i];
        FUZZ_CHECK(mp.num_layers >= 0 && total >= mp.num_layers, "layer counts below num_layers");
        memset(&ld, 0, sizeof ld);
        ld.pp = 1 + (opt & 7);
        ld.no_overlap_p2p = (opt >> 3) & 1;
        ld.first_stage_layers = (opt >> 4) & 3;
        ld.last_stage_layers = (opt >> 6) & 3;
        memset(&lay, 0, sizeof lay);
        fuzz_err_reset(err);
        s = nam_megatron_layout(&mp, &ld, &lay, err);
        fuzz_check_status(s, err);
        if (s == NAM_OK) {
            int covered = 0;
            FUZZ_CHECK(lay.num_stages >= 1 && lay.stages != NULL, "layout without stages");
            for (i = 0; i < lay.num_stages; ++i) covered += lay.stages[i].seg.num_layers;
            FUZZ_CHECK(covered == mp.num_layers, "layout segments do not cover the main pattern");
            nam_layout_free(&lay);
        }
        nam_megatron_free(&mp);
    }
    free(text);
}

static void fuzz_recipe(const uint8_t *data, size_t size, nam_error *err, int plan) {
    nam_recipe r, back;
    nam_status s;
    char *text = NULL, *written = NULL;
    size_t n = size - 1;
    if (nam_recipe_init(&r, err) != NAM_OK) abort();
    text = fuzz_copy(data + 1, n, 0);
    fuzz_err_reset(err);
    s = nam_recipe_parse(&r, text, n, "fuzz.recipe", err);
    fuzz_check_status(s, err);
    if (s == NAM_OK) {
        /* whatever parsed must render and read back */
        fuzz_err_reset(err);
        s = nam_recipe_write(&r, &written, err);
        fuzz_check_status(s, err);
        FUZZ_CHECK(s == NAM_OK && written != NULL, "nam_recipe_write failed on a parsed recipe");
        if (nam_recipe_init(&back, err) != NAM_OK) abort();
        fuzz_err_reset(err);
        s = nam_recipe_parse(&back, written, strlen(written), "written.recipe", err);
        if (s != NAM_OK)
            fprintf(stderr, "fuzz_parsers: re-parse: %s: %s\n--- written ---\n%s\n", nam_status_str(s),
                    err ? err->message : "(no error record)", written);
        FUZZ_CHECK(s == NAM_OK, "nam_recipe_write output does not parse");
        nam_recipe_free(&back);
        nam_free(written);
    }
    if (s == NAM_OK && plan) {
        nam_plan pl;
        char *out = NULL;
        int what;
        memset(&pl, 0, sizeof pl);
        fuzz_err_reset(err);
        s = nam_plan_make(&r, &pl, err);
        fuzz_check_status(s, err);
        if (s == NAM_OK) {
            for (what = NAM_JSON_PLAN; what <= NAM_JSON_LAUNCH; ++what) {
                out = NULL;
                fuzz_err_reset(err);
                s = nam_plan_json(&pl, what, &out, err);
                fuzz_check_status(s, err);
                nam_free(out);
            }
            out = NULL;
            fuzz_err_reset(err);
            s = nam_plan_args_text(&pl, &out, err);
            fuzz_check_status(s, err);
            nam_free(out);
            nam_plan_free(&pl);
        }
    }
    nam_recipe_free(&r);
    free(text);
}

/* An argv compared with the built-in NAM56R plan (R bound to G, so the pattern is native). */
static void fuzz_compare(const uint8_t *data, size_t size, nam_error *err) {
    nam_recipe r;
    nam_plan pl;
    nam_args_cmp cmp;
    nam_status s;
    char *text;
    size_t n = size - 1;
    int i, sum = 0;
    if (nam_recipe_init(&r, NULL) != NAM_OK || nam_recipe_set(&r, "pattern.map", "R=G", NULL) != NAM_OK ||
        nam_plan_make(&r, &pl, NULL) != NAM_OK) abort();
    text = fuzz_copy(data + 1, n, 0);
    fuzz_err_reset(err);
    s = n ? nam_args_compare(&pl, text, n, "fuzz.argv", &cmp, err) : NAM_OK;
    fuzz_check_status(s, err);
    if (n && s == NAM_OK) {
        for (i = 0; i < 4; i++) sum += cmp.count[i];
        FUZZ_CHECK(sum == cmp.num_rows && cmp.num_rows >= pl.num_args, "compare rows and counts disagree");
        for (i = 0; i < cmp.num_rows; i++)
            FUZZ_CHECK(cmp.rows[i].nam_value || cmp.rows[i].other_value, "a compare row with neither side");
        nam_args_cmp_free(&cmp);
    }
    free(text);
    nam_plan_free(&pl);
    nam_recipe_free(&r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    nam_error rec;
    nam_error *err;
    if (size < 1 || size > NAM_MAX_TEXT + 8) return 0;
    err = (data[0] & 0x80) ? NULL : &rec;
    switch (data[0] & 3) {
    case 0: fuzz_pattern(data, size, err); break;
    case 1:
        if (data[0] & 0x0c) fuzz_megatron(data, size, err);
        else fuzz_compare(data, size, err);
        break;
    case 2: fuzz_recipe(data, size, err, 0); break;
    default: fuzz_recipe(data, size, err, 1); break;
    }
    return 0;
}
