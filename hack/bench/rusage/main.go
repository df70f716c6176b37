// Command rusage runs a command and prints its wall time, CPU time and peak resident memory as
// one JSON line on stdout; the command's own output goes to stderr.
//
// The bench measures through it because a child started by a large process cannot report its
// own peak: Go starts children with vfork semantics (CLONE_VM), and at exec Linux folds the
// parent's peak RSS into the child's (fs/exec.c, exec_mmap). From the bench (60 MiB and more),
// etcdctl would seem to peak at the bench's size; from this small process the error is a few MiB
// at most, and only for a command that stays below that.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"time"
)

type usage struct {
	WallNs int64 `json:"wallNs"`
	CPUNs  int64 `json:"cpuNs"` // user + system
	RSSKiB int64 `json:"maxRSSKiB"`
	Exit   int   `json:"exit"`
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: rusage COMMAND [ARG...]")
		os.Exit(2)
	}
	cmd := exec.Command(os.Args[1], os.Args[2:]...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	t0 := time.Now()
	err := cmd.Run()
	u := usage{WallNs: int64(time.Since(t0))}
	if cmd.ProcessState == nil {
		fmt.Fprintln(os.Stderr, "rusage:", err)
		os.Exit(1)
	}
	u.Exit = cmd.ProcessState.ExitCode()
	u.CPUNs = int64(cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime())
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		u.RSSKiB = ru.Maxrss
	}
	if err := json.NewEncoder(os.Stdout).Encode(u); err != nil {
		os.Exit(1)
	}
}
