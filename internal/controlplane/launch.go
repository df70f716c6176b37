package controlplane

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Component describes how to start one binary and how to tell it is ready.
type Component struct {
	Name string
	// Bin is a name in the launcher's BinDir or an absolute path; empty means Name.
	Bin string
	// NPorts free ports on Host are picked just before the start and passed to Args and Ready.
	NPorts int
	// Host is the address the component listens on; empty means 127.0.0.1.
	Host  string
	Args  func(ports []int) []string
	Env   []string
	Ready func(ctx context.Context, ports []int) error
	// Quiet keeps the "ready" line off Progress (for helpers a person need not hear about).
	Quiet bool
}

// Launcher starts components and waits until each is ready.
type Launcher struct {
	BinDir string
	LogDir string // each component logs to LogDir/<name>.log
	// Detach lets processes outlive the caller (see ProcessSpec.Detach).
	Detach bool
	// ReadyTimeout bounds the wait for each component; 0 means 2 minutes.
	ReadyTimeout time.Duration
	// Progress receives a line per component as it becomes ready; nil discards them.
	Progress io.Writer
	// Started, when set, is called as soon as a process has started, before it is ready, so the
	// caller can record it; Discarded when a start is abandoned to retry on other ports.
	Started, Discarded func(*Process)
}

// ComponentError says which component failed to start and shows the end of its log.
type ComponentError struct {
	Component string
	Err       error
	Log       string // path of the component's log
	LastLines string
}

func (e *ComponentError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %v", e.Component, e.Err)
	if e.Log != "" {
		fmt.Fprintf(&b, "\n  log: %s", e.Log)
	}
	if e.LastLines != "" {
		b.WriteString("\n  last lines:\n    ")
		b.WriteString(strings.ReplaceAll(e.LastLines, "\n", "\n    "))
	}
	return b.String()
}

func (e *ComponentError) Unwrap() error { return e.Err }

// LogPath is where the component name logs.
func (l *Launcher) LogPath(name string) string { return filepath.Join(l.LogDir, name+".log") }

func (l *Launcher) readyTimeout() time.Duration {
	if l.ReadyTimeout <= 0 {
		return 2 * time.Minute
	}
	return l.ReadyTimeout
}

// Launch starts a component and waits until it is ready. If another process takes one of its
// ports between picking and binding, it is started again on new ones (three tries).
func (l *Launcher) Launch(ctx context.Context, c Component) (*Process, error) {
	bin := c.Bin
	if bin == "" {
		bin = c.Name
	}
	if !filepath.IsAbs(bin) {
		bin = filepath.Join(l.BinDir, bin)
	}
	logPath := l.LogPath(c.Name)
	t0 := time.Now()
	for attempt := 1; ; attempt++ {
		ports, err := FreePorts(c.Host, c.NPorts)
		if err != nil {
			return nil, &ComponentError{Component: c.Name, Err: err}
		}
		var args []string
		if c.Args != nil {
			args = c.Args(ports)
		}
		p, err := StartProcess(ProcessSpec{Name: c.Name, Bin: bin, Args: args, Env: c.Env, Log: logPath, Ports: ports, Detach: l.Detach})
		if err != nil {
			return nil, &ComponentError{Component: c.Name, Err: err, Log: logPath}
		}
		if l.Started != nil {
			l.Started(p)
		}
		err = l.waitReady(ctx, p, c)
		if err == nil {
			if !c.Quiet && l.Progress != nil {
				fmt.Fprintf(l.Progress, "  %-24s ready in %4.1fs  %s\n", c.Name, time.Since(t0).Seconds(), describePorts(c.Host, ports))
			}
			return p, nil
		}
		var taken *portTakenError
		if errors.As(err, &taken) && attempt < 3 {
			_ = p.Stop(5 * time.Second)
			if l.Discarded != nil {
				l.Discarded(p)
			}
			continue
		}
		if taken != nil {
			err = taken.ComponentError
		}
		return p, err
	}
}

// portTakenError is a start-up failure because a port was taken between picking and binding.
type portTakenError struct{ *ComponentError }

func (l *Launcher) waitReady(ctx context.Context, p *Process, c Component) error {
	timeout := l.readyTimeout()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last error
	for {
		if p.Exited() {
			tail := p.LastLines(15)
			ce := &ComponentError{Component: c.Name, Err: fmt.Errorf("exited during start-up (%v)", p.waitErr), Log: p.logPath, LastLines: tail}
			if strings.Contains(tail, "address already in use") {
				return &portTakenError{ce}
			}
			return ce
		}
		if c.Ready == nil {
			return nil
		}
		pctx, pcancel := context.WithTimeout(ctx, 5*time.Second)
		last = c.Ready(pctx, p.ports)
		pcancel()
		if last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return &ComponentError{Component: c.Name, Err: fmt.Errorf("not ready after %s: %v", timeout, last),
					Log: p.logPath, LastLines: p.LastLines(15)}
			}
			return &ComponentError{Component: c.Name, Err: ctx.Err(), Log: p.logPath}
		case <-p.done:
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func describePorts(host string, ports []int) string {
	if host == "" {
		host = "127.0.0.1"
	}
	var b strings.Builder
	for i, p := range ports {
		if i > 0 {
			b.WriteString(",")
		}
		b.WriteString(net.JoinHostPort(host, strconv.Itoa(p)))
	}
	return b.String()
}

// LoopbackURL is scheme://127.0.0.1:port.
func LoopbackURL(scheme string, port int) string {
	return fmt.Sprintf("%s://127.0.0.1:%d", scheme, port)
}
