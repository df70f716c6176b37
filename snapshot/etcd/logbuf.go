package etcd

import (
	"strings"
	"sync"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// tailLog keeps the last lines etcd's libraries logged, so that they stay off stdout and stderr
// but can be attached to an error that needs them.
type tailLog struct {
	mu    sync.Mutex
	lines []string
	next  int
	full  bool
}

func newTailLog(lines int) *tailLog { return &tailLog{lines: make([]string, lines)} }

// logger returns a zap logger writing into t at level and above. Fatal panics instead of exiting:
// etcd logs Fatal on a value it cannot decode, and os.Exit would end firedrill without a word,
// where a panic on a guarded goroutine becomes an error.
func (t *tailLog) logger(level zapcore.Level) *zap.Logger {
	enc := zap.NewDevelopmentEncoderConfig()
	enc.TimeKey = ""
	enc.CallerKey = ""
	return zap.New(zapcore.NewCore(zapcore.NewConsoleEncoder(enc), zapcore.AddSync(t), level),
		zap.WithFatalHook(zapcore.WriteThenPanic))
}

func (t *tailLog) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, line := range strings.Split(strings.TrimRight(string(p), "\n"), "\n") {
		t.lines[t.next] = line
		t.next = (t.next + 1) % len(t.lines)
		if t.next == 0 {
			t.full = true
		}
	}
	return len(p), nil
}

// last returns up to n of the newest lines, oldest first.
func (t *tailLog) last(n int) []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	var all []string
	if t.full {
		all = append(all, t.lines[t.next:]...)
	}
	all = append(all, t.lines[:t.next]...)
	if len(all) > n {
		all = all[len(all)-n:]
	}
	return all
}

// suffix formats the newest lines for the end of an error message, or "" when there are none.
func (t *tailLog) suffix(n int) string {
	lines := t.last(n)
	if len(lines) == 0 {
		return ""
	}
	return "; etcd logged: " + strings.Join(lines, " | ")
}
