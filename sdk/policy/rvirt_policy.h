/*
 * rvirt_policy.h: write rvirt access policies and lifecycle hooks in C.
 *
 * Policy ABI 1.0 (docs/policy-abi.md). A module is a freestanding wasm32 module built with
 * clang, no libc needed:
 *
 *   clang --target=wasm32 -O2 -mbulk-memory -nostdlib -Wl,--no-entry -Wl,--export-dynamic \
 *         -I sdk/policy my_policy.c -o my_policy.wasm
 *
 * (sdk/policy/build.sh does this for every example.) The module:
 *   - declares the ABI it was built for with RVIRT_POLICY_ABI() (once, at file scope);
 *   - defines RVIRT_CHECK() { ... } for an access policy, returning RVIRT_ALLOW or
 *     RVIRT_DENY, or RVIRT_HOOK() { ... } for a hook, returning RVIRT_CONTINUE, RVIRT_VETO or
 *     RVIRT_AMEND (after rvirt_set_xml);
 *   - reads the request with the functions below (keys in docs/policy-abi.md: subject.uid,
 *     operation, object.name, xml, ...).
 * Globals persist between calls of a live instance but the host may start a fresh instance at
 * any time: never rely on state carried from one call to the next.
 */
#ifndef RVIRT_POLICY_H
#define RVIRT_POLICY_H

#define RVIRT_POLICY_ABI_MAJOR 1
#define RVIRT_POLICY_ABI_MINOR 0

/* rvirt_check answers */
#define RVIRT_ALLOW 0
#define RVIRT_DENY 1
/* rvirt_hook answers */
#define RVIRT_CONTINUE 0
#define RVIRT_VETO 1
#define RVIRT_AMEND 2

#define RVIRT_IMPORT(name) __attribute__((import_module("rvirt"), import_name(#name)))
#define RVIRT_EXPORT(name) __attribute__((export_name(#name)))

/* ---- the host imports (module "rvirt") ---- */

/* Copies the value of `key` (as a string; integers are formatted in decimal) into
 * buf[0..buf_cap), without a terminating NUL. Returns the value's full length (which may be
 * larger than buf_cap: nothing past buf_cap is written), or -1 if the request has no such key. */
RVIRT_IMPORT(get_str)
int rvirt_get_str(const char *key, int key_len, char *buf, int buf_cap);

/* The value of `key` as an integer; -1 if absent or not an integer. */
RVIRT_IMPORT(get_i64)
long long rvirt_get_i64(const char *key, int key_len);

/* The reason shown to the client with a deny or a veto (at most 1024 bytes are kept). */
RVIRT_IMPORT(set_reason)
void rvirt_set_reason(const char *msg, int len);

/* Hooks only: the amended XML, answered with RVIRT_AMEND at an amendable point. */
RVIRT_IMPORT(set_xml)
void rvirt_set_xml(const char *xml, int len);

/* A debug line in the daemon's log, under the module's name. */
RVIRT_IMPORT(log)
void rvirt_log(const char *msg, int len);

/* ---- entry points ---- */

#define RVIRT_POLICY_ABI()                                                                   \
    RVIRT_EXPORT(rvirt_policy_abi_version) int rvirt_policy_abi_version(void)                \
    {                                                                                        \
        return (RVIRT_POLICY_ABI_MAJOR << 16) | RVIRT_POLICY_ABI_MINOR;                      \
    }

#define RVIRT_CHECK() RVIRT_EXPORT(rvirt_check) int rvirt_check(void)
#define RVIRT_HOOK() RVIRT_EXPORT(rvirt_hook) int rvirt_hook(void)

/* ---- helpers (no libc) ---- */

static inline int rvirt_strlen(const char *s)
{
    int n = 0;
    while (s[n])
        n++;
    return n;
}

static inline int rvirt_memeq(const char *a, const char *b, int n)
{
    for (int i = 0; i < n; i++)
        if (a[i] != b[i])
            return 0;
    return 1;
}

/* The integer value of `key`, -1 if absent. */
static inline long long rvirt_i64(const char *key)
{
    return rvirt_get_i64(key, rvirt_strlen(key));
}

/* Copies `key`'s value into buf as a NUL-terminated string. Returns its length, -1 if the key is
 * absent, -2 if it did not fit (buf then holds a truncated, terminated prefix). */
static inline int rvirt_str(const char *key, char *buf, int cap)
{
    if (cap <= 0)
        return -2;
    int n = rvirt_get_str(key, rvirt_strlen(key), buf, cap - 1);
    if (n < 0) {
        buf[0] = 0;
        return -1;
    }
    if (n > cap - 1) {
        buf[cap - 1] = 0;
        return -2;
    }
    buf[n] = 0;
    return n;
}

/* 1 if the value of `key` is exactly `want`. */
static inline int rvirt_is(const char *key, const char *want)
{
    char buf[256];
    int wl = rvirt_strlen(want);
    if (wl >= (int)sizeof buf)
        return 0;
    int n = rvirt_get_str(key, rvirt_strlen(key), buf, (int)sizeof buf);
    return n == wl && rvirt_memeq(buf, want, n);
}

/* Index of the first `needle` in hay[0..hay_len), -1 if none. */
static inline int rvirt_find(const char *hay, int hay_len, const char *needle)
{
    int nl = rvirt_strlen(needle);
    for (int i = 0; i + nl <= hay_len; i++)
        if (rvirt_memeq(hay + i, needle, nl))
            return i;
    return -1;
}

static inline void rvirt_reason(const char *msg)
{
    rvirt_set_reason(msg, rvirt_strlen(msg));
}

static inline void rvirt_debug(const char *msg)
{
    rvirt_log(msg, rvirt_strlen(msg));
}

#endif /* RVIRT_POLICY_H */
