# The reading end of the bus between workers and the sequencer
# (fastpush.bus): a byte stream of frames, each a 4-byte big-endian length
# and a marshal'ed tuple.
#
# In a worker nearly every frame is a stamped message (MSG) for a channel
# it already has, one per publish: that one is applied here, in C (stored,
# counted, queued for the fan-out), since going through Python costs more
# than the worker's share of the fan-out at a few hundred subscribers per
# channel. Every other frame, and a message this path does not take (a new
# channel, long-polling waiters), goes to on_frame(frame) in Python, in
# stream order.

cdef extern from "marshal.h":
    object PyMarshal_ReadObjectFromString(const char *data, Py_ssize_t size)

# The protocol's numbers live here; fastpush.bus takes MSG and MAX_FRAME
# from these (as BUS_MSG_KIND and BUS_FRAME_LIMIT).
cdef enum:
    BUS_MSG = 11                   # kind of a stamped message
    BUS_MSG_FIELDS = 10            # (MSG, channel, id, time, tag, text,
                                   #  event_id, event_type, store, expires)
    BUS_MAX_FRAME = 256 << 20      # larger is a bug or an attack, not a frame


class BusFrameError(ValueError):
    """The stream is not frames: one too long, or one marshal cannot read."""


@cython.final
cdef class BusReader:
    """Splits the bus's byte stream into frames and hands each on.

    BusReader(on_frame) calls on_frame(frame) for every frame. Given the
    worker's registry channels, ledger, hub, pending queue and on_queued(),
    it applies stamped messages for existing channels itself, as
    App.apply_message() would, and calls on_queued() when a channel gets
    its first queued message (the server then schedules its flush).
    """

    def __cinit__(self, object on_frame, dict channels=None, Ledger ledger=None,
                  Hub hub=None, dict pending=None, object on_queued=None):
        self.buf = bytearray()
        self.on_frame = on_frame
        self.channels = channels
        self.ledger = ledger
        self.hub = hub
        self.pending = pending
        self.on_queued = on_queued
        self.fast = (channels is not None and ledger is not None and hub is not None
                     and pending is not None and on_queued is not None)
        self.applied = 0

    def feed(self, bytes data not None):
        """Handle every whole frame in the stream so far; keep the rest.
        A frame longer than fastpush.bus.MAX_FRAME, or one marshal cannot
        read, raises BusFrameError; what on_frame raises goes through."""
        cdef bint buffered = len(self.buf) > 0
        cdef const unsigned char *p
        cdef Py_ssize_t n, pos = 0
        cdef uint32_t size
        cdef object frame
        cdef double now = 0.0
        cdef system.timespec ts
        if buffered:
            self.buf += data
            p = <const unsigned char *>PyByteArray_AS_STRING(self.buf)
            n = PyByteArray_GET_SIZE(self.buf)
        else:
            p = <const unsigned char *>PyBytes_AS_STRING(data)
            n = PyBytes_GET_SIZE(data)
        try:
            while n - pos >= 4:
                size = ((<uint32_t>p[pos] << 24) | (<uint32_t>p[pos + 1] << 16)
                        | (<uint32_t>p[pos + 2] << 8) | <uint32_t>p[pos + 3])
                if size > BUS_MAX_FRAME:
                    raise BusFrameError(f"bus frame of {size} bytes")
                if n - pos - 4 < size:
                    break
                try:
                    frame = PyMarshal_ReadObjectFromString(<const char *>p + pos + 4, size)
                except (ValueError, EOFError, TypeError) as err:
                    raise BusFrameError(f"bad bus frame: {err}") from None
                pos += 4 + size
                if self.fast and type(frame) is tuple and len(frame) == BUS_MSG_FIELDS \
                        and frame[0] == BUS_MSG:
                    if now == 0.0:
                        system.clock_gettime(system.CLOCK_REALTIME, &ts)
                        now = <double>ts.tv_sec + <double>ts.tv_nsec * 1e-9
                    if self._apply(<tuple>frame, now):
                        continue
                self.on_frame(frame)
        finally:
            # What was handled is gone even when a handler raised.
            if buffered:
                del self.buf[:pos]
            elif pos < n:
                self.buf += data[pos:]

    cdef bint _apply(self, tuple frame, double now) except -1:
        """Apply a stamped message; False to hand it to Python instead."""
        cdef PyObject *p = PyDict_GetItem(self.channels, frame[1])
        cdef Channel ch
        cdef Message msg
        cdef bint store
        if p == NULL:
            return False  # a channel new to this worker: the registry makes it
        ch = <Channel>p
        if ch.waiters:
            return False  # long-polling waiters are woken by the server's flush
        msg = Message(frame[2], frame[3], frame[4], frame[5], frame[1],
                      frame[6], frame[7], frame[9])
        store = frame[8]
        ch.last_message_id = msg.id
        self.ledger._record(ch, msg, store, now)
        if ch.nsubs and self.hub.queue(self.pending, ch, msg):
            self.on_queued()
        self.applied += 1
        return True
