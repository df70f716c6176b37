package history

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"syscall"

	"github.com/firedrill-dev/firedrill/drill"
)

// CurrentRunner describes this process for Record.Runner: host name, pid and, on Linux, the
// pid's start time in clock ticks since boot (so that a later pid reuse is not mistaken for
// this process). The caller fills Version.
func CurrentRunner() drill.RunnerInfo {
	host, _ := os.Hostname()
	ri := drill.RunnerInfo{Host: host, PID: os.Getpid()}
	if ticks, _, err := procStat(ri.PID); err == nil {
		ri.StartTicks = ticks
	}
	return ri
}

// ProcessAlive reports whether the process that ri describes still runs. It can only look at
// this host: for a run of another host it returns true, and MarkAbandoned falls back on the
// heartbeat. On Linux a pid whose start time differs from ri.StartTicks is a recycled pid and
// counts as gone, as does a zombie; without /proc it asks the kernel with signal 0.
func ProcessAlive(ri drill.RunnerInfo) bool {
	host, err := os.Hostname()
	if err != nil || ri.Host != host {
		return true
	}
	if ri.PID <= 0 {
		return false
	}
	ticks, state, err := procStat(ri.PID)
	switch {
	case err == nil:
		if state == 'Z' || state == 'X' {
			return false
		}
		return ri.StartTicks == 0 || ticks == ri.StartTicks
	case errors.Is(err, fs.ErrNotExist):
		if _, err := os.Stat("/proc/self/stat"); err == nil {
			return false // /proc works and has no such pid
		}
		return signalZero(ri.PID)
	default:
		return true // can't tell; never abort a run that may be alive
	}
}

// procStat reads the state (field 3) and start time (field 22) of /proc/<pid>/stat.
func procStat(pid int) (startTicks uint64, state byte, err error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, err
	}
	// Field 2 is the command in parentheses and may itself hold spaces and ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, fmt.Errorf("/proc/%d/stat: no command field", pid)
	}
	f := bytes.Fields(b[i+1:]) // f[0] is field 3
	if len(f) < 20 {
		return 0, 0, fmt.Errorf("/proc/%d/stat: %d fields, want at least 22", pid, len(f)+2)
	}
	startTicks, err = strconv.ParseUint(string(f[19]), 10, 64)
	if err != nil {
		return 0, 0, fmt.Errorf("/proc/%d/stat: start time: %w", pid, err)
	}
	return startTicks, f[0][0], nil
}

// signalZero asks the kernel whether pid exists, for systems without /proc.
func signalZero(pid int) bool {
	p, err := os.FindProcess(pid)
	if err != nil {
		return false
	}
	// EPERM means it exists but is not ours; only "no such process" means gone.
	return !errors.Is(p.Signal(syscall.Signal(0)), os.ErrProcessDone)
}
