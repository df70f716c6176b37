// Package server is `firedrill serve`'s HTTP side: the JSON API, the dashboard, /metrics,
// /healthz and /readyz.
//
// CONTRACT (issue 5): the service package is written against the exported names below; the
// helper implementing the package may add to them but not change them.
package server

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/firedrill-dev/firedrill/drill"
	"github.com/firedrill-dev/firedrill/drill/history"
	"github.com/firedrill-dev/firedrill/drill/schedule"
)

// Runs is what the server reads from the history (drill/history.Store, or the Spool's store).
type Runs interface {
	List(ctx context.Context, f history.Filter) ([]drill.Record, error)
	Get(ctx context.Context, idOrPrefix string) (*drill.Record, error)
}

// Scheduler is what the server needs from drill/schedule.
type Scheduler interface {
	Scenarios() []schedule.Status
	Trigger(ctx context.Context, name, operator string) (string, error)
}

// Options configure the handler.
type Options struct {
	Runs      Runs
	Scheduler Scheduler
	// Token is the bearer token writes need; "" disables writes (they answer 403 and say how
	// to enable them).
	Token string
	// ReadToken, when set, makes every read need it (or Token): the API, the dashboard and run
	// evidence answer 401 without "Authorization: Bearer <token>" or the session cookie that
	// logging in at /login sets. /healthz, /readyz, /metrics (no evidence there), /static/ and
	// /login stay open. "": reads are open.
	ReadToken string
	// Gatherer serves /metrics (the registry Metrics registered with).
	Gatherer prometheus.Gatherer
	// Ready reports whether the process can serve (history reachable, scenarios loaded); nil
	// means always ready. /readyz answers 503 with its error.
	Ready func(ctx context.Context) error
	// Leader reports whether this replica schedules (shown on the dashboard); nil means true.
	Leader func() bool
	Logger *slog.Logger
	// Version is shown in the dashboard footer.
	Version string

	// TrendRuns is how many of a scenario's newest runs the dashboard's pass rate and RTO trend
	// cover; default 20.
	TrendRuns int
	// Now is the clock for "in 3h" and "5m ago" on the dashboard; default time.Now.
	Now func() time.Time
}

// server holds the handler's dependencies; every route is a method.
type server struct {
	opts  Options
	log   *slog.Logger
	now   func() time.Time
	pages *pages
}

// New returns the handler for every route.
//
// Routes: GET /api/v1/scenarios, GET /api/v1/runs, GET /api/v1/runs/{id},
// POST /api/v1/scenarios/{name}/runs (bearer token), GET /healthz, /readyz, /metrics, and the
// dashboard: GET /, /runs, /runs/{id}, /static/, with GET and POST /login and POST /logout for
// a session when reads need a token.
func New(opts Options) http.Handler {
	if opts.TrendRuns <= 0 {
		opts.TrendRuns = 20
	}
	s := &server{opts: opts, log: opts.Logger, now: opts.Now, pages: loadPages()}
	if s.log == nil {
		s.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if s.now == nil {
		s.now = time.Now
	}

	mux := http.NewServeMux()
	api := func(method, path string, h http.HandlerFunc) {
		mux.HandleFunc(method+" "+path, h)
		// Without this, another method on the path would fall through to /api/'s 404.
		mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Allow", method)
			s.apiError(w, http.StatusMethodNotAllowed, fmt.Errorf("%s %s: use %s", r.Method, r.URL.Path, method))
		})
	}
	read := func(h http.HandlerFunc) http.HandlerFunc { return s.requireRead(false, h) }
	page := func(h http.HandlerFunc) http.HandlerFunc { return s.requireRead(true, h) }
	api("GET", "/api/v1/scenarios", read(s.apiScenarios))
	api("GET", "/api/v1/runs", read(s.apiRuns))
	api("GET", "/api/v1/runs/{id}", read(s.apiRun))
	api("POST", "/api/v1/scenarios/{name}/runs", s.requireToken(s.apiTrigger))
	mux.HandleFunc("/api/", s.apiNotFound)

	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /readyz", s.readyz)
	gatherer := opts.Gatherer
	if gatherer == nil {
		gatherer = prometheus.NewRegistry() // an empty page beats a panic when serve passed none
	}
	mux.Handle("GET /metrics", promhttp.HandlerFor(gatherer, promhttp.HandlerOpts{ErrorLog: slogPrinter{s.log}}))

	mux.HandleFunc("GET /{$}", page(s.dashboard))
	mux.HandleFunc("GET /runs", page(s.runsPage))
	mux.HandleFunc("GET /runs/{id}", page(s.runPage))
	mux.Handle("GET /static/", http.FileServerFS(staticFS))
	mux.HandleFunc("GET /login", s.getLogin)
	mux.HandleFunc("POST /login", s.postLogin)
	mux.HandleFunc("POST /logout", s.postLogout)
	return securityHeaders(mux)
}

func (s *server) readyz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if s.opts.Ready != nil {
		if err := s.opts.Ready(r.Context()); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			io.WriteString(w, "not ready: "+err.Error()+"\n")
			return
		}
	}
	io.WriteString(w, "ok\n")
}

func (s *server) leader() bool {
	return s.opts.Leader == nil || s.opts.Leader()
}

// securityHeaders keeps the pages from being framed (clickjacking the run-now button) and
// scripts to our own origin.
func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'; form-action 'self'")
		next.ServeHTTP(w, r)
	})
}

// slogPrinter lets promhttp log through slog.
type slogPrinter struct{ log *slog.Logger }

func (p slogPrinter) Println(v ...any) { p.log.Error("serve /metrics", "error", v) }
