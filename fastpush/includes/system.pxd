# Linux system calls the core issues directly (no asyncio transport in between).

from libc.stdint cimport uint32_t, uint64_t


cdef extern from "<sys/epoll.h>" nogil:
    enum:
        EPOLLIN
        EPOLLOUT
        EPOLLERR
        EPOLLHUP
        EPOLLRDHUP
        EPOLL_CTL_ADD
        EPOLL_CTL_MOD
        EPOLL_CTL_DEL
        EPOLL_CLOEXEC

    ctypedef union epoll_data_t:
        void *ptr
        int fd
        uint32_t u32
        uint64_t u64

    # The header declares this struct packed on x86-64; taking the
    # definition from the header keeps that layout.
    cdef struct epoll_event:
        uint32_t events
        epoll_data_t data

    int epoll_create1(int flags)
    int epoll_ctl(int epfd, int op, int fd, epoll_event *event)
    int epoll_wait(int epfd, epoll_event *events, int maxevents, int timeout)


cdef extern from "<sys/socket.h>" nogil:
    enum:
        MSG_NOSIGNAL
        MSG_DONTWAIT
        SHUT_WR
        SHUT_RDWR
        SOCK_NONBLOCK
        SOCK_CLOEXEC
    ctypedef unsigned int socklen_t
    struct sockaddr:
        pass
    ssize_t send(int fd, const void *buf, size_t n, int flags)
    ssize_t recv(int fd, void *buf, size_t n, int flags)
    int shutdown(int fd, int how)
    int accept4(int fd, sockaddr *addr, socklen_t *addrlen, int flags)
    int setsockopt(int fd, int level, int name, const void *value, socklen_t n)


cdef extern from "<netinet/in.h>" nogil:
    enum:
        IPPROTO_TCP


cdef extern from "<netinet/tcp.h>" nogil:
    enum:
        TCP_NODELAY


cdef extern from "<time.h>" nogil:
    ctypedef long time_t
    time_t time(time_t *t)

    enum:
        CLOCK_REALTIME

    cdef struct timespec:
        time_t tv_sec
        long tv_nsec

    # CLOCK_REALTIME is what Python's time.time() reads.
    int clock_gettime(int clock, timespec *ts)


cdef extern from "<string.h>" nogil:
    # A GNU extension; Python.h defines _GNU_SOURCE before string.h.
    void *memmem(const void *hay, size_t n, const void *needle, size_t m)


cdef extern from "<fcntl.h>" nogil:
    enum:
        F_GETFL
        F_SETFL
        O_NONBLOCK
    int fcntl(int fd, int cmd, ...)


cdef extern from "<unistd.h>" nogil:
    int close(int fd)


cdef extern from "<errno.h>" nogil:
    int errno
    enum:
        EAGAIN
        EWOULDBLOCK
        EINTR
        ECONNABORTED
        EMFILE
        ENFILE
        ENOBUFS
        ENOMEM


cdef extern from "compat.h" nogil:
    bint FP_WOULD_BLOCK(int err)
    void FP_PREFETCH(const void *p)
