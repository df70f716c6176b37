package testkit

import (
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

// Request is one request a Receiver got.
type Request struct {
	Method, Path string
	Body         []byte
	At           time.Time
}

// Receiver is a real HTTP server on loopback that records every request and answers 200: a
// webhook or heartbeat service for tests. It closes when the test ends.
type Receiver struct {
	*httptest.Server
	mu   sync.Mutex
	reqs []Request
}

func NewReceiver(tb testing.TB) *Receiver {
	r := &Receiver{}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		r.reqs = append(r.reqs, Request{Method: req.Method, Path: req.URL.Path, Body: body, At: time.Now()})
		r.mu.Unlock()
	}))
	tb.Cleanup(r.Close)
	return r
}

// Requests returns what was received so far, in order.
func (r *Receiver) Requests() []Request {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Request(nil), r.reqs...)
}
