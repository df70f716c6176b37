package sandbox

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// process is one component binary running in its own process group, so that stopping it also
// stops every child it started (Velero's plugins) and nothing else.
type process struct {
	name      string
	logPath   string
	logOffset int64 // where this start's output begins in a log shared with earlier attempts
	cmd       *exec.Cmd
	pgid      int
	ticks     uint64 // start time in clock ticks since boot, to tell our process from a recycled pid
	ports     []int

	done    chan struct{} // closed once the process has exited and been reaped
	waitErr error
}

// startProcess starts bin with args, stdout and stderr appended to logPath. With detach the
// process outlives the caller; otherwise the kernel kills it if the caller dies first.
func startProcess(name, bin string, args, env []string, logPath string, ports []int, detach bool) (*process, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open log of %s: %w", name, err)
	}
	defer logf.Close()
	offset, _ := logf.Seek(0, io.SeekEnd)
	fmt.Fprintf(logf, "--- firedrill sandbox: %s %s\n", bin, strings.Join(args, " "))

	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if !detach {
		cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &process{name: name, logPath: logPath, logOffset: offset, cmd: cmd, pgid: cmd.Process.Pid, ports: ports, done: make(chan struct{})}
	p.ticks, _ = procStartTicks(p.pgid)
	go func() {
		p.waitErr = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func (p *process) state() ProcessState {
	return ProcessState{Name: p.name, PGID: p.pgid, StartTicks: p.ticks, Ports: p.ports, Log: p.logPath}
}

// stopGroup sends SIGTERM to the process group, waits up to grace for every member to go, then
// sends SIGKILL and waits again. It only signals a group whose leader is still the process that
// was recorded (or that has no leader left but members that were started with it).
func stopGroup(ps ProcessState, grace time.Duration) error {
	if !ownsGroup(ps) {
		return nil
	}
	_ = syscall.Kill(-ps.PGID, syscall.SIGTERM)
	if waitGroupGone(ps.PGID, grace) {
		return nil
	}
	_ = syscall.Kill(-ps.PGID, syscall.SIGKILL)
	if waitGroupGone(ps.PGID, 10*time.Second) {
		return nil
	}
	return fmt.Errorf("%s (process group %d) is still running after SIGKILL", ps.Name, ps.PGID)
}

// ownsGroup reports whether the recorded group still exists and is ours. The kernel does not hand
// out a pid that is still in use as a process group id, so a live leader with another start time
// means our group is gone and the number now belongs to someone else.
func ownsGroup(ps ProcessState) bool {
	if ps.PGID <= 1 {
		return false
	}
	members := groupMembers(ps.PGID)
	if len(members) == 0 {
		return false
	}
	for _, pid := range members {
		if pid == ps.PGID && ps.StartTicks != 0 {
			t, err := procStartTicks(pid)
			return err == nil && t == ps.StartTicks
		}
	}
	return true
}

func waitGroupGone(pgid int, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for {
		if len(groupMembers(pgid)) == 0 {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// groupMembers lists the live (not zombie) processes whose process group is pgid.
func groupMembers(pgid int) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		f, err := procStat(pid)
		if err != nil || len(f) < 3 {
			continue
		}
		if f[0] == "Z" || f[0] == "X" {
			continue
		}
		if g, _ := strconv.Atoi(f[2]); g == pgid {
			pids = append(pids, pid)
		}
	}
	return pids
}

// procStat returns the fields of /proc/PID/stat after the command name: state is [0], pgrp [2],
// starttime [19].
func procStat(pid int) ([]string, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return nil, err
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return nil, errors.New("malformed stat")
	}
	return strings.Fields(string(b[i+1:])), nil
}

func procStartTicks(pid int) (uint64, error) {
	f, err := procStat(pid)
	if err != nil {
		return 0, err
	}
	if len(f) < 20 {
		return 0, errors.New("short stat")
	}
	return strconv.ParseUint(f[19], 10, 64)
}

// tailFile returns up to n last lines of a log written after offset, for error messages.
func tailFile(path string, offset int64, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	const max = 16 << 10
	if st, err := f.Stat(); err == nil && st.Size()-offset > max {
		offset = st.Size() - max
	}
	_, _ = f.Seek(offset, io.SeekStart)
	b, _ := io.ReadAll(f)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
