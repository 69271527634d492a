// Package proc reads a process's resource use from /proc, for benchmarks
// and gates that measure the daemons they start.
package proc

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// clockTick is USER_HZ, the unit of the CPU times in /proc/PID/stat; it is
// 100 on every Linux architecture Go supports.
const clockTick = 10 * time.Millisecond

// Stat is what this package reads of /proc/PID/stat.
type Stat struct {
	Command string // the executable's name, as the kernel keeps it (at most 15 bytes)
	State   byte   // R, S, D, Z (zombie: exited, not yet reaped), ...
	PGrp    int    // process group
	// Start is when the process started, in clock ticks since boot: with
	// the pid, it names one process, as pids are reused.
	Start        uint64
	UTime, STime int64 // CPU time in clock ticks
}

// ReadStat reads /proc/PID/stat.
func ReadStat(pid int) (*Stat, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil, err
	}
	st, ok := parseStat(data)
	if !ok {
		return nil, fmt.Errorf("malformed /proc/%d/stat", pid)
	}
	return st, nil
}

// parseStat parses the text of /proc/PID/stat.
func parseStat(data []byte) (*Stat, bool) {
	// The command is in parentheses and may hold spaces and parentheses:
	// the fields start after the last ')'.
	open, end := bytes.IndexByte(data, '('), bytes.LastIndexByte(data, ')')
	if open < 0 || end < open {
		return nil, false
	}
	f := strings.Fields(string(data[end+1:]))
	if len(f) < 20 || len(f[0]) != 1 || !isLetter(f[0][0]) {
		return nil, false
	}
	st := &Stat{Command: string(data[open+1 : end]), State: f[0][0]}
	var errs [4]error
	st.PGrp, errs[0] = strconv.Atoi(f[2])
	st.UTime, errs[1] = strconv.ParseInt(f[11], 10, 64)
	st.STime, errs[2] = strconv.ParseInt(f[12], 10, 64)
	st.Start, errs[3] = strconv.ParseUint(f[19], 10, 64)
	for _, e := range errs {
		if e != nil {
			return nil, false
		}
	}
	return st, true
}

// isLetter: a process state is one (R, S, D, Z, T, t, X, I, ...).
func isLetter(c byte) bool { return 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' }

// CPUTime returns the user plus system CPU time process pid has used.
func CPUTime(pid int) (time.Duration, error) {
	st, err := ReadStat(pid)
	if err != nil {
		return 0, err
	}
	return time.Duration(st.UTime+st.STime) * clockTick, nil
}

// Identity names process pid for as long as it lives and never another
// (unlike its pid, which is reused): "PID@START".
func Identity(pid int) (string, error) {
	st, err := ReadStat(pid)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%d@%d", pid, st.Start), nil
}

// Running reports whether the process that Identity named still runs (a
// zombie does not).
func Running(identity string) bool {
	p, start, ok := strings.Cut(identity, "@")
	pid, err := strconv.Atoi(p)
	if !ok || err != nil || pid <= 0 {
		return false
	}
	st, err := ReadStat(pid)
	return err == nil && st.State != 'Z' && strconv.FormatUint(st.Start, 10) == start
}

// Memory returns the resident set size of process pid and its peak, in
// bytes.
func Memory(pid int) (rss, peak int64, err error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) != 3 || f[2] != "kB" {
			continue
		}
		v, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "VmRSS:":
			rss = v << 10
		case "VmHWM:":
			peak = v << 10
		}
	}
	if rss == 0 {
		return 0, 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
	}
	return rss, peak, nil
}

// SelfCPU is the CPU time (user and system) this process has used so far,
// from getrusage: microsecond resolution, where CPUTime counts clock
// ticks. Benchmarks divide it by their iterations.
func SelfCPU() (time.Duration, error) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, err
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), nil
}
