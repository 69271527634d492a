// Package machine describes the machine a measurement ran on: CPU model,
// cores, kernel and Go version. Every figure Rustynet publishes carries it.
package machine

import (
	"fmt"
	"os"
	"runtime"
	"strings"
)

// Environment is the machine a measurement ran on.
type Environment struct {
	CPU       string `json:"cpu"`
	Cores     int    `json:"cores"`
	Kernel    string `json:"kernel"`
	GoVersion string `json:"go_version"`
	OS        string `json:"os"`
	Arch      string `json:"arch"`
}

// Describe reads the environment of this machine.
func Describe() Environment {
	e := Environment{CPU: "unknown", Cores: runtime.NumCPU(), GoVersion: runtime.Version(), OS: runtime.GOOS, Arch: runtime.GOARCH}
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.SplitSeq(string(data), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				e.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	if k, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		e.Kernel = strings.TrimSpace(string(k))
	}
	return e
}

func (e Environment) String() string {
	return fmt.Sprintf("%s, %d cores, kernel %s, %s %s/%s", e.CPU, e.Cores, e.Kernel, e.GoVersion, e.OS, e.Arch)
}
