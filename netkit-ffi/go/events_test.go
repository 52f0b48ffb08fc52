package netkit_test

import (
	"errors"
	"net"
	"syscall"
	"testing"
	"time"

	"netkit.dev/netkit"
)

// eventWait bounds every wait for an event.
const eventWait = 10 * time.Second

// subscribeChan starts EventSubscribe for groups in a's namespace; at the end of the test done
// is closed and the channel must close.
func subscribeChan(t *testing.T, a *testNs, size int, groups ...netkit.EventGroup) <-chan netkit.Event {
	t.Helper()
	ch := make(chan netkit.Event, size)
	done := make(chan struct{})
	must(t, "EventSubscribe", a.h.EventSubscribe(ch, done, groups...))
	t.Cleanup(func() {
		close(done)
		deadline := time.After(eventWait)
		for {
			select {
			case _, ok := <-ch:
				if !ok {
					return
				}
			case <-deadline:
				t.Errorf("the event channel was not closed after done")
				return
			}
		}
	})
	return ch
}

// expect reads ch until an event want accepts arrives; the test fails after eventWait.
func expect(t *testing.T, ch <-chan netkit.Event, what string, want func(netkit.Event) bool) netkit.Event {
	t.Helper()
	deadline := time.After(eventWait)
	seen := map[string]int{}
	for {
		select {
		case ev, ok := <-ch:
			if !ok {
				t.Fatalf("the channel closed before %s; saw %v", what, seen)
			}
			if ev.Type == netkit.EventError {
				t.Fatalf("EventError before %s: %v", what, ev.Err)
			}
			if want(ev) {
				return ev
			}
			seen[ev.Type.String()]++
		case <-deadline:
			t.Fatalf("no %s within %v; saw %v", what, eventWait, seen)
		}
	}
}

func isLink(typ netkit.EventType, name string, upWanted bool) func(netkit.Event) bool {
	return func(ev netkit.Event) bool {
		return ev.Type == typ && ev.Link != nil && ev.Link.Attrs().Name == name &&
			(!upWanted || ev.Link.Attrs().Flags&net.FlagUp != 0)
	}
}

// TestEventChannel brings a link up in the namespace and waits for the event on the channel
// of EventSubscribe, then an address, its prefix route and the link's deletion.
func TestEventChannel(t *testing.T) {
	a := newTestNs(t, "ev")
	ch := subscribeChan(t, a, 16, netkit.GroupLink, netkit.GroupAddr, netkit.GroupRoute)
	br := &netkit.Bridge{LinkAttrs: netkit.LinkAttrs{Name: "br0"}}
	must(t, "LinkAdd", a.h.LinkAdd(br))
	ev := expect(t, ch, "NewLink br0", isLink(netkit.EventNewLink, "br0", false))
	if _, ok := ev.Link.(*netkit.Bridge); !ok || ev.Link.Attrs().Index != br.Index {
		t.Fatalf("NewLink: %T %+v, want the bridge of index %d", ev.Link, ev.Link.Attrs(), br.Index)
	}
	must(t, "LinkSetUp", a.h.LinkSetUp(br))
	expect(t, ch, "NewLink br0 up", isLink(netkit.EventNewLink, "br0", true))
	must(t, "AddrAdd", a.h.AddrAdd(br, addr(t, "10.3.0.1/24")))
	ev = expect(t, ch, "NewAddr 10.3.0.1/24", func(ev netkit.Event) bool {
		return ev.Type == netkit.EventNewAddr && ev.Addr.IPNet.String() == "10.3.0.1/24"
	})
	if ev.Addr.LinkIndex != br.Index {
		t.Fatalf("NewAddr on link %d, want %d", ev.Addr.LinkIndex, br.Index)
	}
	expect(t, ch, "NewRoute 10.3.0.0/24", func(ev netkit.Event) bool {
		return ev.Type == netkit.EventNewRoute && ev.Route.Dst != nil && ev.Route.Dst.String() == "10.3.0.0/24"
	})
	must(t, "LinkDel", a.h.LinkDel(br))
	expect(t, ch, "DelLink br0", isLink(netkit.EventDelLink, "br0", false))
}

// pollNext waits (epoll on Fd, bounded) and reads with Next until an event want accepts
// arrives, as a C event loop would; it returns the events read, that one last.
func pollNext(t *testing.T, sub *netkit.Subscription, what string, want func(netkit.Event) bool) []netkit.Event {
	t.Helper()
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	must(t, "epoll_create1", err)
	defer syscall.Close(epfd)
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: int32(sub.Fd())}
	must(t, "epoll_ctl", syscall.EpollCtl(epfd, syscall.EPOLL_CTL_ADD, sub.Fd(), &ev))
	var seen []netkit.Event
	deadline := time.Now().Add(eventWait)
	for {
		for {
			e, err := sub.Next()
			must(t, "Next", err)
			if e == nil {
				break
			}
			seen = append(seen, *e)
			if want(*e) {
				return seen
			}
		}
		left := time.Until(deadline)
		if left <= 0 {
			t.Fatalf("no %s within %v; saw %d events", what, eventWait, len(seen))
		}
		var out [1]syscall.EpollEvent
		if _, err := syscall.EpollWait(epfd, out[:], int(left/time.Millisecond)+1); err != nil && err != syscall.EINTR {
			t.Fatalf("epoll_wait: %v", err)
		}
	}
}

// TestSubscriptionPoll uses Fd and Next as a C event loop does: nothing is waiting at first
// (Next returns nil at once); a veth pair, a neighbour entry and an FDB entry arrive with
// their objects; an address-only subscription sees no link events; Close twice.
func TestSubscriptionPoll(t *testing.T) {
	a := newTestNs(t, "sp")
	sub, err := a.h.Subscribe()
	must(t, "Subscribe", err)
	defer sub.Close()
	addrs, err := a.h.Subscribe(netkit.GroupAddr)
	must(t, "Subscribe(GroupAddr)", err)
	defer addrs.Close()
	if ev, err := sub.Next(); ev != nil || err != nil {
		t.Fatalf("Next before any change: %v, %v", ev, err)
	}

	v0 := &netkit.Veth{LinkAttrs: netkit.LinkAttrs{Name: "v0", Flags: up}, PeerName: "v1"}
	must(t, "veth", a.h.LinkAdd(v0))
	pollNext(t, sub, "NewLink v0", isLink(netkit.EventNewLink, "v0", false))
	must(t, "NeighAdd", a.h.NeighAdd(&netkit.Neigh{LinkIndex: v0.Index, IP: net.ParseIP("10.4.0.2"), HardwareAddr: mac1}))
	seen := pollNext(t, sub, "NewNeigh 10.4.0.2", func(ev netkit.Event) bool {
		return ev.Type == netkit.EventNewNeigh && ev.Neigh.IP.String() == "10.4.0.2"
	})
	if n := seen[len(seen)-1].Neigh; n.LinkIndex != v0.Index || n.HardwareAddr.String() != mac1.String() {
		t.Fatalf("NewNeigh: %+v", n)
	}
	br := &netkit.Bridge{LinkAttrs: netkit.LinkAttrs{Name: "br0", Flags: up}}
	must(t, "bridge", a.h.LinkAdd(br))
	must(t, "v0 master br0", a.h.LinkSetMaster(v0, br))
	must(t, "NeighAdd FDB", a.h.NeighAdd(&netkit.Neigh{LinkIndex: v0.Index, Family: netkit.FAMILY_BRIDGE,
		Flags: netkit.NTF_MASTER, HardwareAddr: mac2}))
	seen = pollNext(t, sub, "NewFdb", func(ev netkit.Event) bool {
		return ev.Type == netkit.EventNewFdb && ev.Neigh.HardwareAddr.String() == mac2.String()
	})
	if n := seen[len(seen)-1].Neigh; n.Family != netkit.FAMILY_BRIDGE || n.MasterIndex != br.Index {
		t.Fatalf("NewFdb: %+v", n)
	}
	must(t, "AddrAdd", a.h.AddrAdd(br, addr(t, "10.4.0.1/24")))
	seen = pollNext(t, addrs, "NewAddr on the address subscription", func(ev netkit.Event) bool {
		return ev.Type == netkit.EventNewAddr
	})
	for _, ev := range seen {
		if ev.Type != netkit.EventNewAddr && ev.Type != netkit.EventDelAddr {
			t.Fatalf("an address subscription got %v", ev.Type)
		}
	}

	must(t, "Close", sub.Close())
	must(t, "Close again", sub.Close())
	_, err = sub.Next()
	isKind(t, "Next after Close", err, netkit.ErrInvalid)
	isKind(t, "EventSubscribe with a nil channel", a.h.EventSubscribe(nil, nil), netkit.ErrInvalid)
	closed, err := netkit.NewHandleAt(a.ns)
	must(t, "NewHandleAt", err)
	closed.Close()
	_, err = closed.Subscribe()
	isKind(t, "Subscribe on a closed handle", err, netkit.ErrInvalid)
}

// TestEventOverrun fills the sockets of two subscriptions nobody reads (a channel whose
// reader waits, a Subscription nobody calls Next on) with link changes until the kernel drops
// notifications: the overrun arrives on the channel as an EventOverrun with ENOBUFS, and from
// Next as an EventOverrun among the queued events; once those are read, a later change
// arrives again.
func TestEventOverrun(t *testing.T) {
	a := newTestNs(t, "eo")
	ch := subscribeChan(t, a, 0, netkit.GroupLink)
	sub, err := a.h.Subscribe(netkit.GroupLink)
	must(t, "Subscribe", err)
	defer sub.Close()
	br := &netkit.Bridge{LinkAttrs: netkit.LinkAttrs{Name: "br0"}}
	must(t, "LinkAdd", a.h.LinkAdd(br))
	expect(t, ch, "NewLink br0", isLink(netkit.EventNewLink, "br0", false))
	// Nobody reads now: the channel's goroutine blocks on its send, and the kernel queues
	// every change on both sockets until their buffers are full.
	for i := 0; i < overrunChanges; i++ {
		must(t, "LinkSetUp", a.h.LinkSetUp(br))
		must(t, "LinkSetDown", a.h.LinkSetDown(br))
	}
	ev := expect(t, ch, "Overrun", func(ev netkit.Event) bool { return ev.Type == netkit.EventOverrun })
	if !errors.Is(ev.Err, syscall.ENOBUFS) || !errors.Is(ev.Err, netkit.ErrIO) {
		t.Fatalf("the overrun's error: %v", ev.Err)
	}

	// The Subscription: read what is queued (Next never blocks) until it returns nil.
	overruns, queued := 0, 0
	for {
		ev, err := sub.Next()
		must(t, "Next", err)
		if ev == nil {
			break
		}
		queued++
		if ev.Type == netkit.EventOverrun {
			overruns++
			if !errors.Is(ev.Err, syscall.ENOBUFS) {
				t.Fatalf("the overrun's error: %v", ev.Err)
			}
		}
	}
	if overruns == 0 {
		t.Fatalf("no EventOverrun among the %d queued events", queued)
	}
	// Drained: a later change arrives.
	must(t, "LinkDel", a.h.LinkDel(br))
	pollNext(t, sub, "DelLink br0 after the overrun", isLink(netkit.EventDelLink, "br0", false))
}

// overrunChanges is how many up/down pairs TestEventOverrun makes: about ten times the
// notifications a subscription's 8 MiB socket buffer holds (about 2000 link notifications).
const overrunChanges = 10000
