package machine

import (
	"runtime"
	"strings"
	"testing"
)

func TestDescribe(t *testing.T) {
	e := Describe()
	if e.Cores != runtime.NumCPU() || e.GoVersion != runtime.Version() {
		t.Errorf("Describe() = %+v, want this process's cores and Go version", e)
	}
	if runtime.GOOS == "linux" && (e.Kernel == "" || e.CPU == "") {
		t.Errorf("Describe() = %+v, want a CPU model and a kernel on Linux", e)
	}
	if s := e.String(); !strings.Contains(s, e.GoVersion) {
		t.Errorf("String() = %q lacks the Go version", s)
	}
}
