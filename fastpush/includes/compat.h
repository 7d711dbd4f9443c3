#include <errno.h>

/* EAGAIN and EWOULDBLOCK are one value on Linux but not everywhere; a C
   macro keeps Cython from turning the test into a switch with a duplicate
   case. EINTR is retried by the next readiness event. */
#define FP_WOULD_BLOCK(e) ((e) == EAGAIN || (e) == EWOULDBLOCK || (e) == EINTR)

/* Ask for the cache line at p ahead of use; a no-op where the compiler has
   no such builtin. */
#if defined(__GNUC__) || defined(__clang__)
#define FP_PREFETCH(p) __builtin_prefetch((const void *)(p))
#else
#define FP_PREFETCH(p) ((void)(p))
#endif
