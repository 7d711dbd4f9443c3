/* FASTPUSH_DEBUG is 1 in the debug build (FASTPUSH_DEBUG=1 python setup.py ...)
   and 0 otherwise, so `if FASTPUSH_DEBUG:` blocks compile away in release. */
#ifndef FASTPUSH_DEBUG
#define FASTPUSH_DEBUG 0
#endif
