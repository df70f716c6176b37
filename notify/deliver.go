package notify

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// receiver is one webhook or the heartbeat URL, with its queue and worker.
type receiver struct {
	n      *Notifier
	kind   string // webhook, heartbeat
	format string // webhooks only
	url    string // secret: never logged
	name   string // scheme://host, what logs show
	match  Match  // the scenarios it hears about
	wake   chan struct{}

	mu    sync.Mutex
	queue []*delivery
	lost  int // deliveries given up because Close's ctx ended
}

// delivery is one request to make, with what the logs need to say about it.
type delivery struct {
	event, scenario, run string
	body                 []byte // nil for a heartbeat
}

func (r *receiver) signal() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// enqueue adds d, dropping the oldest waiting delivery when the queue is full.
func (r *receiver) enqueue(d *delivery) {
	r.mu.Lock()
	if len(r.queue) >= r.n.queueSize {
		old := r.queue[0]
		r.queue = r.queue[1:]
		r.n.log.Warn("notification queue full: dropped the oldest", "receiver", r.name, "kind", r.kind, "queueSize", r.n.queueSize,
			"droppedEvent", old.event, "droppedScenario", old.scenario, "droppedRun", old.run)
	}
	r.queue = append(r.queue, d)
	r.mu.Unlock()
	r.signal()
}

func (r *receiver) undelivered() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.queue) + r.lost
}

func (r *receiver) work() {
	defer r.n.workers.Done()
	for {
		d := r.next()
		if d == nil {
			return
		}
		r.deliver(d)
	}
}

// next waits for a delivery; nil once the Notifier is closing and the queue is empty, or aborted.
func (r *receiver) next() *delivery {
	for {
		if r.n.abort.Err() != nil {
			return nil
		}
		// Queue and closing are read together under n.mu, which Observe holds while it enqueues:
		// else a delivery queued between the two reads would be left behind.
		r.n.mu.Lock()
		r.mu.Lock()
		var d *delivery
		if len(r.queue) > 0 {
			d = r.queue[0]
			r.queue[0] = nil
			r.queue = r.queue[1:]
		}
		r.mu.Unlock()
		closing := r.n.closing
		r.n.mu.Unlock()
		if d != nil {
			return d
		}
		if closing {
			return nil
		}
		select {
		case <-r.wake:
		case <-r.n.abort.Done():
		}
	}
}

// deliver makes d's request until it succeeds, fails for good, runs out of attempts or is aborted.
func (r *receiver) deliver(d *delivery) {
	n := r.n
	log := n.log.With("receiver", r.name, "kind", r.kind, "event", d.event, "scenario", d.scenario, "run", d.run)
	for attempt := 1; ; attempt++ {
		err := r.send(d)
		if err == nil {
			log.Debug("notification delivered", "attempt", attempt)
			return
		}
		if n.abort.Err() != nil {
			r.countLost()
			log.Warn("notification not delivered: shutting down", "attempt", attempt, "err", err)
			return
		}
		var se *sendError
		if errors.As(err, &se) && !se.retry {
			log.Error("notification rejected by the receiver; not retried (fix the URL, token or format)", "attempt", attempt, "err", err)
			return
		}
		if attempt >= n.maxAttempts {
			log.Error("notification not delivered: giving up", "attempts", attempt, "err", err)
			return
		}
		wait := jitter(backoff(n.backoff, attempt))
		if se != nil && se.retryAfter > 0 {
			wait = min(se.retryAfter, MaxRetryAfter)
		}
		log.Warn("notification not delivered: retrying", "attempt", attempt, "maxAttempts", n.maxAttempts, "retryIn", wait, "err", err)
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-n.abort.Done():
			t.Stop()
			r.countLost()
			log.Warn("notification not delivered: shutting down", "attempt", attempt, "err", err)
			return
		}
	}
}

func (r *receiver) countLost() {
	r.mu.Lock()
	r.lost++
	r.mu.Unlock()
}

// sendError is an HTTP answer other than 2xx.
type sendError struct {
	status     int
	retry      bool
	retryAfter time.Duration
	body       string // the start of the receiver's answer: Slack says what is wrong there
}

func (e *sendError) Error() string {
	s := fmt.Sprintf("HTTP %d %s", e.status, http.StatusText(e.status))
	if e.body != "" {
		s += ": " + e.body
	}
	return s
}

// send makes one request. Its errors never contain the URL.
func (r *receiver) send(d *delivery) error {
	ctx, cancel := context.WithTimeout(r.n.abort, r.n.timeout)
	defer cancel()
	method, body := http.MethodGet, io.Reader(nil)
	if d.body != nil {
		method, body = http.MethodPost, bytes.NewReader(d.body)
	}
	req, err := http.NewRequestWithContext(ctx, method, r.url, body)
	if err != nil {
		return errors.New("cannot build the request") // New checked the URL; the error would quote it
	}
	req.Header.Set("User-Agent", "firedrill-notify")
	if d.body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := r.n.client.Do(req)
	if err != nil {
		return r.scrub(err)
	}
	defer resp.Body.Close()
	head, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // so the connection can be reused
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return nil
	}
	se := &sendError{status: resp.StatusCode, body: oneLine(string(head))}
	if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500 {
		se.retry = true
		se.retryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
	}
	return se
}

// scrub takes the URL out of a client error: url.Error quotes it, and it is a secret.
func (r *receiver) scrub(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	msg := err.Error()
	if strings.Contains(msg, r.url) {
		msg = strings.ReplaceAll(msg, r.url, r.name)
	}
	return errors.New(msg)
}

// parseRetryAfter reads delay-seconds or an HTTP-date; 0 when absent or unreadable.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(v); err == nil {
		if s < 0 {
			return 0
		}
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// backoff is first doubled for each attempt after the first, capped at MaxBackoff.
func backoff(first time.Duration, attempt int) time.Duration {
	d := first
	for i := 1; i < attempt && d < MaxBackoff; i++ {
		d *= 2
	}
	return min(d, MaxBackoff)
}

// jitter spreads d over [d/2, d] so that receivers coming back see no thundering herd.
func jitter(d time.Duration) time.Duration {
	if d <= 1 {
		return d
	}
	return d/2 + rand.N(d/2+1)
}

func oneLine(s string) string { return truncate(strings.Join(strings.Fields(s), " "), 200) }

// truncate keeps the first n runes of s, marking a cut with an ellipsis.
func truncate(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	return string([]rune(s)[:n]) + "…"
}
