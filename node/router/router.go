// Package router gives the node's packet device its addresses and routes.
// It is driven declaratively: Set takes the whole desired state and may be
// called any number of times with identical configs.
package router

import "net/netip"

// Config is the desired state of the interface.
type Config struct {
	// Addresses are the node's own mesh addresses.
	Addresses []netip.Prefix
	// Routes are the prefixes to send into the interface: the peers'
	// allowed IPs.
	Routes []netip.Prefix
}

// Router applies Configs to one interface.
type Router interface {
	// Set makes cfg the interface's state: missing addresses and routes are
	// added, ones it added before and cfg no longer holds are removed, and
	// the rest are left alone.
	Set(cfg *Config) error
	// Close removes what the router added. The interface itself belongs to
	// the caller.
	Close() error
}

// Nop is the router of a userspace (netstack) device, whose addresses are
// fixed when it is created and which has no kernel routes.
type Nop struct{}

// Set implements Router.
func (Nop) Set(*Config) error { return nil }

// Close implements Router.
func (Nop) Close() error { return nil }
