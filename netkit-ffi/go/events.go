package netkit

// #include "netkit.h"
import "C"

import (
	"fmt"
	"runtime"
	"syscall"
)

// EventGroup selects what a subscription watches (libnetkit's NETKIT_EVENTS_* bits).
type EventGroup uint32

// The groups of changes a subscription can watch.
const (
	// GroupLink: links appearing, changing, disappearing.
	GroupLink EventGroup = C.NETKIT_EVENTS_LINK
	// GroupAddr: IPv4 and IPv6 addresses.
	GroupAddr EventGroup = C.NETKIT_EVENTS_ADDR
	// GroupRoute: IPv4 and IPv6 routes.
	GroupRoute EventGroup = C.NETKIT_EVENTS_ROUTE
	// GroupNeigh: neighbour (ARP/NDP) and bridge FDB entries.
	GroupNeigh EventGroup = C.NETKIT_EVENTS_NEIGH
)

// EventType is what happened (libnetkit's NETKIT_EVENT_* kinds, and EventError).
type EventType int

// The event types. Each names the field of Event that is set.
const (
	// EventNewLink: a link was created or changed (Link).
	EventNewLink EventType = C.NETKIT_EVENT_NEW_LINK
	// EventDelLink: a link was deleted (Link).
	EventDelLink EventType = C.NETKIT_EVENT_DEL_LINK
	// EventNewAddr: an address was added or changed (Addr).
	EventNewAddr EventType = C.NETKIT_EVENT_NEW_ADDR
	// EventDelAddr: an address was removed (Addr).
	EventDelAddr EventType = C.NETKIT_EVENT_DEL_ADDR
	// EventNewRoute: a route was added or changed (Route).
	EventNewRoute EventType = C.NETKIT_EVENT_NEW_ROUTE
	// EventDelRoute: a route was removed (Route).
	EventDelRoute EventType = C.NETKIT_EVENT_DEL_ROUTE
	// EventNewNeigh: a neighbour entry was added or changed (Neigh).
	EventNewNeigh EventType = C.NETKIT_EVENT_NEW_NEIGH
	// EventDelNeigh: a neighbour entry was removed (Neigh).
	EventDelNeigh EventType = C.NETKIT_EVENT_DEL_NEIGH
	// EventNewFdb: a bridge FDB entry was added or changed (Neigh, Family FAMILY_BRIDGE).
	EventNewFdb EventType = C.NETKIT_EVENT_NEW_FDB
	// EventDelFdb: a bridge FDB entry was removed (Neigh, Family FAMILY_BRIDGE).
	EventDelFdb EventType = C.NETKIT_EVENT_DEL_FDB
	// EventOverrun: the kernel dropped notifications (the subscription's socket buffer was
	// full, ENOBUFS): events were lost, so re-read the state you track (list again) before
	// trusting later events. Changes keep being dropped until the queued events are read.
	// Err is an *Error with Errno ENOBUFS; the subscription goes on.
	EventOverrun EventType = C.NETKIT_EVENT_OVERRUN
	// EventError: reading the subscription failed (Err); the last event EventSubscribe
	// sends before it closes the channel. Next returns the error itself instead.
	EventError EventType = -1
)

var eventNames = map[EventType]string{
	EventNewLink: "NewLink", EventDelLink: "DelLink", EventNewAddr: "NewAddr", EventDelAddr: "DelAddr",
	EventNewRoute: "NewRoute", EventDelRoute: "DelRoute", EventNewNeigh: "NewNeigh", EventDelNeigh: "DelNeigh",
	EventNewFdb: "NewFdb", EventDelFdb: "DelFdb", EventOverrun: "Overrun", EventError: "Error",
}

// String is the type's name ("NewLink", "Overrun", …).
func (t EventType) String() string {
	if s, ok := eventNames[t]; ok {
		return s
	}
	return fmt.Sprintf("EventType(%d)", int(t))
}

// Event is one change in the subscription's namespace: exactly the field its Type names is set.
type Event struct {
	// Type is what happened.
	Type EventType
	// Link is the link of EventNewLink and EventDelLink.
	Link Link
	// Addr is the address of EventNewAddr and EventDelAddr.
	Addr *Addr
	// Route is the route of EventNewRoute and EventDelRoute.
	Route *Route
	// Neigh is the entry of EventNewNeigh, EventDelNeigh, EventNewFdb and EventDelFdb.
	Neigh *Neigh
	// Err is the error of EventOverrun (errors.Is(err, syscall.ENOBUFS)) and EventError.
	Err error
}

// Subscription is a watch on changes in one namespace (`ip monitor`), for an event loop of
// the caller's: poll Fd() for readability, then call Next until it returns nil. (For a
// channel of events, use Handle.EventSubscribe.) Safe for use by many goroutines; Close waits
// for calls in progress.
type Subscription struct {
	obj object[C.netkit_events]
	fd  int
}

// Subscribe watches the changes of groups (every group when none is given) in the handle's
// namespace. Changes after it returns are delivered in kernel order. The subscription has its
// own socket: it does not depend on h afterwards. Close it when done.
func (h *Handle) Subscribe(groups ...EventGroup) (*Subscription, error) {
	var mask C.uint32_t
	for _, g := range groups {
		mask |= C.uint32_t(g)
	}
	var p *C.netkit_events
	err := h.use(func(hp *C.netkit_handle) error {
		var cerr *C.netkit_error
		return check(C.netkit_events_subscribe(hp, mask, &p, &cerr), cerr)
	})
	if err != nil {
		return nil, err
	}
	var fd C.int
	var cerr *C.netkit_error
	if err := check(C.netkit_events_fd(p, &fd, &cerr), cerr); err != nil {
		C.netkit_events_close(p)
		return nil, err
	}
	s := &Subscription{fd: int(fd)}
	s.obj.p = p
	// A safety net only: an unreachable Subscription that was never closed is closed by the GC.
	runtime.SetFinalizer(s, (*Subscription).Close)
	return s, nil
}

// Fd is the descriptor to poll for readability (poll, epoll, …): readable when an event is
// waiting. It belongs to the subscription: do not read or close it; it is valid until Close
// (remove it from your poll set first).
func (s *Subscription) Fd() int {
	return s.fd
}

// Next returns the next event without blocking, or nil (and no error) when none is waiting.
// After Fd() reports readable, call it until it returns nil. An overrun is an event
// (EventOverrun), not an error.
func (s *Subscription) Next() (*Event, error) {
	var ev *Event
	err := s.obj.use("subscription", func(p *C.netkit_events) error {
		var c *C.netkit_event
		var cerr *C.netkit_error
		if err := check(C.netkit_events_next(p, &c, &cerr), cerr); err != nil {
			return err
		}
		if c != nil {
			ev = goEvent(c)
			C.netkit_event_free(c)
		}
		return nil
	})
	return ev, err
}

// Close ends the subscription and closes its descriptor. A second Close does nothing.
func (s *Subscription) Close() error {
	if s != nil && s.obj.close(func(p *C.netkit_events) { C.netkit_events_close(p) }) {
		runtime.SetFinalizer(s, nil)
	}
	return nil
}

// goEvent converts a C event (which stays the caller's to free).
func goEvent(c *C.netkit_event) *Event {
	ev := &Event{Type: EventType(c.kind)}
	switch {
	case c.link != nil:
		ev.Link = goLink(c.link)
	case c.addr != nil:
		a := goAddr(c.addr)
		ev.Addr = &a
	case c.route != nil:
		r := goRoute(c.route)
		ev.Route = &r
	case c.neigh != nil:
		n := goNeigh(c.neigh)
		ev.Neigh = &n
	case c.fdb != nil:
		n := goFdb(c.fdb)
		ev.Neigh = &n
	}
	if ev.Type == EventOverrun {
		ev.Err = &Error{Kind: KindIO, Errno: syscall.ENOBUFS,
			Message: "netkit: events: the kernel dropped notifications (socket buffer full): re-read the state"}
	}
	return ev
}

// EventSubscribe watches the changes of groups (every group when none is given) in the
// handle's namespace and sends them on ch until done is closed (a nil done: for as long as
// the process runs), as vishvananda/netlink's LinkSubscribe does: a goroutine waits on the
// subscription's descriptor (epoll, so it costs nothing while idle), sends each event, and
// closes ch when it stops. An overrun arrives as an EventOverrun event; a failure to read as
// a last EventError event. The goroutine blocks while ch is full: the kernel then queues, and
// drops (an overrun) when its buffer fills.
func (h *Handle) EventSubscribe(ch chan<- Event, done <-chan struct{}, groups ...EventGroup) error {
	if ch == nil {
		return invalidf("EventSubscribe: nil channel")
	}
	sub, err := h.Subscribe(groups...)
	if err != nil {
		return err
	}
	w, err := newWaiter(sub.Fd())
	if err != nil {
		sub.Close()
		return err
	}
	go func() {
		defer close(ch)
		defer sub.Close()
		defer w.close()
		stop := w.wakeOn(done)
		defer stop()
		for {
			for {
				ev, err := sub.Next()
				if err != nil {
					ev = &Event{Type: EventError, Err: err}
				}
				if ev == nil {
					break
				}
				select {
				case ch <- *ev:
				case <-done:
					return
				}
				if err != nil {
					return
				}
			}
			if err := w.wait(); err != nil {
				select {
				case ch <- Event{Type: EventError, Err: err}:
				case <-done:
				}
				return
			}
			select {
			case <-done:
				return
			default:
			}
		}
	}()
	return nil
}
