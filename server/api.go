package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/firedrill-dev/firedrill/drill"
	"github.com/firedrill-dev/firedrill/drill/history"
	"github.com/firedrill-dev/firedrill/drill/schedule"
)

// ScenarioJSON is one scenario in GET /api/v1/scenarios.
type ScenarioJSON struct {
	Name     string `json:"name"`
	File     string `json:"file"`
	Schedule string `json:"schedule,omitempty"`
	TimeZone string `json:"timeZone,omitempty"`
	// IntervalSeconds is the time between two scheduled runs around now; 0 without a schedule.
	IntervalSeconds float64    `json:"intervalSeconds,omitempty"`
	NextRun         *time.Time `json:"nextRun,omitempty"` // absent when not scheduled or not the leader
	// Running is the id of the run in flight, if any.
	Running string            `json:"running,omitempty"`
	Queued  int               `json:"queued"`
	Error   string            `json:"error,omitempty"` // why the file's current content is not used
	Labels  map[string]string `json:"labels,omitempty"`
	// The newest run in the history, of any result.
	LastResult drill.Result `json:"lastResult,omitempty"`
	LastRunAt  *time.Time   `json:"lastRunAt,omitempty"`
	LastRunID  string       `json:"lastRunID,omitempty"`
}

// ScenariosJSON is the body of GET /api/v1/scenarios.
type ScenariosJSON struct {
	Scenarios []ScenarioJSON `json:"scenarios"`
	// Leader says whether this replica schedules; NextRun is only known on the leader.
	Leader bool `json:"leader"`
}

// RunsJSON is the body of GET /api/v1/runs: records newest first; Next, when set, is the
// cursor parameter that fetches the following page.
type RunsJSON struct {
	Runs []drill.Record `json:"runs"`
	Next string         `json:"next,omitempty"`
}

// TriggeredJSON is the body of a 202 from POST /api/v1/scenarios/{name}/runs.
type TriggeredJSON struct {
	ID       string `json:"id"`
	Scenario string `json:"scenario"`
	// URL is where the run's record will be (GET; 404 until the run has begun).
	URL string `json:"url"`
}

// ErrorJSON is the body of every API error.
type ErrorJSON struct {
	Error string `json:"error"`
}

func (s *server) apiScenarios(w http.ResponseWriter, r *http.Request) {
	st := s.scenarioStatus()
	out := ScenariosJSON{Scenarios: make([]ScenarioJSON, 0, len(st)), Leader: s.leader()}
	for _, sc := range st {
		j := ScenarioJSON{
			Name: sc.Name, File: sc.File, Schedule: sc.Schedule, TimeZone: sc.TimeZone,
			IntervalSeconds: sc.Interval.Seconds(), Running: sc.Running, Queued: sc.Queued,
			Error: sc.Err, Labels: sc.Labels,
		}
		if !sc.NextRun.IsZero() {
			j.NextRun = &sc.NextRun
		}
		last, err := s.opts.Runs.List(r.Context(), history.Filter{Scenario: sc.Name, Limit: 1})
		if err != nil {
			s.apiError(w, http.StatusInternalServerError, fmt.Errorf("read the history: %w; check the history store and the serve log", err))
			return
		}
		if len(last) == 1 {
			j.LastResult, j.LastRunID = last[0].Result, last[0].ID
			j.LastRunAt = &last[0].StartedAt
		}
		out.Scenarios = append(out.Scenarios, j)
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *server) scenarioStatus() []schedule.Status {
	if s.opts.Scheduler == nil {
		return nil
	}
	return s.opts.Scheduler.Scenarios()
}

func (s *server) apiRuns(w http.ResponseWriter, r *http.Request) {
	q, err := parseRunQuery(r.URL.Query(), s.now())
	if err != nil {
		s.apiError(w, http.StatusBadRequest, err)
		return
	}
	runs, next, err := s.listRuns(r.Context(), q)
	if err != nil {
		s.apiError(w, http.StatusInternalServerError, fmt.Errorf("%w; check the history store and the serve log", err))
		return
	}
	if runs == nil {
		runs = []drill.Record{}
	}
	writeJSON(w, http.StatusOK, RunsJSON{Runs: runs, Next: next})
}

// listRuns returns one page and the cursor of the next ("" on the last page).
func (s *server) listRuns(ctx context.Context, q runQuery) ([]drill.Record, string, error) {
	f := q.Filter
	f.Limit++ // one more tells whether there is a next page
	runs, err := s.opts.Runs.List(ctx, f)
	if err != nil {
		return nil, "", err
	}
	next := ""
	if len(runs) > q.Limit {
		runs = runs[:q.Limit]
		next = encodeCursor(q.Offset + q.Limit)
	}
	return runs, next, nil
}

func (s *server) apiRun(w http.ResponseWriter, r *http.Request) {
	rec, status, err := s.getRun(r.Context(), r.PathValue("id"))
	if status == http.StatusNotFound {
		err = fmt.Errorf("%w; list runs with GET /api/v1/runs", err)
	}
	if err != nil {
		s.apiError(w, status, err)
		return
	}
	writeJSON(w, http.StatusOK, rec)
}

// getRun maps the history's errors to HTTP statuses; callers add where to look next.
func (s *server) getRun(ctx context.Context, id string) (*drill.Record, int, error) {
	rec, err := s.opts.Runs.Get(ctx, id)
	switch {
	case errors.Is(err, history.ErrNotFound):
		return nil, http.StatusNotFound, err
	case errors.Is(err, history.ErrAmbiguous):
		return nil, http.StatusConflict, err
	case err != nil:
		return nil, http.StatusInternalServerError, fmt.Errorf("%w; check the history store and the serve log", err)
	}
	return rec, http.StatusOK, nil
}

// triggerRequest is the optional JSON body of POST /api/v1/scenarios/{name}/runs.
type triggerRequest struct {
	// Operator names who asked; it goes into the record as operator@client-address.
	Operator string `json:"operator"`
}

func (s *server) apiTrigger(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	var req triggerRequest
	if err := decodeOptionalJSON(w, r, &req); err != nil {
		s.apiError(w, http.StatusBadRequest, err)
		return
	}
	operator := operatorOf(req.Operator, r)
	if s.opts.Scheduler == nil {
		s.apiError(w, http.StatusServiceUnavailable, errors.New("this server has no scheduler to start runs; see the serve log"))
		return
	}
	// The drill outlives this request: a client that hangs up must not abort it.
	id, err := s.opts.Scheduler.Trigger(context.WithoutCancel(r.Context()), name, operator)
	switch {
	case errors.Is(err, schedule.ErrUnknownScenario):
		s.apiError(w, http.StatusNotFound, fmt.Errorf("scenario %q: %w; list scenarios with GET /api/v1/scenarios", name, err))
		return
	case errors.Is(err, schedule.ErrBusy):
		s.apiError(w, http.StatusConflict, fmt.Errorf("scenario %q: %w; wait for it to finish (GET /api/v1/scenarios shows it) and try again", name, err))
		return
	case err != nil:
		s.apiError(w, http.StatusInternalServerError, fmt.Errorf("trigger scenario %q: %w; see the serve log", name, err))
		return
	}
	s.log.Info("run triggered through the API", "scenario", name, "run", id, "operator", operator)
	url := "/api/v1/runs/" + id
	w.Header().Set("Location", url)
	writeJSON(w, http.StatusAccepted, TriggeredJSON{ID: id, Scenario: name, URL: url})
}

// operatorOf names the caller as given (or "api") at its address, so that the record says
// who asked and from where.
func operatorOf(given string, r *http.Request) string {
	given = strings.Map(func(c rune) rune {
		if c < 0x20 || c == 0x7f {
			return -1
		}
		return c
	}, strings.TrimSpace(given))
	if given == "" {
		given = "api"
	}
	if len([]rune(given)) > 64 {
		given = string([]rune(given)[:64])
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil || host == "" {
		return given
	}
	return given + "@" + host
}

// decodeOptionalJSON reads a small JSON body into v; an empty body leaves v alone.
func decodeOptionalJSON(w http.ResponseWriter, r *http.Request, v any) error {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 4096))
	if err != nil {
		return fmt.Errorf("read the request body: %w (it may be at most 4 KiB of JSON)", err)
	}
	if len(strings.TrimSpace(string(body))) == 0 {
		return nil
	}
	if ct := r.Header.Get("Content-Type"); ct != "" {
		if mt, _, _ := mime.ParseMediaType(ct); mt != "application/json" {
			return fmt.Errorf("request body is %s: send application/json, or no body", mt)
		}
	}
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("request body: %w; want {\"operator\": \"name\"} or no body", err)
	}
	return nil
}

func (s *server) apiNotFound(w http.ResponseWriter, r *http.Request) {
	s.apiError(w, http.StatusNotFound, fmt.Errorf("no API route %s %s: the API has GET /api/v1/scenarios, GET /api/v1/runs, GET /api/v1/runs/{id} and POST /api/v1/scenarios/{name}/runs", r.Method, r.URL.Path))
}

func (s *server) apiError(w http.ResponseWriter, status int, err error) {
	if status >= 500 {
		s.log.Error("API request failed", "status", status, "error", err)
	}
	writeJSON(w, status, ErrorJSON{Error: err.Error()})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v) // the status is out; a broken connection has no one to tell
}
