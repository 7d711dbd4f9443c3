#include <errno.h>

/* EAGAIN and EWOULDBLOCK are one value on Linux but not everywhere; a C
   macro keeps Cython from turning the test into a switch with a duplicate
   case. EINTR is retried by the next readiness event. */
#define FP_WOULD_BLOCK(e) ((e) == EAGAIN || (e) == EWOULDBLOCK || (e) == EINTR)
