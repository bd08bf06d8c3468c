/* tests/json.h - a small JSON DOM reader for nam's tests (C99, also compiles as C++).

   Written for this project; every function is static, so include it in as many test
   programs as you like. Not a general-purpose library: it reads trusted test-vector
   files, but it still checks the grammar and never reads out of bounds.

       json_doc *doc = json_parse(text, len, errbuf, sizeof errbuf);
       const json_value *v = json_get(doc->root, "key");       NULL when absent
       size_t n = json_len(v);                                  array/object entries
       const json_value *x = json_at(v, i);                     NULL when out of range
       json_free(doc);

   Values: null, true, false, numbers (double), strings (UTF-8, escapes decoded,
   NUL-terminated, `len` bytes), arrays and objects (keys kept in file order; json_get
   returns the first match). All nodes live in one arena owned by the json_doc, so a
   document is freed with a single json_free. Nesting is limited to JSON_MAX_DEPTH. */
#ifndef NAM_TESTS_JSON_H
#define NAM_TESTS_JSON_H

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__GNUC__) || defined(__clang__)
#define JSON_FN static __attribute__((unused))
#else
#define JSON_FN static
#endif

#ifndef JSON_MAX_DEPTH
#define JSON_MAX_DEPTH 256
#endif

typedef enum json_type {
    JSON_NULL, JSON_FALSE, JSON_TRUE, JSON_NUMBER, JSON_STRING, JSON_ARRAY, JSON_OBJECT
} json_type;

typedef struct json_value json_value;
struct json_value {
    json_type type;
    double number;            /* JSON_NUMBER */
    const char *str;          /* JSON_STRING: decoded, NUL-terminated */
    size_t len;               /* JSON_STRING: bytes, without the NUL */
    size_t count;             /* JSON_ARRAY / JSON_OBJECT: entries */
    json_value **items;       /* array items, or object values */
    const char **keys;        /* JSON_OBJECT: keys (decoded, NUL-terminated) */
};

typedef struct json_block {
    struct json_block *next;
    size_t used, size;
    /* data follows, aligned */
} json_block;

typedef struct json_doc {
    json_value *root;
    json_block *blocks;
} json_doc;

/* ---------------------------------------------------------------- arena ---------- */

#define JSON__ALIGN 16u
#define JSON__HDR (((sizeof(json_block) + JSON__ALIGN - 1) / JSON__ALIGN) * JSON__ALIGN)

static void *json__alloc(json_doc *doc, size_t n) {
    json_block *b = doc->blocks;
    n = (n + JSON__ALIGN - 1) & ~(size_t)(JSON__ALIGN - 1);
    if (n == 0) n = JSON__ALIGN;
    if (!b || b->size - b->used < n) {
        size_t size = 256u * 1024u;
        if (n > size / 4) { /* big request: its own block, keep the current one open */
            json_block *big = (json_block *)malloc(JSON__HDR + n);
            if (!big) return NULL;
            big->size = n;
            big->used = n;
            if (b) { big->next = b->next; b->next = big; }
            else { big->next = NULL; doc->blocks = big; }
            return (char *)big + JSON__HDR;
        }
        b = (json_block *)malloc(JSON__HDR + size);
        if (!b) return NULL;
        b->size = size;
        b->used = 0;
        b->next = doc->blocks;
        doc->blocks = b;
    }
    {
        void *p = (char *)b + JSON__HDR + b->used;
        b->used += n;
        return p;
    }
}

/* ---------------------------------------------------------------- parser --------- */

typedef struct json__parser {
    const char *p, *end, *begin;
    json_doc *doc;
    json_value **stack;       /* pending children of open containers */
    const char **kstack;      /* pending keys (same index as stack; NULL for array items) */
    size_t sp, scap;
    char *err;
    size_t errlen;
    int failed;
} json__parser;

static void json__fail(json__parser *ps, const char *what) {
    if (ps->failed) return;
    ps->failed = 1;
    if (ps->err && ps->errlen) {
        size_t line = 1, col = 1;
        const char *q;
        for (q = ps->begin; q < ps->p && q < ps->end; ++q) {
            if (*q == '\n') { ++line; col = 1; } else ++col;
        }
        snprintf(ps->err, ps->errlen, "json: %s at line %lu column %lu (byte %lu)", what,
                 (unsigned long)line, (unsigned long)col, (unsigned long)(ps->p - ps->begin));
    }
}

static void json__ws(json__parser *ps) {
    while (ps->p < ps->end) {
        char c = *ps->p;
        if (c == ' ' || c == '\t' || c == '\n' || c == '\r') ++ps->p;
        else break;
    }
}

static int json__push(json__parser *ps, json_value *v, const char *key) {
    if (ps->sp == ps->scap) {
        size_t ncap = ps->scap ? ps->scap * 2 : 256;
        json_value **ns = (json_value **)realloc(ps->stack, ncap * sizeof *ns);
        const char **nk;
        if (!ns) { json__fail(ps, "out of memory"); return 0; }
        ps->stack = ns;
        nk = (const char **)realloc(ps->kstack, ncap * sizeof *nk);
        if (!nk) { json__fail(ps, "out of memory"); return 0; }
        ps->kstack = nk;
        ps->scap = ncap;
    }
    ps->stack[ps->sp] = v;
    ps->kstack[ps->sp] = key;
    ++ps->sp;
    return 1;
}

static int json__hex4(const char *s, unsigned *out) {
    unsigned v = 0;
    int i;
    for (i = 0; i < 4; ++i) {
        char c = s[i];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f') v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') v |= (unsigned)(c - 'A' + 10);
        else return 0;
    }
    *out = v;
    return 1;
}

/* Parses a string starting at the opening quote; returns the decoded text in the
   arena (NUL-terminated) and its length, or NULL on error. */
static const char *json__string(json__parser *ps, size_t *len_out) {
    const char *s = ps->p + 1, *q = s;
    size_t raw = 0;
    int has_escape = 0;
    char *out, *o;
    /* first pass: find the closing quote, check bytes, learn whether escapes occur */
    while (q < ps->end && *q != '"') {
        unsigned char c = (unsigned char)*q;
        if (c < 0x20) { ps->p = q; json__fail(ps, "control character in string"); return NULL; }
        if (c == '\\') {
            has_escape = 1;
            if (q + 1 >= ps->end) break;
            q += 2;
        } else {
            ++q;
        }
    }
    if (q >= ps->end) { ps->p = q; json__fail(ps, "unterminated string"); return NULL; }
    raw = (size_t)(q - s);
    out = (char *)json__alloc(ps->doc, raw + 1);  /* decoded text is never longer */
    if (!out) { json__fail(ps, "out of memory"); return NULL; }
    if (!has_escape) {
        memcpy(out, s, raw);
        out[raw] = '\0';
        *len_out = raw;
        ps->p = q + 1;
        return out;
    }
    o = out;
    while (s < q) {
        if (*s != '\\') { *o++ = *s++; continue; }
        ++s; /* s < q guaranteed by the first pass */
        switch (*s) {
        case '"': *o++ = '"'; ++s; break;
        case '\\': *o++ = '\\'; ++s; break;
        case '/': *o++ = '/'; ++s; break;
        case 'b': *o++ = '\b'; ++s; break;
        case 'f': *o++ = '\f'; ++s; break;
        case 'n': *o++ = '\n'; ++s; break;
        case 'r': *o++ = '\r'; ++s; break;
        case 't': *o++ = '\t'; ++s; break;
        case 'u': {
            unsigned cp, lo;
            if (q - s < 5 || !json__hex4(s + 1, &cp)) {
                ps->p = s; json__fail(ps, "bad \\u escape"); return NULL;
            }
            s += 5;
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                if (q - s < 6 || s[0] != '\\' || s[1] != 'u' || !json__hex4(s + 2, &lo) ||
                    lo < 0xDC00 || lo > 0xDFFF) {
                    ps->p = s; json__fail(ps, "unpaired surrogate in \\u escape"); return NULL;
                }
                s += 6;
                cp = 0x10000u + ((cp - 0xD800u) << 10) + (lo - 0xDC00u);
            } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
                ps->p = s; json__fail(ps, "unpaired surrogate in \\u escape"); return NULL;
            }
            /* UTF-8: at most 4 bytes, never more than the 6 or 12 escape bytes read */
            if (cp < 0x80) {
                *o++ = (char)cp;
            } else if (cp < 0x800) {
                *o++ = (char)(0xC0 | (cp >> 6));
                *o++ = (char)(0x80 | (cp & 0x3F));
            } else if (cp < 0x10000) {
                *o++ = (char)(0xE0 | (cp >> 12));
                *o++ = (char)(0x80 | ((cp >> 6) & 0x3F));
                *o++ = (char)(0x80 | (cp & 0x3F));
            } else {
                *o++ = (char)(0xF0 | (cp >> 18));
                *o++ = (char)(0x80 | ((cp >> 12) & 0x3F));
                *o++ = (char)(0x80 | ((cp >> 6) & 0x3F));
                *o++ = (char)(0x80 | (cp & 0x3F));
            }
            break;
        }
        default:
            ps->p = s; json__fail(ps, "bad escape"); return NULL;
        }
    }
    *o = '\0';
    *len_out = (size_t)(o - out);
    ps->p = q + 1;
    return out;
}

static int json__number(json__parser *ps, double *out) {
    const char *s = ps->p, *q = s;
    int neg = 0, simple = 1;
    size_t ndig = 0;
    double ip = 0.0;
    if (q < ps->end && *q == '-') { neg = 1; ++q; }
    if (q >= ps->end || *q < '0' || *q > '9') { json__fail(ps, "bad number"); return 0; }
    if (*q == '0') {
        ++q;
        ndig = 1;
    } else {
        while (q < ps->end && *q >= '0' && *q <= '9') { ip = ip * 10.0 + (*q - '0'); ++q; ++ndig; }
    }
    if (q < ps->end && *q == '.') {
        simple = 0;
        ++q;
        if (q >= ps->end || *q < '0' || *q > '9') { ps->p = q; json__fail(ps, "bad number"); return 0; }
        while (q < ps->end && *q >= '0' && *q <= '9') ++q;
    }
    if (q < ps->end && (*q == 'e' || *q == 'E')) {
        simple = 0;
        ++q;
        if (q < ps->end && (*q == '+' || *q == '-')) ++q;
        if (q >= ps->end || *q < '0' || *q > '9') { ps->p = q; json__fail(ps, "bad number"); return 0; }
        while (q < ps->end && *q >= '0' && *q <= '9') ++q;
    }
    if (simple && ndig <= 15) {
        *out = neg ? -ip : ip;          /* exact: integers below 2^53 */
    } else {
        char buf[512];
        size_t n = (size_t)(q - s);
        if (n >= sizeof buf) { json__fail(ps, "number too long"); return 0; }
        memcpy(buf, s, n);
        buf[n] = '\0';
        *out = strtod(buf, NULL);
    }
    ps->p = q;
    return 1;
}

static int json__lit(json__parser *ps, const char *word) {
    size_t n = strlen(word);
    if ((size_t)(ps->end - ps->p) < n || memcmp(ps->p, word, n) != 0) {
        json__fail(ps, "unexpected token");
        return 0;
    }
    ps->p += n;
    return 1;
}

static json_value *json__new(json__parser *ps, json_type t) {
    json_value *v = (json_value *)json__alloc(ps->doc, sizeof *v);
    if (!v) { json__fail(ps, "out of memory"); return NULL; }
    memset(v, 0, sizeof *v);
    v->type = t;
    return v;
}

/* Moves the children pushed since `base` into the container `v`. */
static int json__close(json__parser *ps, json_value *v, size_t base, int object) {
    size_t n = ps->sp - base;
    v->count = n;
    if (n) {
        v->items = (json_value **)json__alloc(ps->doc, n * sizeof *v->items);
        if (!v->items) { json__fail(ps, "out of memory"); return 0; }
        memcpy(v->items, ps->stack + base, n * sizeof *v->items);
        if (object) {
            v->keys = (const char **)json__alloc(ps->doc, n * sizeof *v->keys);
            if (!v->keys) { json__fail(ps, "out of memory"); return 0; }
            memcpy(v->keys, ps->kstack + base, n * sizeof *v->keys);
        }
    }
    ps->sp = base;
    return 1;
}

static json_value *json__value(json__parser *ps, int depth) {
    json_value *v;
    json__ws(ps);
    if (ps->p >= ps->end) { json__fail(ps, "unexpected end of input"); return NULL; }
    if (depth > JSON_MAX_DEPTH) { json__fail(ps, "nesting too deep"); return NULL; }
    switch (*ps->p) {
    case 'n': if (!json__lit(ps, "null")) return NULL; return json__new(ps, JSON_NULL);
    case 't': if (!json__lit(ps, "true")) return NULL; return json__new(ps, JSON_TRUE);
    case 'f': if (!json__lit(ps, "false")) return NULL; return json__new(ps, JSON_FALSE);
    case '"': {
        size_t len = 0;
        const char *s = json__string(ps, &len);
        if (!s) return NULL;
        v = json__new(ps, JSON_STRING);
        if (!v) return NULL;
        v->str = s;
        v->len = len;
        return v;
    }
    case '[': {
        size_t base = ps->sp;
        v = json__new(ps, JSON_ARRAY);
        if (!v) return NULL;
        ++ps->p;
        json__ws(ps);
        if (ps->p < ps->end && *ps->p == ']') { ++ps->p; return v; }
        for (;;) {
            json_value *item = json__value(ps, depth + 1);
            if (!item || !json__push(ps, item, NULL)) return NULL;
            json__ws(ps);
            if (ps->p >= ps->end) { json__fail(ps, "unterminated array"); return NULL; }
            if (*ps->p == ',') { ++ps->p; continue; }
            if (*ps->p == ']') { ++ps->p; break; }
            json__fail(ps, "expected ',' or ']'");
            return NULL;
        }
        return json__close(ps, v, base, 0) ? v : NULL;
    }
    case '{': {
        size_t base = ps->sp;
        v = json__new(ps, JSON_OBJECT);
        if (!v) return NULL;
        ++ps->p;
        json__ws(ps);
        if (ps->p < ps->end && *ps->p == '}') { ++ps->p; return v; }
        for (;;) {
            size_t klen = 0;
            const char *key;
            json_value *item;
            json__ws(ps);
            if (ps->p >= ps->end || *ps->p != '"') { json__fail(ps, "expected a string key"); return NULL; }
            key = json__string(ps, &klen);
            if (!key) return NULL;
            json__ws(ps);
            if (ps->p >= ps->end || *ps->p != ':') { json__fail(ps, "expected ':'"); return NULL; }
            ++ps->p;
            item = json__value(ps, depth + 1);
            if (!item || !json__push(ps, item, key)) return NULL;
            json__ws(ps);
            if (ps->p >= ps->end) { json__fail(ps, "unterminated object"); return NULL; }
            if (*ps->p == ',') { ++ps->p; continue; }
            if (*ps->p == '}') { ++ps->p; break; }
            json__fail(ps, "expected ',' or '}'");
            return NULL;
        }
        return json__close(ps, v, base, 1) ? v : NULL;
    }
    default:
        if (*ps->p == '-' || (*ps->p >= '0' && *ps->p <= '9')) {
            double d = 0.0;
            if (!json__number(ps, &d)) return NULL;
            v = json__new(ps, JSON_NUMBER);
            if (!v) return NULL;
            v->number = d;
            return v;
        }
        json__fail(ps, "unexpected character");
        return NULL;
    }
}

/* ---------------------------------------------------------------- public --------- */

JSON_FN void json_free(json_doc *doc) {
    json_block *b;
    if (!doc) return;
    b = doc->blocks;
    while (b) {
        json_block *next = b->next;
        free(b);
        b = next;
    }
    free(doc);
}

/* json_parse: parse `len` bytes of `text` (need not be NUL-terminated). Returns NULL on
   error, with a message in `err` (may be NULL). Trailing non-whitespace is an error. */
JSON_FN json_doc *json_parse(const char *text, size_t len, char *err, size_t errlen) {
    json__parser ps;
    json_doc *doc;
    if (err && errlen) err[0] = '\0';
    if (!text) {
        if (err && errlen) snprintf(err, errlen, "json: no input");
        return NULL;
    }
    doc = (json_doc *)calloc(1, sizeof *doc);
    if (!doc) {
        if (err && errlen) snprintf(err, errlen, "json: out of memory");
        return NULL;
    }
    memset(&ps, 0, sizeof ps);
    ps.p = ps.begin = text;
    ps.end = text + len;
    ps.doc = doc;
    ps.err = err;
    ps.errlen = errlen;
    doc->root = json__value(&ps, 0);
    if (doc->root) {
        json__ws(&ps);
        if (ps.p != ps.end) { json__fail(&ps, "trailing characters"); doc->root = NULL; }
    }
    free(ps.stack);
    free(ps.kstack);
    if (!doc->root) {
        json_free(doc);
        return NULL;
    }
    return doc;
}

/* json_read_file: the whole file, NUL-terminated, heap (free()); NULL if unreadable. */
JSON_FN char *json_read_file(const char *path, size_t *len_out) {
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    size_t cap = 0, len = 0;
    if (!f) return NULL;
    for (;;) {
        size_t got;
        if (cap - len < 65536) {
            size_t ncap = cap ? cap * 2 : 1 << 20;
            char *nb = (char *)realloc(buf, ncap + 1);
            if (!nb) { free(buf); fclose(f); return NULL; }
            buf = nb;
            cap = ncap;
        }
        got = fread(buf + len, 1, cap - len, f);
        len += got;
        if (got == 0) break;
    }
    if (ferror(f)) { free(buf); fclose(f); return NULL; }
    fclose(f);
    buf[len] = '\0';
    if (len_out) *len_out = len;
    return buf;
}

JSON_FN const json_value *json_get(const json_value *obj, const char *key) {
    size_t i;
    if (!obj || obj->type != JSON_OBJECT || !key) return NULL;
    for (i = 0; i < obj->count; ++i)
        if (strcmp(obj->keys[i], key) == 0) return obj->items[i];
    return NULL;
}

JSON_FN size_t json_len(const json_value *v) {
    return (v && (v->type == JSON_ARRAY || v->type == JSON_OBJECT)) ? v->count : 0;
}

JSON_FN const json_value *json_at(const json_value *v, size_t i) {
    if (!v || (v->type != JSON_ARRAY && v->type != JSON_OBJECT) || i >= v->count) return NULL;
    return v->items[i];
}

/* json_key_at: the i-th key of an object, NULL otherwise. */
JSON_FN const char *json_key_at(const json_value *v, size_t i) {
    if (!v || v->type != JSON_OBJECT || i >= v->count) return NULL;
    return v->keys[i];
}

JSON_FN int json_is_null(const json_value *v) { return v && v->type == JSON_NULL; }
JSON_FN int json_is_bool(const json_value *v) { return v && (v->type == JSON_TRUE || v->type == JSON_FALSE); }
JSON_FN int json_is_number(const json_value *v) { return v && v->type == JSON_NUMBER; }
JSON_FN int json_is_string(const json_value *v) { return v && v->type == JSON_STRING; }
JSON_FN int json_is_array(const json_value *v) { return v && v->type == JSON_ARRAY; }
JSON_FN int json_is_object(const json_value *v) { return v && v->type == JSON_OBJECT; }

/* json_int: the number as an int when it is integral and fits; returns 0 otherwise. */
JSON_FN int json_int(const json_value *v, int *out) {
    double d;
    if (!v || v->type != JSON_NUMBER) return 0;
    d = v->number;
    if (!(d >= -2147483648.0 && d <= 2147483647.0) || d != (double)(int)d) return 0;
    *out = (int)d;
    return 1;
}

/* json_str: the string, or NULL when v is not a string. */
JSON_FN const char *json_str(const json_value *v) {
    return (v && v->type == JSON_STRING) ? v->str : NULL;
}

/* json_bool: 1 for true, 0 for false, -1 when not a boolean. */
JSON_FN int json_bool(const json_value *v) {
    if (!v) return -1;
    if (v->type == JSON_TRUE) return 1;
    if (v->type == JSON_FALSE) return 0;
    return -1;
}

#endif /* NAM_TESTS_JSON_H */
