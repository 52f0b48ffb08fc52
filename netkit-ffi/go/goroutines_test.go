package netkit_test

import (
	"fmt"
	"sync"
	"testing"

	"netkit.dev/netkit"
)

// TestGoroutines runs 8 goroutines at once in one namespace, half on a shared handle and half
// on handles of their own: each creates a bridge and a veth pair, addresses them, lists and
// deletes them. Run with -race, it also checks the package's own locking.
func TestGoroutines(t *testing.T) {
	a := newTestNs(t, "gr")
	const n = 8
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			h := a.h
			if i%2 == 1 {
				own, err := netkit.NewHandleAt(a.ns)
				if err != nil {
					errs <- err
					return
				}
				defer own.Close()
				h = own
			}
			if err := work(h, i); err != nil {
				errs <- fmt.Errorf("goroutine %d: %w", i, err)
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	links, err := a.h.LinkList()
	must(t, "LinkList", err)
	if len(links) != 1 {
		t.Fatalf("links left: %d", len(links))
	}
}

// work is one goroutine's share of TestGoroutines.
func work(h *netkit.Handle, i int) error {
	for round := 0; round < 5; round++ {
		br := &netkit.Bridge{LinkAttrs: netkit.LinkAttrs{Name: fmt.Sprintf("br%d", i), Flags: up}}
		if err := h.LinkAdd(br); err != nil {
			return err
		}
		veth := &netkit.Veth{LinkAttrs: netkit.LinkAttrs{Name: fmt.Sprintf("va%d", i), MasterIndex: br.Index},
			PeerName: fmt.Sprintf("vb%d", i)}
		if err := h.LinkAdd(veth); err != nil {
			return err
		}
		a, err := netkit.ParseAddr(fmt.Sprintf("10.%d.%d.1/24", 100+i, round))
		if err != nil {
			return err
		}
		if err := h.AddrAdd(br, a); err != nil {
			return err
		}
		list, err := h.AddrList(br, netkit.FAMILY_V4)
		if err != nil {
			return err
		}
		if len(list) != 1 || list[0].IPNet.String() != a.IPNet.String() {
			return fmt.Errorf("addresses of %s: %v", br.Name, list)
		}
		if _, err := h.LinkList(); err != nil {
			return err
		}
		if err := h.LinkDel(veth); err != nil {
			return err
		}
		if err := h.LinkDel(br); err != nil {
			return err
		}
	}
	return nil
}

// TestCloseWhileInUse closes a handle while other goroutines use it: each call either works
// or fails with ErrInvalid, nothing crashes, and Close waits for calls in progress.
func TestCloseWhileInUse(t *testing.T) {
	a := newTestNs(t, "cl")
	h, err := netkit.NewHandleAt(a.ns)
	must(t, "NewHandleAt", err)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			for j := 0; j < 50; j++ {
				if _, err := h.LinkByName("lo"); err != nil && !isInvalid(err) {
					t.Errorf("LinkByName on a closing handle: %v", err)
					return
				}
			}
		}()
	}
	close(start)
	h.Close()
	wg.Wait()
}

func isInvalid(err error) bool {
	e, ok := err.(*netkit.Error)
	return ok && e.Kind == netkit.KindInvalid
}
