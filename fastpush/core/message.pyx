@cython.no_gc
@cython.final
@cython.freelist(64)
cdef class Message:
    """One published message, stamped once and shared by every form.

    A server may hold hundreds of thousands of stored messages; as a
    no_gc type they cost the cyclic garbage collector nothing. That is
    safe because a Message can never be part of a cycle: it refers only
    to bytes, str, None and a dict of int -> bytes.
    """

    def __cinit__(self, long long id, long long time, long tag, bytes text not None,
                  str channel not None, object event_id=None, object event_type=None,
                  double expires=0.0):
        self.id = id
        self.time = time
        self.tag = tag
        self.text = text
        self.channel = channel
        self.event_id = event_id
        self.event_type = event_type
        self.expires = expires
        # form index -> rendered bytes, filled on first use, so a stored
        # message sent as backlog is not formatted twice. Int keys and bytes
        # values keep the dict untracked by the collector too.
        self.rendered = {}

    def __repr__(self):
        return f"<Message {self.channel}#{self.id} t={self.time}/{self.tag}>"
