/* hcxfault: an LD_PRELOAD library that makes hcexportfs fail to build one
 * chosen JSON text, as if memory ran out, for the integration tests of the
 * paths that handle it (tests/integration/test_fs_faultinject.py).
 *
 * json_dumps() (libjansson) answers NULL, which is what it does when an
 * allocation fails, for a JSON object that has the member named by
 * HCX_FAULT_JSON_KEY, while the file named by HCX_FAULT_TRIGGER exists (or
 * always, when HCX_FAULT_TRIGGER is unset).  Everything else goes to the
 * real json_dumps.  Without HCX_FAULT_JSON_KEY the library does nothing.
 *
 * Only json_dumps is replaced, never the allocator, so the library also
 * works under the ASan build (with ASAN_OPTIONS=verify_asan_link_order=0)
 * and under valgrind.  Each fault injected is counted in the file named by
 * HCX_FAULT_COUNT (one byte appended per fault), if set. */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdlib.h>
#include <unistd.h>

typedef char *(*dumps_fn)(const json_t *, size_t);

static int fault_now(const json_t *json)
{
    const char *key = getenv("HCX_FAULT_JSON_KEY");
    if (!key || !*key || !json_is_object(json) || !json_object_get(json, key))
        return 0;
    const char *trigger = getenv("HCX_FAULT_TRIGGER");
    return !trigger || !*trigger || access(trigger, F_OK) == 0;
}

char *json_dumps(const json_t *json, size_t flags)
{
    if (fault_now(json)) {
        const char *count = getenv("HCX_FAULT_COUNT");
        if (count && *count) {
            int fd = open(count, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
            if (fd >= 0) {
                if (write(fd, "x", 1) != 1) {
                    /* the count is advisory */
                }
                close(fd);
            }
        }
        errno = ENOMEM;
        return NULL;
    }
    dumps_fn real = (dumps_fn)dlsym(RTLD_NEXT, "json_dumps");
    if (!real) {
        errno = ENOSYS;
        return NULL;
    }
    return real(json, flags);
}
