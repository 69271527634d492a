package main

import (
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"net/netip"
)

// loopbackOnly accepts HOST:PORT only when HOST is a loopback IP address
// (127.0.0.0/8, ::1), not a name, which resolves to whatever /etc/hosts
// says: --debug-pprof-listen must not expose the process's profiles beyond
// the machine (or its network namespace).
func loopbackOnly(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	a, err := netip.ParseAddr(host)
	if err != nil || !a.IsLoopback() {
		return fmt.Errorf("%q is not a loopback address (want 127.0.0.1:PORT or [::1]:PORT)", host)
	}
	return nil
}

// pprofMux serves net/http/pprof's handlers under /debug/pprof/ on a mux
// of its own (not http.DefaultServeMux).
func pprofMux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}
