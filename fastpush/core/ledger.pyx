# The registry's books: the stamp clock, the counts and the store limit.
#
# Every publish on a worker that stamps its own messages goes through
# Ledger.stamp: push-stream's tag, the channel's next id, the store and its
# limits, the channel's inactivity deadline and its place in the registry's
# wheel. The registry (fastpush.registry) keeps channels, events and
# collection in Python and reads these counts; with them in C the front
# door's publisher stamps and stores a message without entering Python.


@cython.final
cdef class Ledger:
    """Counts and limits of one worker's messages (see the top of this file).

    wheel is the registry's DueWheel: a channel is added to it only when
    it is not due already at or before the second asked for, so a busy
    channel costs one entry, not one per publish.
    """

    def __init__(self, object wheel not None):
        self.wheel = wheel
        self.published_messages = 0
        self.stored_messages = 0
        self.stored_bytes = 0
        self.last_time = 0
        self.last_tag = 0
        self.configure(60.0, 60.0, 1 << 25, None)

    def configure(self, double inactivity, double message_ttl,
                  long long memory_limit, object max_stored):
        """channel_inactivity_time, message_ttl, shared_memory_size and
        max_messages_stored_per_channel (None: no limit)."""
        self.inactivity = inactivity
        self.message_ttl = message_ttl
        self.memory_limit = memory_limit
        self.max_stored = -1 if max_stored is None else max_stored

    cdef Message stamp(self, Channel ch, bytes text, object event_id,
                       object event_type, bint store, double now):
        """Stamp, count and store a new message on ch; None if the store
        is full (shared_memory_size)."""
        cdef long long size = PyBytes_GET_SIZE(text) + MSG_OVERHEAD
        cdef long long t
        cdef Message msg
        if store and self.stored_bytes + size > self.memory_limit:
            return None
        # push-stream's tag: 1 for the first message in a second, then +1
        # for each further message in the same second, across all channels.
        t = <long long>now
        if t == self.last_time:
            self.last_tag += 1
        else:
            self.last_time = t
            self.last_tag = 1
        msg = ch.new_message(text, t, <long>self.last_tag, event_id, event_type,
                             t + self.message_ttl, store)
        self._account(ch, msg, store, size, now)
        return msg

    def publish(self, Channel ch not None, bytes text not None, object event_id,
                object event_type, bint store, double now):
        """stamp() for Python: the message, or None when the store is full."""
        return self.stamp(ch, text, event_id, event_type, store, now)

    def record(self, Channel ch not None, Message msg not None, bint store,
               double now):
        """Count msg, stamped elsewhere (the sequencer), as published on ch."""
        self._record(ch, msg, store, now)

    cdef int _record(self, Channel ch, Message msg, bint store, double now) except -1:
        ch.add_message(msg, store)
        return self._account(ch, msg, store,
                             PyBytes_GET_SIZE(msg.text) + MSG_OVERHEAD, now)

    cdef int _account(self, Channel ch, Message msg, bint store,
                      long long size, double now) except -1:
        ch.expires = now + self.inactivity
        self.schedule(ch, ch.expires)
        if not ch.for_events:
            self.published_messages += 1
        if store:
            self.schedule(ch, msg.expires)
            self.stored_bytes += size
            if not ch.for_events:
                self.stored_messages += 1
            if self.max_stored >= 0:
                while ch.store_len > self.max_stored:
                    self.drop_oldest(ch)
        return 0

    cpdef schedule(self, Channel ch, double when):
        """Have the registry look at ch again once `when` has passed.

        A channel already due at or before that second is left alone: the
        visit then reschedules it for whatever is still ahead.
        """
        cdef long long second = <long long>when + 1
        cdef long long done = self.wheel.done
        if done < ch.due <= second:
            return
        ch.due = second
        self.wheel.add(ch.id, second)

    cpdef drop_oldest(self, Channel ch):
        """Remove ch's oldest stored message from the store and the counts."""
        cdef Message msg = ch.store_popleft()
        self.stored_bytes -= PyBytes_GET_SIZE(msg.text) + MSG_OVERHEAD
        if not ch.for_events:
            self.stored_messages -= 1
