package main

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"golang.org/x/term"

	"github.com/firedrill-dev/firedrill/report"
)

// progress shows a run as it happens: on a terminal one live status line (step, elapsed time,
// bytes streamed and rate) with notes printed above it; in a pipe, plain timestamped lines.
type progress struct {
	mu    sync.Mutex
	w     io.Writer
	tty   bool
	label string // scenario name, prefixed to lines when several run
	start time.Time

	step      string
	stepStart time.Time
	bytes     int64
	rateAt    time.Time
	rateBytes int64
	rate      float64 // bytes per second, smoothed
	lastPrint time.Time

	stop chan struct{}
	done chan struct{}
}

func newProgress(w io.Writer, label string) *progress {
	p := &progress{w: w, label: label, start: time.Now()}
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		p.tty = true
		p.stop, p.done = make(chan struct{}), make(chan struct{})
		go p.ticker()
	}
	return p
}

func (p *progress) ticker() {
	defer close(p.done)
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			return
		case <-t.C:
			p.mu.Lock()
			p.redraw()
			p.mu.Unlock()
		}
	}
}

// Close ends the live line.
func (p *progress) Close() {
	if p.tty {
		close(p.stop)
		<-p.done
		p.mu.Lock()
		fmt.Fprint(p.w, "\r\033[K")
		p.mu.Unlock()
	}
}

func (p *progress) Step(name string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.step, p.stepStart, p.bytes, p.rate, p.rateAt, p.rateBytes = name, time.Now(), 0, 0, time.Now(), 0
	if p.tty {
		p.redraw()
		return
	}
	p.line("step " + name)
}

func (p *progress) Bytes(done, total int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.bytes = done
	if dt := time.Since(p.rateAt); dt >= 500*time.Millisecond {
		inst := float64(done-p.rateBytes) / dt.Seconds()
		if p.rate == 0 {
			p.rate = inst
		} else {
			p.rate = 0.7*p.rate + 0.3*inst
		}
		p.rateAt, p.rateBytes = time.Now(), done
	}
	if !p.tty && time.Since(p.lastPrint) >= 5*time.Second {
		p.line(fmt.Sprintf("  %s streamed%s", report.Bytes(done), p.rateText()))
	}
}

func (p *progress) Note(msg string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tty {
		fmt.Fprint(p.w, "\r\033[K")
	}
	p.line("  " + msg)
	if p.tty {
		p.redraw()
	}
}

func (p *progress) line(s string) {
	prefix := fmt.Sprintf("[%6s] ", report.Duration(time.Since(p.start).Round(100*time.Millisecond)))
	if p.label != "" {
		prefix += p.label + ": "
	}
	fmt.Fprintln(p.w, prefix+s)
	p.lastPrint = time.Now()
}

func (p *progress) rateText() string {
	if p.rate <= 0 {
		return ""
	}
	return fmt.Sprintf(" (%s/s)", report.Bytes(int64(p.rate)))
}

func (p *progress) redraw() {
	if p.step == "" {
		return
	}
	s := fmt.Sprintf("\r\033[K%s %s  %s", spinner(time.Since(p.start)), p.step, report.Duration(time.Since(p.stepStart).Round(100*time.Millisecond)))
	if p.bytes > 0 {
		s += "  " + report.Bytes(p.bytes) + p.rateText()
	}
	if p.label != "" {
		s = "\r\033[K" + p.label + ": " + s[len("\r\033[K"):]
	}
	fmt.Fprint(p.w, s)
}

func spinner(d time.Duration) string {
	frames := []string{"⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"}
	return frames[int(d/(100*time.Millisecond))%len(frames)]
}
