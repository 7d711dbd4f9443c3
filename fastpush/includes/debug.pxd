cdef extern from "debug.h":
    cdef int FASTPUSH_DEBUG
