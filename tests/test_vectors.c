/* tests/test_vectors.c - Megatron-LM's own test vectors, checked against nam.

   Reads megatron_hybrid_vectors.json (the upstream unit-test vectors of
   hybrid_layer_allocation.py) and megatron_rank_vectors.json (the upstream RankGenerator
   parameter sets with their groups) and turns every vector into a check.

   Usage: test_vectors [DIR]
     DIR defaults to $NAM_REFERENCE_DIR, else ../shared/reference (relative to the cwd;
     the suite runs from the repository root). Missing files are a skip, not a pass.

   Output: one line per vector or check group: `ok <what>`, `FAIL <what>: <details>`,
   `skip <what>: <reason>` (tests/test.h), then `test_vectors: N passed, M failed` (and
   `, K skipped` when something was).
   Exit status 1 if anything failed, else 0.

   Build: cc -std=c99 -Wall -Wextra -Werror -I/usr/include/stb tests/test_vectors.c -lstb -lm
   (the stb_ds implementation is also emitted below, so -lstb is optional). */
#define NAM_IMPLEMENTATION
#include "test.h"

/* nam.h never defines STB_DS_IMPLEMENTATION. Emit stb_ds here, AFTER nam's
   implementation, so that any STBDS_REALLOC/STBDS_FREE nam sets up applies; the
   implementation half of stb_ds.h has no include guard, so this is its only copy even
   if nam.h included <stb_ds.h> already. */
#define STB_DS_IMPLEMENTATION
#if defined(__cplusplus) && (defined(__GNUC__) || defined(__clang__))
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmissing-field-initializers" /* stb_ds.h: `temp={0}` in C++ */
#endif
#include <stb_ds.h>
#if defined(__cplusplus) && (defined(__GNUC__) || defined(__clang__))
#pragma GCC diagnostic pop
#endif

#include "json.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ reporting ------ */

/* Checks report through tests/test.h: test_check(ok, what, why), test_skip. */

#define WHY_MAX 2048

/* Writes a failure reason into `why` and returns 0, so checks can `return failf(...)`. */
static int failf(char *why, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, WHY_MAX, fmt, ap);
    va_end(ap);
    return 0;
}

/* Appends to `why` (used for extra context after a failure reason). */
static void appendf(char *why, const char *fmt, ...) {
    size_t n = strlen(why);
    va_list ap;
    if (n + 1 >= WHY_MAX) return;
    va_start(ap, fmt);
    vsnprintf(why + n, WHY_MAX - n, fmt, ap);
    va_end(ap);
}

/* `"text"` or `null`, into buf. */
static const char *qs(const char *s, char *buf, size_t n) {
    if (!s) snprintf(buf, n, "null");
    else snprintf(buf, n, "\"%s\"", s);
    return buf;
}

static const char *qsn(const char *s, int len, char *buf, size_t n) {
    if (!s) snprintf(buf, n, "null");
    else snprintf(buf, n, "\"%.*s\"", len, s);
    return buf;
}

static void err_clear(nam_error *e) {
    memset(e, 0, sizeof *e);
}

static const char *err_text(const nam_error *e, char *buf, size_t n) {
    snprintf(buf, n, "%s: \"%s\"", nam_status_str(e->code), e->message);
    return buf;
}

/* ------------------------------------------------------------------ json helpers --- */

/* Optional integer: JSON null -> *has = 0. Returns 0 if the value is neither. */
static int opt_int(const json_value *v, int *has, int *out) {
    if (json_is_null(v)) { *has = 0; *out = 0; return 1; }
    if (json_int(v, out)) { *has = 1; return 1; }
    return 0;
}

/* Optional string: JSON null -> NULL. Returns 0 if the value is neither. */
static int opt_str(const json_value *v, const char **out) {
    if (json_is_null(v)) { *out = NULL; return 1; }
    if (json_is_string(v)) { *out = v->str; return 1; }
    return 0;
}

/* Joins an array of one-character strings into buf ("M","*" -> "M*"). */
static int join_symbols(const json_value *list, char *buf, size_t n) {
    size_t i, k = 0;
    if (!json_is_array(list)) return 0;
    for (i = 0; i < json_len(list); ++i) {
        const json_value *s = json_at(list, i);
        if (!json_is_string(s) || s->len != 1 || k + 1 >= n) return 0;
        buf[k++] = s->str[0];
    }
    buf[k] = '\0';
    return 1;
}

/* ------------------------------------------------------------------ nam helpers ---- */

static nam_status mparse(const char *pattern, nam_mpattern *mp, nam_error *err) {
    memset(mp, 0, sizeof *mp);
    err_clear(err);
    return nam_megatron_parse(pattern, pattern ? strlen(pattern) : 0, mp, err);
}

/* A nam_mpattern built by hand around `main_text`, WITHOUT nam_megatron_parse. Megatron's
   select_pipeline_segment is called (and unit-tested) on raw strings and does its own
   segment validation, so the select error vectors and the segment vectors feed it
   patterns that parse_hybrid_pattern would reject. Never passed to nam_megatron_free. */
static void manual_mpattern(nam_mpattern *mp, char *main_text) {
    const char *c;
    int i;
    memset(mp, 0, sizeof *mp);
    mp->main = main_text;
    mp->mtp = NULL;
    mp->mtp_depths = 0;
    mp->num_segments = 1;
    for (c = main_text; *c; ++c) {
        if (*c == '|') { ++mp->num_segments; continue; }
        ++mp->num_layers;
        for (i = 0; i < NAM_MSYM_COUNT; ++i)
            if (NAM_MEGATRON_SYMBOLS[i] == *c) ++mp->counts[i];
    }
}

static int seg_equals(const nam_segment *s, const char *expect, size_t n) {
    if ((size_t)s->num_layers != n) return 0;
    if (n == 0) return 1;
    return s->layers && memcmp(s->layers, expect, n) == 0;
}

/* ------------------------------------------------------------------ hybrid: segment  */

/* Megatron's validate_segment_layers(segment) has no direct nam counterpart. nam checks a
   segment in two places, and we hold nam to both:
     (a) a segment never contains '|' or '/'. nam_megatron_parse accepts "M|M" (pipes are
         legal in a main pattern) and "M/M" (main "M" + one MTP copy), so for those two the
         verdict "invalid segment" comes from this rule, not from nam;
     (b) nam_megatron_parse must accept a valid segment as a one-segment main pattern with
         no MTP, unchanged, and must reject an invalid one (bad symbol -> NAM_ERR_SYMBOL,
         '*' with 'D'/'+' -> NAM_ERR_CONFLICT);
     (c) nam_megatron_select_segment, which runs Megatron's validate_segment_layers on the
         selected segment, must return a valid segment whole (PP 1, offset 0) and must
         refuse an invalid one. Done on a hand-built nam_mpattern (see manual_mpattern) for
         every segment without '|' ("M/M" included: '/' is not a layer symbol).
   Returns 1 when nam's verdicts agree with `expect_valid`; for a valid segment also checks
   the symbols against `expect_symbols`. */
static int check_segment(const char *seg, int expect_valid, const char *expect_symbols, char *why) {
    nam_mpattern mp, manual;
    nam_segment out;
    nam_segment_desc d;
    nam_error err;
    nam_status st;
    char eb[700], tmp[256];
    int has_sep = strchr(seg, '|') != NULL || strchr(seg, '/') != NULL;
    size_t n = strlen(seg);
    char *copy;
    int ok;

    if (expect_valid) {
        if (has_sep) return failf(why, "vector says valid but the segment contains '|' or '/'");
        /* (b) */
        st = mparse(seg, &mp, &err);
        if (st != NAM_OK) {
            failf(why, "nam_megatron_parse refused the segment: %s", err_text(&err, eb, sizeof eb));
            nam_megatron_free(&mp);
            return 0;
        }
        if (!(mp.main ? strcmp(mp.main, seg) == 0 : n == 0) || mp.mtp != NULL || mp.mtp_depths != 0 ||
            mp.num_segments != 1 || mp.num_layers != (int)n) {
            failf(why, "nam_megatron_parse gave main %s mtp %s depths %d segments %d layers %d",
                  qs(mp.main, eb, sizeof eb), qs(mp.mtp, tmp, sizeof tmp), mp.mtp_depths,
                  mp.num_segments, mp.num_layers);
            nam_megatron_free(&mp);
            return 0;
        }
        nam_megatron_free(&mp);
        if (strcmp(seg, expect_symbols) != 0)
            return failf(why, "symbols \"%s\" != expected \"%s\"", seg, expect_symbols);
    } else if (!has_sep) {
        nam_status want = NAM_ERR_CONFLICT;
        const char *c;
        for (c = seg; *c; ++c)
            if (!strchr(NAM_MEGATRON_SYMBOLS, *c)) want = NAM_ERR_SYMBOL;
        st = mparse(seg, &mp, &err);
        nam_megatron_free(&mp);
        if (st == NAM_OK) return failf(why, "nam_megatron_parse accepted an invalid segment");
        if (st != want)
            return failf(why, "nam_megatron_parse code %s, want %s (%s)", nam_status_str(st),
                         nam_status_str(want), err_text(&err, eb, sizeof eb));
    }

    /* (c) */
    if (strchr(seg, '|')) return 1;
    copy = (char *)malloc(n + 1);
    if (!copy) return failf(why, "out of memory");
    memcpy(copy, seg, n + 1);
    manual_mpattern(&manual, copy);
    memset(&d, 0, sizeof d);
    d.pp_size = 1;
    memset(&out, 0, sizeof out);
    err_clear(&err);
    st = nam_megatron_select_segment(&manual, &d, &out, &err);
    ok = 1;
    if (expect_valid && st != NAM_OK)
        ok = failf(why, "nam_megatron_select_segment refused it: %s", err_text(&err, eb, sizeof eb));
    else if (expect_valid && (!seg_equals(&out, seg, n) || out.offset != 0))
        ok = failf(why, "nam_megatron_select_segment gave %s offset %d",
                   qsn(out.layers, out.num_layers, eb, sizeof eb), out.offset);
    else if (!expect_valid && st == NAM_OK)
        ok = failf(why, "nam_megatron_select_segment accepted the invalid segment, gave %s",
                   qsn(out.layers, out.num_layers, eb, sizeof eb));
    free(copy);
    return ok;
}

/* ------------------------------------------------------------------ hybrid vectors -- */

typedef int (*vector_fn)(const json_value *v, char *what, size_t what_n, char *why);

/* Runs fn on every vector of group `name`; a group missing from the file is a FAIL. */
static void run_group(const json_value *root, const char *name, vector_fn fn) {
    const json_value *list = json_get(root, name);
    char what[512], why[WHY_MAX];
    size_t i;
    if (!json_is_array(list) || json_len(list) == 0) {
        snprintf(what, sizeof what, "%s", name);
        test_check(0, what, "group missing or empty in the vectors file");
        return;
    }
    for (i = 0; i < json_len(list); ++i) {
        int ok;
        snprintf(what, sizeof what, "%s[%lu]", name, (unsigned long)i);
        why[0] = '\0';
        ok = fn(json_at(list, i), what, sizeof what, why);
        test_check(ok, what, why);
    }
}

#define MALFORMED(why) failf(why, "malformed vector")

static int v_segment_ok(const json_value *v, char *what, size_t wn, char *why) {
    const char *seg = json_str(json_at(v, 0));
    char expect[512], qb[600];
    if (!seg || !join_symbols(json_at(v, 1), expect, sizeof expect)) return MALFORMED(why);
    snprintf(what, wn, "validate_segment_layers_ok %s", qs(seg, qb, sizeof qb));
    return check_segment(seg, 1, expect, why);
}

/* a vector that is one segment string: valid (every symbol kept) or an error */
static int segment_vector(const json_value *v, char *what, size_t wn, char *why, int valid) {
    const char *seg = json_str(v);
    char qb[600];
    if (!seg) return MALFORMED(why);
    snprintf(what, wn, "validate_segment_layers_%s %s", valid ? "all_valid" : "err", qs(seg, qb, sizeof qb));
    return check_segment(seg, valid, valid ? seg : NULL, why);
}

static int v_segment_all_valid(const json_value *v, char *what, size_t wn, char *why) { return segment_vector(v, what, wn, why, 1); }
static int v_segment_err(const json_value *v, char *what, size_t wn, char *why) { return segment_vector(v, what, wn, why, 0); }

/* total_layer_count (segments 0) or pipeline_segment_count (segments 1): [pattern, n] */
static int count_vector(const json_value *v, char *what, size_t wn, char *why, int segments) {
    const char *pat = json_str(json_at(v, 0));
    int n, got, ok = 1;
    char qb[600], eb[700];
    nam_mpattern mp;
    nam_error err;
    if (!pat || !json_int(json_at(v, 1), &n)) return MALFORMED(why);
    snprintf(what, wn, "%s %s = %d", segments ? "pipeline_segment_count" : "total_layer_count", qs(pat, qb, sizeof qb), n);
    if (mparse(pat, &mp, &err) != NAM_OK) {
        ok = failf(why, "nam_megatron_parse failed: %s", err_text(&err, eb, sizeof eb));
    } else if ((got = segments ? mp.num_segments : mp.num_layers) != n) {
        ok = failf(why, "%s %d", segments ? "num_segments" : "num_layers", got);
    } else if (!segments && *pat == '\0' && mp.main && *mp.main) {
        ok = failf(why, "main %s for an empty pattern (want NULL or \"\")", qs(mp.main, qb, sizeof qb));
    }
    nam_megatron_free(&mp);
    return ok;
}

static int v_total_layer_count(const json_value *v, char *what, size_t wn, char *why) { return count_vector(v, what, wn, why, 0); }
static int v_segment_count(const json_value *v, char *what, size_t wn, char *why) { return count_vector(v, what, wn, why, 1); }

static int same_opt_str(const char *a, const char *b) {
    if (!a || !b) return a == b;
    return strcmp(a, b) == 0;
}

static int v_parse_ok(const json_value *v, char *what, size_t wn, char *why) {
    const char *in, *main_s, *mtp_s;
    int depth, ok = 1;
    char qb[600], qm[600], qt[600], eb[700];
    nam_mpattern mp;
    nam_error err;
    if (json_len(v) != 4 || !opt_str(json_at(v, 0), &in) || !opt_str(json_at(v, 1), &main_s) ||
        !opt_str(json_at(v, 2), &mtp_s) || !json_int(json_at(v, 3), &depth))
        return MALFORMED(why);
    snprintf(what, wn, "parse_ok %s -> (%s, %s, %d)", qs(in, qb, sizeof qb), qs(main_s, qm, sizeof qm),
             qs(mtp_s, qt, sizeof qt), depth);
    if (mparse(in, &mp, &err) != NAM_OK) {
        ok = failf(why, "nam_megatron_parse failed: %s", err_text(&err, eb, sizeof eb));
    } else if (!same_opt_str(mp.main, main_s) || !same_opt_str(mp.mtp, mtp_s) || mp.mtp_depths != depth) {
        ok = failf(why, "got (%s, %s, %d)", qs(mp.main, qm, sizeof qm), qs(mp.mtp, qt, sizeof qt), mp.mtp_depths);
    }
    nam_megatron_free(&mp);
    return ok;
}

static int v_parse_err(const json_value *v, char *what, size_t wn, char *why) {
    const char *pat = json_str(json_at(v, 0)), *sub = json_str(json_at(v, 1));
    char qb[600], qm[600], eb[700];
    nam_status want, st;
    nam_mpattern mp;
    nam_error err;
    int ok = 1;
    if (!pat || !sub) return MALFORMED(why);
    snprintf(what, wn, "parse_err %s ~ %s", qs(pat, qb, sizeof qb), qs(sub, qm, sizeof qm));
    if (strstr(sub, "All MTP patterns must be identical")) want = NAM_ERR_MTP;
    else if (strstr(sub, "not a valid layer symbol")) want = NAM_ERR_SYMBOL;
    else return failf(why, "no nam error code known for Megatron message \"%s\"", sub);
    st = mparse(pat, &mp, &err);
    if (st == NAM_OK)
        ok = failf(why, "nam_megatron_parse accepted it: main %s mtp %s depths %d", qs(mp.main, qb, sizeof qb),
                   qs(mp.mtp, qm, sizeof qm), mp.mtp_depths);
    else if (st != want || err.code != st)
        ok = failf(why, "returned %s, err.code %s, want %s (%s)", nam_status_str(st), nam_status_str(err.code),
                   nam_status_str(want), err_text(&err, eb, sizeof eb));
    else if (!strstr(err.message, sub))
        ok = failf(why, "message lacks Megatron's \"%s\": \"%s\"", sub, err.message);
    nam_megatron_free(&mp);
    return ok;
}

static int v_layer_counts(const json_value *v, char *what, size_t wn, char *why) {
    const char *pat = json_str(json_at(v, 0));
    const json_value *want = json_at(v, 1);
    int w[NAM_MSYM_COUNT], i, ok = 1;
    char qb[600], eb[700];
    nam_mpattern mp;
    nam_error err;
    if (!pat || json_len(want) != NAM_MSYM_COUNT) return MALFORMED(why);
    for (i = 0; i < NAM_MSYM_COUNT; ++i)
        if (!json_int(json_at(want, (size_t)i), &w[i])) return MALFORMED(why);
    snprintf(what, wn, "layer_counts %s = [%d %d %d %d %d %d %d]", qs(pat, qb, sizeof qb), w[0], w[1], w[2], w[3],
             w[4], w[5], w[6]);
    if (mparse(pat, &mp, &err) != NAM_OK) {
        ok = failf(why, "nam_megatron_parse failed: %s", err_text(&err, eb, sizeof eb));
    } else {
        for (i = 0; i < NAM_MSYM_COUNT; ++i)
            if (mp.counts[i] != w[i]) break;
        if (i < NAM_MSYM_COUNT)
            ok = failf(why, "got [%d %d %d %d %d %d %d] (order %s)", mp.counts[0], mp.counts[1], mp.counts[2],
                       mp.counts[3], mp.counts[4], mp.counts[5], mp.counts[6], NAM_MEGATRON_SYMBOLS);
    }
    nam_megatron_free(&mp);
    return ok;
}

/* One select_pipeline_segment call. `expect_list` (symbols) or `expect_count` (>= 0). */
typedef struct select_case {
    const char *pattern;
    int pp_rank, pp_size, has_vp, vp, first, last;
} select_case;

static void select_what(const char *group, const select_case *c, char *what, size_t wn) {
    char qb[600];
    char vp[16], fi[16], la[16];
    if (c->has_vp) snprintf(vp, sizeof vp, "%d", c->vp); else snprintf(vp, sizeof vp, "None");
    if (c->first) snprintf(fi, sizeof fi, "%d", c->first); else snprintf(fi, sizeof fi, "None");
    if (c->last) snprintf(la, sizeof la, "%d", c->last); else snprintf(la, sizeof la, "None");
    snprintf(what, wn, "%s %s pp_rank=%d pp_size=%d vp=%s first=%s last=%s", group, qs(c->pattern, qb, sizeof qb),
             c->pp_rank, c->pp_size, vp, fi, la);
}

static void select_desc(const select_case *c, nam_segment_desc *d) {
    memset(d, 0, sizeof *d);
    d->pp_size = c->pp_size;
    d->pp_rank = c->pp_rank;
    d->has_vp_stage = c->has_vp;
    d->vp_stage = c->vp;
    d->first_stage_layers = c->first;
    d->last_stage_layers = c->last;
}

static int check_select_ok(const select_case *c, const char *expect_list, int expect_count, int expect_offset,
                           char *why) {
    nam_mpattern mp;
    nam_segment_desc d;
    nam_segment out;
    nam_error err;
    char eb[700], gb[600];
    int ok = 1;
    if (mparse(c->pattern, &mp, &err) != NAM_OK) {
        failf(why, "nam_megatron_parse failed: %s", err_text(&err, eb, sizeof eb));
        nam_megatron_free(&mp);
        return 0;
    }
    select_desc(c, &d);
    memset(&out, 0, sizeof out);
    err_clear(&err);
    if (nam_megatron_select_segment(&mp, &d, &out, &err) != NAM_OK) {
        ok = failf(why, "nam_megatron_select_segment failed: %s", err_text(&err, eb, sizeof eb));
    } else if (expect_list && !seg_equals(&out, expect_list, strlen(expect_list))) {
        ok = failf(why, "layers %s, want \"%s\"", qsn(out.layers, out.num_layers, gb, sizeof gb), expect_list);
    } else if (!expect_list && out.num_layers != expect_count) {
        ok = failf(why, "%d layers, want %d", out.num_layers, expect_count);
    } else if (out.offset != expect_offset) {
        ok = failf(why, "offset %d, want %d", out.offset, expect_offset);
    } else if (mp.main && !strchr(mp.main, '|') && out.num_layers > 0 &&
               (out.offset + out.num_layers > (int)strlen(mp.main) ||
                memcmp(out.layers, mp.main + out.offset, (size_t)out.num_layers) != 0)) {
        /* the legacy split is a contiguous slice of the main pattern at `offset` */
        ok = failf(why, "layers %s are not main[%d:%d]", qsn(out.layers, out.num_layers, gb, sizeof gb), out.offset,
                   out.offset + out.num_layers);
    }
    nam_megatron_free(&mp);
    return ok;
}

/* Error vectors: parse the pattern if nam_megatron_parse accepts it, else hand
   select_segment the raw string (Megatron's select validates segments itself; "MX|M*" is
   such a vector). `sub` "" means any error. */
static int check_select_err(const select_case *c, const char *sub, char *why) {
    nam_mpattern mp;
    nam_segment_desc d;
    nam_segment out;
    nam_error err;
    char eb[700], gb[600];
    char *copy = NULL;
    int parsed, ok = 1;
    nam_status st;
    parsed = mparse(c->pattern, &mp, &err) == NAM_OK;
    if (!parsed) {
        size_t n = strlen(c->pattern);
        nam_megatron_free(&mp);
        copy = (char *)malloc(n + 1);
        if (!copy) return failf(why, "out of memory");
        memcpy(copy, c->pattern, n + 1);
        manual_mpattern(&mp, copy);
    }
    select_desc(c, &d);
    memset(&out, 0, sizeof out);
    err_clear(&err);
    st = nam_megatron_select_segment(&mp, &d, &out, &err);
    if (st == NAM_OK)
        ok = failf(why, "nam_megatron_select_segment accepted it: %s offset %d",
                   qsn(out.layers, out.num_layers, gb, sizeof gb), out.offset);
    else if (*sub && !strstr(err.message, sub))
        ok = failf(why, "message lacks Megatron's \"%s\": %s", sub, err_text(&err, eb, sizeof eb));
    if (parsed) nam_megatron_free(&mp);
    free(copy);
    return ok;
}

static int v_select_single_ok(const json_value *v, char *what, size_t wn, char *why) {
    select_case c;
    char expect[512];
    int offset;
    memset(&c, 0, sizeof c);
    c.pattern = json_str(json_at(v, 0));
    c.pp_size = 1;
    if (!c.pattern || !opt_int(json_at(v, 1), &c.has_vp, &c.vp) || !join_symbols(json_at(v, 2), expect, sizeof expect) ||
        !json_int(json_at(v, 3), &offset))
        return MALFORMED(why);
    select_what("select_single_rank_ok", &c, what, wn);
    return check_select_ok(&c, expect, -1, offset, why);
}

static int v_select_single_err(const json_value *v, char *what, size_t wn, char *why) {
    select_case c;
    int hf, hl;
    const char *sub = json_str(json_at(v, 4));
    memset(&c, 0, sizeof c);
    c.pattern = json_str(json_at(v, 0));
    c.pp_size = 1;
    if (!c.pattern || !sub || !opt_int(json_at(v, 1), &c.has_vp, &c.vp) || !opt_int(json_at(v, 2), &hf, &c.first) ||
        !opt_int(json_at(v, 3), &hl, &c.last))
        return MALFORMED(why);
    if ((hf && c.first == 0) || (hl && c.last == 0))
        return failf(why, "first/last = 0 cannot be expressed (nam reads 0 as None)");
    select_what("select_single_rank_err", &c, what, wn);
    appendf(what, " ~ \"%s\"", sub);
    return check_select_err(&c, sub, why);
}

static int v_select_mocked_ok(const json_value *v, char *what, size_t wn, char *why) {
    select_case c;
    char expect[512];
    int hf, hl, count = -1, offset;
    const json_value *e;
    memset(&c, 0, sizeof c);
    c.pattern = json_str(json_at(v, 0));
    e = json_at(v, 6);
    if (json_len(v) != 8 || !c.pattern || !json_int(json_at(v, 1), &c.pp_rank) || !json_int(json_at(v, 2), &c.pp_size) ||
        !opt_int(json_at(v, 3), &c.has_vp, &c.vp) || !opt_int(json_at(v, 4), &hf, &c.first) ||
        !opt_int(json_at(v, 5), &hl, &c.last) || !json_int(json_at(v, 7), &offset))
        return MALFORMED(why);
    if ((hf && c.first == 0) || (hl && c.last == 0))
        return failf(why, "first/last = 0 cannot be expressed (nam reads 0 as None)");
    select_what("select_mocked_ok", &c, what, wn);
    if (json_is_array(e)) {
        if (!join_symbols(e, expect, sizeof expect)) return MALFORMED(why);
        return check_select_ok(&c, expect, -1, offset, why);
    }
    if (!json_int(e, &count) || count < 0) return MALFORMED(why);
    return check_select_ok(&c, NULL, count, offset, why);
}

static int v_select_mocked_err(const json_value *v, char *what, size_t wn, char *why) {
    select_case c;
    int hf, hl;
    const char *sub = json_str(json_at(v, 6));
    memset(&c, 0, sizeof c);
    c.pattern = json_str(json_at(v, 0));
    if (!c.pattern || !sub || !json_int(json_at(v, 1), &c.pp_rank) || !json_int(json_at(v, 2), &c.pp_size) ||
        !opt_int(json_at(v, 3), &c.has_vp, &c.vp) || !opt_int(json_at(v, 4), &hf, &c.first) ||
        !opt_int(json_at(v, 5), &hl, &c.last))
        return MALFORMED(why);
    if ((hf && c.first == 0) || (hl && c.last == 0))
        return failf(why, "first/last = 0 cannot be expressed (nam reads 0 as None)");
    select_what("select_mocked_err", &c, what, wn);
    appendf(what, " ~ \"%s\"", sub);
    return check_select_err(&c, sub, why);
}

/* get_layer_maps_from_layer_type_list: {symbol: {"global index": local index}}. nam gives
   the same information as local[i]; every layer must sit in its symbol's map with nam's
   local index, and the maps may hold nothing else. */
static int v_layer_maps(const json_value *v, char *what, size_t wn, char *why) {
    char layers[512];
    const json_value *maps = json_at(v, 1);
    int local[512], n, i, ok = 1;
    size_t k, total = 0;
    nam_error err;
    char eb[700];
    if (!join_symbols(json_at(v, 0), layers, sizeof layers) || !json_is_object(maps)) return MALFORMED(why);
    n = (int)strlen(layers);
    snprintf(what, wn, "layer_maps \"%s\"", layers);
    for (i = 0; i < n; ++i) local[i] = -1;
    err_clear(&err);
    if (nam_megatron_layer_maps(layers, n, local, &err) != NAM_OK)
        return failf(why, "nam_megatron_layer_maps failed: %s", err_text(&err, eb, sizeof eb));
    for (k = 0; k < json_len(maps); ++k) total += json_len(json_at(maps, k));
    if (total != (size_t)n) return failf(why, "malformed vector: maps hold %lu entries for %d layers", (unsigned long)total, n);
    for (i = 0; ok && i < n; ++i) {
        char sym[2], idx[16];
        const json_value *m;
        int want;
        sym[0] = layers[i];
        sym[1] = '\0';
        snprintf(idx, sizeof idx, "%d", i);
        m = json_get(maps, sym);
        if (!m || !json_int(json_get(m, idx), &want))
            return failf(why, "malformed vector: layer %d ('%c') missing from the maps", i, layers[i]);
        if (local[i] != want) ok = failf(why, "local[%d] ('%c') = %d, want %d", i, layers[i], local[i], want);
    }
    return ok;
}

/* pattern_from_ratios(num_layers, attention_ratio, mlp_ratio): the vectors give the
   symbol counts of the result (absent symbols count 0). */
static int v_pattern_from_ratios(const json_value *v, char *what, size_t wn, char *why) {
    int n, i, got[NAM_MSYM_COUNT], want[NAM_MSYM_COUNT];
    const json_value *counts = json_at(v, 3);
    double attn, mlp;
    char *out;
    nam_error err;
    nam_status st;
    char eb[700];
    size_t k;
    if (json_len(v) != 4 || !json_int(json_at(v, 0), &n) || n <= 0 || n > 100000 || !json_is_number(json_at(v, 1)) ||
        !json_is_number(json_at(v, 2)) || !json_is_object(counts))
        return MALFORMED(why);
    attn = json_at(v, 1)->number;
    mlp = json_at(v, 2)->number;
    snprintf(what, wn, "pattern_from_ratios(%d, %g, %g)", n, attn, mlp);
    memset(want, 0, sizeof want);
    for (k = 0; k < json_len(counts); ++k) {
        const char *key = json_key_at(counts, k);
        int idx = (key && strlen(key) == 1) ? nam_megatron_symbol_index(key[0]) : -1;
        if (idx < 0 || !json_int(json_at(counts, k), &want[idx])) return MALFORMED(why);
    }
    out = (char *)malloc((size_t)n + 1);
    if (!out) return failf(why, "out of memory");
    err_clear(&err);
    st = nam_megatron_pattern_from_ratios(n, attn, mlp, out, (size_t)n + 1, &err);
    if (st != NAM_OK) {
        failf(why, "nam_megatron_pattern_from_ratios failed: %s", err_text(&err, eb, sizeof eb));
        free(out);
        return 0;
    }
    memset(got, 0, sizeof got);
    for (i = 0; i < n; ++i) {
        int idx = nam_megatron_symbol_index(out[i]);
        if (idx < 0 || out[i] == '\0') {
            failf(why, "byte %d of the result is not a layer symbol", i);
            free(out);
            return 0;
        }
        ++got[idx];
    }
    if (out[n] != '\0' || memcmp(got, want, sizeof got) != 0) {
        failf(why, "got \"%.*s\" counts [%d %d %d %d %d %d %d], want [%d %d %d %d %d %d %d] (order %s)", n < 200 ? n : 200, out,
              got[0], got[1], got[2], got[3], got[4], got[5], got[6], want[0], want[1], want[2], want[3], want[4],
              want[5], want[6], NAM_MEGATRON_SYMBOLS);
        free(out);
        return 0;
    }
    free(out);
    return 1;
}

static void check_key_order(const json_value *root) {
    const json_value *list = json_get(root, "layer_counts_key_order");
    char got[64], why[WHY_MAX];
    const char *what = "layer_counts_key_order = NAM_MEGATRON_SYMBOLS";
    int i;
    if (!join_symbols(list, got, sizeof got)) {
        test_check(0, what, "group missing or malformed in the vectors file");
        return;
    }
    if (strcmp(got, NAM_MEGATRON_SYMBOLS) != 0) {
        failf(why, "Megatron order \"%s\", NAM_MEGATRON_SYMBOLS \"%s\"", got, NAM_MEGATRON_SYMBOLS);
        test_check(0, what, why);
        return;
    }
    /* the enum and nam_megatron_symbol_index must index counts[] in the same order */
    if (NAM_MEGATRON_SYMBOLS[NAM_MSYM_ATTENTION] != '*' || NAM_MEGATRON_SYMBOLS[NAM_MSYM_DSA] != 'D' ||
        NAM_MEGATRON_SYMBOLS[NAM_MSYM_GDN] != 'G' || NAM_MEGATRON_SYMBOLS[NAM_MSYM_MAMBA] != 'M' ||
        NAM_MEGATRON_SYMBOLS[NAM_MSYM_MLA] != '+' || NAM_MEGATRON_SYMBOLS[NAM_MSYM_MLP] != '-' ||
        NAM_MEGATRON_SYMBOLS[NAM_MSYM_MOE] != 'E') {
        test_check(0, what, "NAM_MSYM_* enum does not follow NAM_MEGATRON_SYMBOLS");
        return;
    }
    for (i = 0; i < NAM_MSYM_COUNT; ++i) {
        if (nam_megatron_symbol_index(got[i]) != i) {
            failf(why, "nam_megatron_symbol_index('%c') = %d, want %d", got[i], nam_megatron_symbol_index(got[i]), i);
            test_check(0, what, why);
            return;
        }
    }
    {
        const char *non = "|/ARm x\0";
        const char *c;
        for (c = non; *c; ++c) {
            if (nam_megatron_symbol_index(*c) != -1) {
                failf(why, "nam_megatron_symbol_index('%c') = %d, want -1", *c, nam_megatron_symbol_index(*c));
                test_check(0, what, why);
                return;
            }
        }
        if (nam_megatron_symbol_index('\0') != -1) {
            test_check(0, what, "nam_megatron_symbol_index('\\0') != -1");
            return;
        }
    }
    test_check(1, what, NULL);
}

static void run_hybrid(const json_value *root) {
    run_group(root, "validate_segment_layers_ok", v_segment_ok);
    run_group(root, "validate_segment_layers_all_valid", v_segment_all_valid);
    run_group(root, "validate_segment_layers_err", v_segment_err);
    run_group(root, "total_layer_count", v_total_layer_count);
    run_group(root, "pipeline_segment_count", v_segment_count);
    run_group(root, "parse_ok", v_parse_ok);
    run_group(root, "parse_err", v_parse_err);
    check_key_order(root);
    run_group(root, "layer_counts", v_layer_counts);
    run_group(root, "select_single_rank_ok", v_select_single_ok);
    run_group(root, "select_single_rank_err", v_select_single_err);
    run_group(root, "select_mocked_ok", v_select_mocked_ok);
    run_group(root, "select_mocked_err", v_select_mocked_err);
    run_group(root, "layer_maps", v_layer_maps);
    run_group(root, "pattern_from_ratios_counts", v_pattern_from_ratios);
}

/* ------------------------------------------------------------------ rank vectors ---- */

static void fmt_group_json(const json_value *g, char *buf, size_t n) {
    size_t i, k = 0;
    int x;
    buf[0] = '\0';
    k += (size_t)snprintf(buf + k, n - k, "[");
    for (i = 0; i < json_len(g) && k + 16 < n; ++i) {
        x = 0;
        json_int(json_at(g, i), &x);
        k += (size_t)snprintf(buf + k, n - k, i ? ",%d" : "%d", x);
    }
    if (i < json_len(g)) snprintf(buf + k, n - k, ",...]");
    else snprintf(buf + k, n - k, "]");
}

static void fmt_group_nam(const int *r, int len, char *buf, size_t n) {
    size_t k = 0;
    int i;
    buf[0] = '\0';
    k += (size_t)snprintf(buf + k, n - k, "[");
    for (i = 0; i < len && k + 16 < n; ++i) k += (size_t)snprintf(buf + k, n - k, i ? ",%d" : "%d", r[i]);
    if (i < len) snprintf(buf + k, n - k, ",...]");
    else snprintf(buf + k, n - k, "]");
}

/* Exact comparison: same number of groups, same group order, same rank order. */
static int compare_groups(const char *name, const nam_rank_groups *g, const json_value *want, char *why) {
    size_t i, j, ng = json_len(want);
    char eb[256], gb[256];
    if (!json_is_array(want)) return failf(why, "%s: malformed expected groups", name);
    if (g->num_groups < 0 || (size_t)g->num_groups != ng)
        return failf(why, "%s: %d groups, want %lu", name, g->num_groups, (unsigned long)ng);
    for (i = 0; i < ng; ++i) {
        const json_value *w = json_at(want, i);
        const int *r = g->ranks ? g->ranks + i * (size_t)g->group_size : NULL;
        int bad = !json_is_array(w) || g->group_size < 0 || json_len(w) != (size_t)g->group_size || !r;
        for (j = 0; !bad && j < json_len(w); ++j) {
            int x;
            if (!json_int(json_at(w, j), &x) || x != r[j]) bad = 1;
        }
        if (bad) {
            fmt_group_json(w, eb, sizeof eb);
            if (r && g->group_size >= 0) fmt_group_nam(r, g->group_size, gb, sizeof gb);
            else snprintf(gb, sizeof gb, "(no ranks)");
            return failf(why, "%s: group %lu of %lu is %s, want %s", name, (unsigned long)i, (unsigned long)ng, gb,
                         eb);
        }
    }
    return 1;
}

typedef struct rank_set {
    int world, tp, pp, cp, ep, dp, edp;
    const char *order, *expert_order;
    const json_value *groups, *expert_groups;
} rank_set;

static int read_rank_set(const json_value *s, rank_set *r) {
    memset(r, 0, sizeof *r);
    r->order = json_str(json_get(s, "order"));
    r->expert_order = json_str(json_get(s, "expert_order"));
    r->groups = json_get(s, "groups");
    r->expert_groups = json_get(s, "expert_groups");
    return json_int(json_get(s, "world"), &r->world) && json_int(json_get(s, "tp"), &r->tp) &&
           json_int(json_get(s, "pp"), &r->pp) && json_int(json_get(s, "cp"), &r->cp) &&
           json_int(json_get(s, "ep"), &r->ep) && json_int(json_get(s, "dp"), &r->dp) &&
           json_int(json_get(s, "expert_dp"), &r->edp) && r->order && r->expert_order &&
           json_is_object(r->groups) && json_is_object(r->expert_groups) && json_len(r->groups) > 0 &&
           json_len(r->expert_groups) > 0;
}

/* Every group named in `groups` from RankGenerator(desc).get_ranks(name). */
static int check_rankgen(const nam_rankgen_desc *d, const json_value *groups, char *why) {
    size_t i;
    char eb[700];
    for (i = 0; i < json_len(groups); ++i) {
        const char *name = json_key_at(groups, i);
        nam_rank_groups g;
        nam_error err;
        nam_status st;
        int ok;
        memset(&g, 0, sizeof g);
        err_clear(&err);
        st = nam_rankgen_ranks(d, name, &g, &err);
        if (st != NAM_OK) {
            failf(why, "nam_rankgen_ranks(\"%s\") failed: %s", name, err_text(&err, eb, sizeof eb));
            nam_rank_groups_free(&g);
            return 0;
        }
        ok = compare_groups(name, &g, json_at(groups, i), why);
        nam_rank_groups_free(&g);
        if (!ok) return 0;
    }
    return 1;
}

static int check_rankmap(const rank_set *r, char *why) {
    nam_rankmap_desc d;
    nam_rankmap m;
    nam_error err;
    char eb[700];
    size_t i;
    int ok = 1, pass;
    memset(&d, 0, sizeof d);
    d.world_size = r->world;
    d.tp = r->tp;
    d.pp = r->pp;
    d.cp = r->cp;
    d.ep = r->ep;
    d.etp = 0;          /* = tp, as in the upstream test */
    d.order = NULL;     /* default tp-cp-ep-dp-pp */
    memset(&m, 0, sizeof m);
    err_clear(&err);
    if (nam_rankmap_build(&d, &m, &err) != NAM_OK) {
        failf(why, "nam_rankmap_build failed: %s", err_text(&err, eb, sizeof eb));
        nam_rankmap_free(&m);
        return 0;
    }
    if (m.dp != r->dp || m.edp != r->edp || m.etp != r->tp) {
        ok = failf(why, "dp %d edp %d etp %d, want dp %d edp %d etp %d", m.dp, m.edp, m.etp, r->dp, r->edp, r->tp);
    }
    /* the default order reduces to the vectors' orders because the axes it adds have
       size 1 (ep for the decoder, cp for the experts) */
    for (pass = 0; ok && pass < 2; ++pass) {
        const json_value *groups = pass ? r->expert_groups : r->groups;
        for (i = 0; ok && i < json_len(groups); ++i) {
            const char *name = json_key_at(groups, i);
            const nam_rank_groups *g = nam_rankmap_find(&m, pass, name);
            char label[64];
            snprintf(label, sizeof label, "%s %s", pass ? "expert" : "decoder", name);
            if (!g) ok = failf(why, "nam_rankmap_find(%s) = NULL", label);
            else ok = compare_groups(label, g, json_at(groups, i), why);
        }
    }
    nam_rankmap_free(&m);
    return ok;
}

static void run_ranks(const json_value *root) {
    const json_value *sets = json_get(root, "upstream_test_rank_generator_for_tp_dp_pp");
    char what[256], why[WHY_MAX];
    size_t i;
    if (!json_is_array(sets) || json_len(sets) == 0) {
        test_check(0, "upstream_test_rank_generator_for_tp_dp_pp", "group missing or empty in the vectors file");
    }
    for (i = 0; i < json_len(sets); ++i) {
        rank_set r;
        nam_rankgen_desc d;
        char cfg[160];
        if (!read_rank_set(json_at(sets, i), &r)) {
            snprintf(what, sizeof what, "rankgen set %lu", (unsigned long)i);
            test_check(0, what, "malformed vector");
            continue;
        }
        snprintf(cfg, sizeof cfg, "set %lu world=%d tp=%d pp=%d cp=%d ep=%d dp=%d edp=%d", (unsigned long)i, r.world,
                 r.tp, r.pp, r.cp, r.ep, r.dp, r.edp);

        /* decoder: RankGenerator(tp, ep=1, dp, pp, cp, order) */
        memset(&d, 0, sizeof d);
        d.tp = r.tp; d.ep = 1; d.dp = r.dp; d.pp = r.pp; d.cp = r.cp; d.order = r.order;
        snprintf(what, sizeof what, "rankgen decoder %s order=%s", cfg, r.order);
        why[0] = '\0';
        test_check(check_rankgen(&d, r.groups, why), what, why);

        /* expert: RankGenerator(tp, ep, dp=expert_dp, pp, cp=1, expert_order) */
        memset(&d, 0, sizeof d);
        d.tp = r.tp; d.ep = r.ep; d.dp = r.edp; d.pp = r.pp; d.cp = 1; d.order = r.expert_order;
        snprintf(what, sizeof what, "rankgen expert %s order=%s", cfg, r.expert_order);
        why[0] = '\0';
        test_check(check_rankgen(&d, r.expert_groups, why), what, why);

        /* the whole rank map with nam's default order */
        snprintf(what, sizeof what, "rankmap %s order=default", cfg);
        why[0] = '\0';
        test_check(check_rankmap(&r, why), what, why);
    }

    /* generate_masked_orthogonal_rank_groups examples */
    {
        static const char *const names[2] = {"generate_masked_orthogonal_rank_groups_docstring_example",
                                             "docstring_example_tp_pp_dp_8"};
        int k;
        for (k = 0; k < 2; ++k) {
            const json_value *ex = json_get(root, names[k]);
            const json_value *ps = json_get(ex, "parallel_size"), *mk = json_get(ex, "mask");
            const json_value *res = json_get(ex, "result");
            int world, n, sizes[8], mask[8], j, ok = 1;
            nam_rank_groups g;
            nam_error err;
            char eb[700];
            snprintf(what, sizeof what, "%s", names[k]);
            why[0] = '\0';
            n = (int)json_len(ps);
            if (!json_int(json_get(ex, "world_size"), &world) || n <= 0 || n > 8 || json_len(mk) != (size_t)n ||
                !json_is_array(res)) {
                test_check(0, what, "malformed vector");
                continue;
            }
            for (j = 0; j < n; ++j) {
                int b = json_bool(json_at(mk, (size_t)j));
                if (!json_int(json_at(ps, (size_t)j), &sizes[j]) || b < 0) ok = 0;
                mask[j] = b;
            }
            if (!ok) { test_check(0, what, "malformed vector"); continue; }
            snprintf(what, sizeof what, "%s nam_rank_groups_masked(world=%d, sizes=[", names[k], world);
            for (j = 0; j < n; ++j) appendf(what, j ? ",%d" : "%d", sizes[j]);
            appendf(what, "], mask=[");
            for (j = 0; j < n; ++j) appendf(what, j ? ",%d" : "%d", mask[j]);
            appendf(what, "])");
            memset(&g, 0, sizeof g);
            err_clear(&err);
            if (nam_rank_groups_masked(world, n, sizes, mask, &g, &err) != NAM_OK)
                ok = failf(why, "failed: %s", err_text(&err, eb, sizeof eb));
            else
                ok = compare_groups("result", &g, res, why);
            nam_rank_groups_free(&g);
            test_check(ok, what, why);

            /* the tp-pp-dp example also through RankGenerator, its stated order */
            if (k == 1) {
                const char *order = json_str(json_get(ex, "order"));
                nam_rankgen_desc d;
                if (!order || n != 3 || !mask[2] || mask[0] || mask[1]) {
                    test_check(0, "docstring_example_tp_pp_dp_8 via nam_rankgen_ranks", "unexpected vector shape");
                    continue;
                }
                memset(&d, 0, sizeof d);
                d.tp = sizes[0]; d.pp = sizes[1]; d.dp = sizes[2]; d.order = order;
                snprintf(what, sizeof what, "docstring_example_tp_pp_dp_8 nam_rankgen_ranks(tp=%d pp=%d dp=%d order=%s, \"dp\")",
                         d.tp, d.pp, d.dp, order);
                why[0] = '\0';
                memset(&g, 0, sizeof g);
                err_clear(&err);
                if (nam_rankgen_ranks(&d, "dp", &g, &err) != NAM_OK)
                    ok = failf(why, "failed: %s", err_text(&err, eb, sizeof eb));
                else
                    ok = compare_groups("dp", &g, res, why);
                nam_rank_groups_free(&g);
                test_check(ok, what, why);
            }
        }
    }
}

/* ------------------------------------------------------------------ main ------------ */

static int file_exists(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    fclose(f);
    return 1;
}

/* Loads and parses `path`; a read or parse error is reported as a FAIL. */
static json_doc *load(const char *path) {
    size_t len = 0;
    char err[256];
    char *text = json_read_file(path, &len);
    json_doc *doc;
    char what[1200];
    snprintf(what, sizeof what, "load %s", path);
    if (!text) {
        test_check(0, what, "cannot read file");
        return NULL;
    }
    doc = json_parse(text, len, err, sizeof err);
    free(text);
    if (!doc) test_check(0, what, err);
    else if (!json_is_object(doc->root)) {
        test_check(0, what, "top level is not an object");
        json_free(doc);
        doc = NULL;
    }
    return doc;
}

int main(int argc, char **argv) {
    const char *dir = NULL;
    char hybrid_path[1024], rank_path[1024];
    int have_hybrid, have_rank;

    if (argc > 1 && argv[1][0]) dir = argv[1];
    if (!dir) {
        const char *env = getenv("NAM_REFERENCE_DIR");
        if (env && *env) dir = env;
    }
    if (!dir) dir = "../shared/reference";
    snprintf(hybrid_path, sizeof hybrid_path, "%s/megatron_hybrid_vectors.json", dir);
    snprintf(rank_path, sizeof rank_path, "%s/megatron_rank_vectors.json", dir);

    have_hybrid = file_exists(hybrid_path);
    have_rank = file_exists(rank_path);
    if (!have_hybrid && !have_rank) {
        test_skip("megatron vectors: %s not found", hybrid_path);
        return 0;
    }

    {
        const char *paths[2];
        void (*runs[2])(const json_value *);
        int have[2], i;
        paths[0] = hybrid_path; runs[0] = run_hybrid; have[0] = have_hybrid;
        paths[1] = rank_path; runs[1] = run_ranks; have[1] = have_rank;
        for (i = 0; i < 2; i++) {
            json_doc *doc;
            if (!have[i]) { test_skip("megatron vectors: %s not found", paths[i]); continue; }
            doc = load(paths[i]);
            if (doc) runs[i](doc->root);
            json_free(doc);
        }
    }
    return test_done("test_vectors");
}
