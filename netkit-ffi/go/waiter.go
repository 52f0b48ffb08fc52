package netkit

import (
	"syscall"
)

// waiter blocks a goroutine until a descriptor is readable or the waiter is woken, with
// epoll on the descriptor and on a pipe that wakeOn writes to.
type waiter struct {
	epfd int
	pipe [2]int
}

// newWaiter makes a waiter for fd (which stays the caller's).
func newWaiter(fd int) (*waiter, error) {
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, sysErr("epoll_create1", err)
	}
	w := &waiter{epfd: epfd, pipe: [2]int{-1, -1}}
	if err := syscall.Pipe2(w.pipe[:], syscall.O_CLOEXEC|syscall.O_NONBLOCK); err != nil {
		w.close()
		return nil, sysErr("pipe2", err)
	}
	for _, f := range []int{fd, w.pipe[0]} {
		ev := syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: int32(f)}
		if err := syscall.EpollCtl(epfd, syscall.EPOLL_CTL_ADD, f, &ev); err != nil {
			w.close()
			return nil, sysErr("epoll_ctl", err)
		}
	}
	return w, nil
}

// wait blocks until the descriptor is readable or the waiter was woken.
func (w *waiter) wait() error {
	var events [2]syscall.EpollEvent
	for {
		_, err := syscall.EpollWait(w.epfd, events[:], -1)
		if err != syscall.EINTR {
			return sysErr("epoll_wait", err)
		}
	}
}

// wakeOn wakes the waiter (for good) once done is closed. The returned stop must be called
// before close: it ends the goroutine watching done.
func (w *waiter) wakeOn(done <-chan struct{}) (stop func()) {
	stopping, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		select {
		case <-done:
			_, _ = syscall.Write(w.pipe[1], []byte{1})
		case <-stopping:
		}
	}()
	return func() {
		close(stopping)
		<-stopped
	}
}

// close closes the waiter's own descriptors.
func (w *waiter) close() {
	for _, fd := range []int{w.epfd, w.pipe[0], w.pipe[1]} {
		if fd >= 0 {
			_ = syscall.Close(fd)
		}
	}
}

// sysErr is a failed system call of the package's own as an *Error (nil for nil).
func sysErr(call string, err error) error {
	if err == nil {
		return nil
	}
	errno, _ := err.(syscall.Errno)
	return &Error{Kind: KindIO, Errno: errno, Message: "netkit: events: " + call + ": " + err.Error()}
}
