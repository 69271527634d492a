package ipam

import (
	"errors"
	"net/netip"
	"testing"
)

func TestAddrs(t *testing.T) {
	p, err := NewPool(DefaultIPv4, DefaultIPv6)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := p.Size(), uint64(1<<22-2); got != want {
		t.Errorf("Size() = %d, want %d", got, want)
	}
	v4, v6 := p.Addrs(1)
	if v4 != netip.MustParseAddr("100.64.0.1") || v6 != netip.MustParseAddr("fd52:7573:7479::1") {
		t.Errorf("Addrs(1) = %s, %s; want 100.64.0.1, fd52:7573:7479::1", v4, v6)
	}
	v4, v6 = p.Addrs(p.Size())
	if v4 != netip.MustParseAddr("100.127.255.254") || v6 != netip.MustParseAddr("fd52:7573:7479::3f:fffe") {
		t.Errorf("Addrs(Size()) = %s, %s; want 100.127.255.254, fd52:7573:7479::3f:fffe", v4, v6)
	}
}

func TestNewPoolRefusesBadPrefixes(t *testing.T) {
	for _, c := range []struct{ v4, v6 string }{
		{"fd00::/64", "fd00::/64"},
		{"10.0.0.0/8", "10.0.0.0/8"},
		{"10.0.0.1/8", "fd00::/64"},
		{"10.0.0.0/8", "fd00::1/64"},
		{"10.0.0.0/31", "fd00::/64"},
		{"10.0.0.0/8", "fd00::/121"},
	} {
		if _, err := NewPool(netip.MustParsePrefix(c.v4), netip.MustParsePrefix(c.v6)); err == nil {
			t.Errorf("NewPool(%s, %s) succeeded, want an error", c.v4, c.v6)
		}
	}
}

func TestSmallV6LimitsSize(t *testing.T) {
	p, err := NewPool(netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00::/120"))
	if err != nil {
		t.Fatal(err)
	}
	if p.Size() != 254 {
		t.Errorf("Size() = %d, want 254 (limited by the /120)", p.Size())
	}
}

// TestAllocateNeverRepeats allocates a whole small pool and checks that no
// address is handed out twice while held, that exhaustion is reported, and
// that a freed address is found again.
func TestAllocateNeverRepeats(t *testing.T) {
	p, err := NewPool(netip.MustParsePrefix("10.9.0.0/28"), netip.MustParsePrefix("fd00::/64"))
	if err != nil {
		t.Fatal(err)
	}
	used := map[netip.Addr]bool{}
	taken := func(a netip.Addr) (bool, error) { return used[a], nil }
	var cursor uint64
	for range p.Size() {
		i, v4, v6, err := p.Allocate(cursor, taken)
		if err != nil {
			t.Fatalf("Allocate after %d: %v", len(used)/2, err)
		}
		if used[v4] || used[v6] {
			t.Fatalf("Allocate handed out %s/%s twice", v4, v6)
		}
		if v4 == netip.MustParseAddr("10.9.0.0") || v4 == netip.MustParseAddr("10.9.0.15") {
			t.Fatalf("Allocate handed out the network or broadcast address %s", v4)
		}
		used[v4], used[v6] = true, true
		cursor = i
	}
	if _, _, _, err := p.Allocate(cursor, taken); !errors.Is(err, ErrExhausted) {
		t.Fatalf("Allocate on a full pool: %v, want ErrExhausted", err)
	}
	delete(used, netip.MustParseAddr("10.9.0.5"))
	delete(used, netip.MustParseAddr("fd00::5"))
	if _, v4, _, err := p.Allocate(cursor, taken); err != nil || v4 != netip.MustParseAddr("10.9.0.5") {
		t.Fatalf("Allocate after freeing 10.9.0.5 = %s, %v", v4, err)
	}
}

func TestAllocatePassesErrors(t *testing.T) {
	p, _ := NewPool(DefaultIPv4, DefaultIPv6)
	boom := errors.New("boom")
	if _, _, _, err := p.Allocate(0, func(netip.Addr) (bool, error) { return false, boom }); !errors.Is(err, boom) {
		t.Errorf("Allocate error = %v, want %v", err, boom)
	}
}
