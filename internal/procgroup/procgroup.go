// Package procgroup runs a command as the leader of its own process group,
// so that ending it ends everything it started: a `go test` and the test
// binary under it, and the daemons that binary started, not only the `go`
// process that exec.CommandContext would kill. A gate that is interrupted
// or times out leaves no process behind.
//
// (Pdeathsig is not used: it fires when the thread that forked the child
// exits, and Go retires threads that a goroutine locked to a network
// namespace.)
package procgroup

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"syscall"

	"github.com/rustynet/rustynet/internal/proc"
)

// Set makes cmd, made by exec.CommandContext and not yet started, the leader of a new process
// group, and makes its cancellation (when the context given to
// exec.CommandContext ends) a SIGKILL to the whole group. Call Kill after
// Wait to end what the group left running.
func Set(cmd *exec.Cmd) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	cmd.Cancel = func() error { return Kill(cmd) }
}

// Kill sends SIGKILL to every process left in cmd's group. The group
// outlives its leader while any member lives, and its ID is not reused
// until then, so this is safe after Wait. It is a no-op for a command that
// never started and for a group that is empty.
func Kill(cmd *exec.Cmd) error {
	if cmd.Process == nil {
		return nil
	}
	err := syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	if errors.Is(err, syscall.ESRCH) {
		return os.ErrProcessDone
	}
	return err
}

// Left returns the processes of cmd's group that still run (zombies, which
// run nothing, are not counted), each as "PID (COMMAND)": after Wait, what
// the command started and did not stop.
func Left(cmd *exec.Cmd) []string {
	if cmd.Process == nil {
		return nil
	}
	dirs, _ := os.ReadDir("/proc")
	var left []string
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		st, err := proc.ReadStat(pid)
		if err != nil {
			continue // it exited while we looked
		}
		if st.PGrp == cmd.Process.Pid && st.State != 'Z' {
			left = append(left, fmt.Sprintf("%d (%s)", pid, st.Command))
		}
	}
	return left
}
