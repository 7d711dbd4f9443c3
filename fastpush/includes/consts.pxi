# Tunables of the core, bound once at compile time.

cdef enum:
    # epoll events fetched per epoll_wait() call.
    EPOLL_BATCH = 512
    # Shared receive buffer: subscribers rarely send anything but WebSocket
    # control frames, so one buffer serves them all.
    RECV_BUFFER_SIZE = 65536
    # First allocation of a subscriber's pending-output buffer; it doubles
    # from there up to the hub's output limit.
    WBUF_MIN = 512
    # Largest control-frame payload RFC 6455 allows.
    WS_MAX_CONTROL = 125
    # Seconds a closing subscriber gets to take its footer before it is cut.
    CLOSE_GRACE = 10
    # The front door's read of a new connection: a request head longer
    # than this goes to the Python path.
    DOOR_BUFFER_SIZE = 16384
    # Room kept in that buffer for the Date line of the response.
    DOOR_DATE_MAX = 64
    # Connections accepted per readiness callback.
    DOOR_ACCEPT_BATCH = 128
    # Seconds accepting pauses when the process is out of descriptors.
    DOOR_ACCEPT_RETRY = 1
    # Bytes a stored message costs beside its text (Message object, slot),
    # counted against shared_memory_size; MESSAGE_OVERHEAD in Python.
    MSG_OVERHEAD = 160

# Subscriber kinds: what the core does with bytes a subscriber sends us.
cdef enum:
    SUB_STREAM = 0       # chunked streaming / eventsource: reads are discarded
    SUB_WEBSOCKET = 1    # reads are RFC 6455 frames

# Subscriber flags.
cdef enum:
    F_DEAD = 1           # fd closed; struct freed at the next reap
    F_CLOSING = 2        # footer queued; close once the output drains
    F_UNLINKED = 4       # already removed from its channels
    F_WANT_OUT = 8       # registered for EPOLLOUT
    F_WS_PUBLISH = 16    # websocket_allow_publish: data frames are published
    F_LISTED = 32        # in Hub.dead, waiting for the reap
