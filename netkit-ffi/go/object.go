package netkit

import "sync"

// object holds the C pointer of one of libnetkit's objects (a namespace, a handle, a
// subscription, an IPAM pool, a firewall) for the Go type that wraps it. Calls take the read
// lock, so many goroutines use the object at once; close takes the write lock, so it waits for
// the calls in progress, and a call after it gets ErrInvalid. The wrapping type also sets a
// finalizer that closes an unreachable object (a safety net only).
type object[T any] struct {
	mu sync.RWMutex
	p  *T
}

// use runs f with the C pointer under the read lock; ErrInvalid when o is nil or closed
// (what names the object in the message: "handle", "IPAM pool", …).
func (o *object[T]) use(what string, f func(p *T) error) error {
	if o == nil {
		return invalidf("nil %s", what)
	}
	o.mu.RLock()
	defer o.mu.RUnlock()
	if o.p == nil {
		return errClosed(what)
	}
	return f(o.p)
}

// close frees the C object with free once calls in progress are done; false when o was
// closed already (free is not called again).
func (o *object[T]) close(free func(p *T)) bool {
	if o == nil {
		return false
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.p == nil {
		return false
	}
	free(o.p)
	o.p = nil
	return true
}
