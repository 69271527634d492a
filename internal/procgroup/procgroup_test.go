package procgroup

import (
	"bufio"
	"context"
	"errors"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// startTree starts sh, which starts a grandchild that would outlive it,
// and returns the grandchild's pid.
func startTree(t *testing.T, cmd *exec.Cmd) int {
	t.Helper()
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("reading the grandchild's pid: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		t.Fatalf("grandchild pid %q: %v", line, err)
	}
	t.Cleanup(func() { syscall.Kill(pid, syscall.SIGKILL) })
	// sh prints $! once it has forked the grandchild, which may not have
	// exec'd sleep yet (it is named sh until then): wait until it has.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		comm, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
		if err == nil && strings.TrimSpace(string(comm)) == "sleep" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("grandchild %d has not exec'd sleep after 10 s (%q, %v)", pid, comm, err)
		}
	}
	return pid
}

// gone reports whether pid has exited (a zombie, not yet reaped by its new
// parent, counts as gone: it runs nothing).
func gone(pid int) bool {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	i := strings.LastIndexByte(string(data), ')')
	return i > 0 && len(data) > i+2 && data[i+2] == 'Z'
}

func waitGone(pid int) bool {
	for range 200 {
		if gone(pid) {
			return true
		}
		time.Sleep(10 * time.Millisecond)
	}
	return false
}

const tree = `sleep 300 >/dev/null & echo $!; wait`

func TestCancelKillsTheWholeTree(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	cmd := exec.CommandContext(ctx, "sh", "-c", tree)
	Set(cmd)
	cmd.WaitDelay = 5 * time.Second
	grandchild := startTree(t, cmd)
	cancel()
	err := cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		t.Fatalf("Wait = %v, want the exit of a killed process", err)
	}
	if !waitGone(grandchild) {
		t.Errorf("grandchild %d still runs after its group was cancelled", grandchild)
	}
}

// TestWithoutSetTheGrandchildSurvives is the behaviour Set exists to fix:
// exec.CommandContext alone kills only the direct child.
func TestWithoutSetTheGrandchildSurvives(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	cmd := exec.CommandContext(ctx, "sh", "-c", tree)
	cmd.WaitDelay = 100 * time.Millisecond
	grandchild := startTree(t, cmd)
	cancel()
	cmd.Wait()
	time.Sleep(100 * time.Millisecond)
	if gone(grandchild) {
		t.Fatalf("grandchild %d died with its parent: this test no longer shows what Set fixes", grandchild)
	}
}

func TestKillAfterWaitEndsTheLeftovers(t *testing.T) {
	// sh exits at once; its grandchild keeps the group alive.
	cmd := exec.CommandContext(t.Context(), "sh", "-c", `sleep 300 >/dev/null & echo $!`)
	Set(cmd)
	grandchild := startTree(t, cmd)
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	if gone(grandchild) {
		t.Fatalf("grandchild %d is gone before Kill", grandchild)
	}
	if left := Left(cmd); len(left) != 1 || left[0] != strconv.Itoa(grandchild)+" (sleep)" {
		t.Errorf("Left = %q, want the grandchild %d (sleep) alone", left, grandchild)
	}
	if err := Kill(cmd); err != nil {
		t.Fatalf("Kill = %v", err)
	}
	if !waitGone(grandchild) {
		t.Errorf("grandchild %d still runs after Kill", grandchild)
	}
	if left := Left(cmd); len(left) != 0 {
		t.Errorf("Left after Kill = %q, want none", left)
	}
	// Again: the group is empty, or holds only the zombie until init
	// reaps it; neither is an error.
	if err := Kill(cmd); err != nil && !errors.Is(err, os.ErrProcessDone) {
		t.Errorf("Kill of a dead group = %v, want nil or os.ErrProcessDone", err)
	}
	if err := Kill(exec.Command("true")); err != nil {
		t.Errorf("Kill of a command never started = %v, want nil", err)
	}
}
