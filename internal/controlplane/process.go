package controlplane

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// ProcessState identifies one started component by its process group, as recorded on disk so
// that another process can stop exactly it.
type ProcessState struct {
	Name       string `json:"name"`
	PGID       int    `json:"pgid"`
	StartTicks uint64 `json:"startTicks"` // start time of the group leader, guards against pid reuse
	Ports      []int  `json:"ports,omitempty"`
	Log        string `json:"log"`
}

// Running reports whether the recorded group still exists and is ours.
func (ps ProcessState) Running() bool { return OwnsGroup(ps) }

// ProcessSpec says how to start one binary.
type ProcessSpec struct {
	Name string
	Bin  string
	Args []string
	Env  []string // added to the caller's environment
	Log  string   // stdout and stderr are appended here
	// Ports the process was told to listen on, recorded for people and for error messages.
	Ports []int
	// Detach lets the process outlive the caller; otherwise the kernel kills it when the caller's
	// thread that started it dies (Pdeathsig).
	Detach bool
}

// Process is one component binary running in its own process group, so that stopping it also
// stops every child it started (Velero's plugins, containerd's shims) and nothing else.
type Process struct {
	name      string
	logPath   string
	logOffset int64 // where this start's output begins in a log shared with earlier attempts
	pgid      int
	ticks     uint64
	ports     []int

	done    chan struct{} // closed once the process has exited and been reaped
	waitErr error
}

// StartProcess starts spec.Bin in a new process group.
func StartProcess(spec ProcessSpec) (*Process, error) {
	logf, err := os.OpenFile(spec.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open log of %s: %w", spec.Name, err)
	}
	defer logf.Close()
	offset, _ := logf.Seek(0, io.SeekEnd)
	fmt.Fprintf(logf, "--- firedrill: %s %s\n", spec.Bin, strings.Join(spec.Args, " "))

	cmd := exec.Command(spec.Bin, spec.Args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(os.Environ(), spec.Env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if !spec.Detach {
		cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", spec.Name, err)
	}
	p := &Process{name: spec.Name, logPath: spec.Log, logOffset: offset, pgid: cmd.Process.Pid, ports: spec.Ports, done: make(chan struct{})}
	p.ticks, _ = procStartTicks(p.pgid)
	go func() {
		p.waitErr = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// Name is the component's name.
func (p *Process) Name() string { return p.name }

// Ports are the ports it was told to listen on.
func (p *Process) Ports() []int { return p.ports }

// Log is the path of its log.
func (p *Process) Log() string { return p.logPath }

// Done is closed once the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Exited reports whether the process has exited.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// LastLines returns up to n last lines this start wrote to its log.
func (p *Process) LastLines(n int) string { return TailFile(p.logPath, p.logOffset, n) }

// State is what to record about the process to stop it later from anywhere.
func (p *Process) State() ProcessState {
	return ProcessState{Name: p.name, PGID: p.pgid, StartTicks: p.ticks, Ports: p.ports, Log: p.logPath}
}

// Stop stops the process group (see StopGroup) and waits for the process to be reaped.
func (p *Process) Stop(grace time.Duration) error {
	err := StopGroup(p.State(), grace)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
	}
	return err
}

// StopGroup sends SIGTERM to the process group, waits up to grace for every member to go, then
// sends SIGKILL and waits again. It only signals a group whose leader is still the process that
// was recorded (or that has no leader left but members that were started with it).
func StopGroup(ps ProcessState, grace time.Duration) error {
	if !OwnsGroup(ps) {
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

// OwnsGroup reports whether the recorded group still exists and is ours. The kernel does not hand
// out a pid that is still in use as a process group id, so a live leader with another start time
// means our group is gone and the number now belongs to someone else.
func OwnsGroup(ps ProcessState) bool {
	if ps.PGID <= 1 {
		return false
	}
	members := GroupMembers(ps.PGID)
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
		if len(GroupMembers(pgid)) == 0 {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// GroupMembers lists the live (not zombie) processes whose process group is pgid.
func GroupMembers(pgid int) []int {
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

// TailFile returns up to n last lines of a log written after offset, for error messages.
func TailFile(path string, offset int64, n int) string {
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

// FreePorts asks the kernel for n distinct free ports on addr (an IP; "" means 127.0.0.1).
func FreePorts(addr string, n int) ([]int, error) {
	if addr == "" {
		addr = "127.0.0.1"
	}
	ls := make([]net.Listener, 0, n)
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", net.JoinHostPort(addr, "0"))
		if err != nil {
			return nil, fmt.Errorf("find a free port: %w", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
