package velero

import (
	"context"
	"fmt"
	"net/http"
	"time"

	velerov1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Labels firedrill puts on everything it creates, here and in scratch namespaces, and the
// annotation saying when the janitor may remove it (as scratch/ writes them).
const (
	LabelManagedBy    = "app.kubernetes.io/managed-by"
	ManagedBy         = "firedrill"
	LabelRun          = "firedrill.dev/run"
	AnnotationExpires = "firedrill.dev/expires"
	// LabelDeleteAfter marks a Backup made for a drill with deleteAfter: the only backups the
	// janitor deletes.
	LabelDeleteAfter = "firedrill.dev/delete-after"
)

// DefaultNamespace is where Velero runs unless told otherwise.
const DefaultNamespace = "velero"

// Client talks to the Velero server of one cluster through its custom resources.
type Client struct {
	kube      client.Client
	namespace string
	runID     string
	expires   time.Time // zero: what it creates has no expiry annotation
	http      *http.Client

	// poll is how often waits re-read status; stall how long a status may stay unchanged before
	// Velero is asked whether it is alive; probe how long it has to answer.
	poll, stall, probe time.Duration
	// ackGrace: how long a DownloadRequest Velero acknowledged may stay unprocessed before the
	// download is given up (Velero acknowledges, then fails to make a URL, e.g. a missing backup).
	ackGrace time.Duration
}

// New returns a Client for the Velero server in namespace (DefaultNamespace when empty) of the
// cluster cfg reaches. It does not contact the cluster.
func New(cfg *rest.Config, namespace string) (*Client, error) {
	if cfg == nil {
		return nil, fmt.Errorf("%w: no cluster configuration", ErrUsage)
	}
	if namespace == "" {
		namespace = DefaultNamespace
	}
	sc := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(sc); err != nil {
		return nil, err
	}
	if err := velerov1.AddToScheme(sc); err != nil {
		return nil, err
	}
	kc, err := client.New(cfg, client.Options{Scheme: sc})
	if err != nil {
		return nil, fmt.Errorf("velero client for %s: %w", cfg.Host, err)
	}
	return &Client{
		kube:      kc,
		namespace: namespace,
		// Signed URLs point at the object store, not the API server: plain HTTP(S), no cluster auth.
		http:     &http.Client{Transport: http.DefaultTransport},
		poll:     250 * time.Millisecond,
		stall:    15 * time.Second,
		probe:    15 * time.Second,
		ackGrace: 10 * time.Second,
	}, nil
}

// ForRun returns a copy of c that labels what it creates with runID (LabelRun). Creating backups,
// restores and requests needs one.
func (c *Client) ForRun(runID string) *Client {
	cp := *c
	cp.runID = runID
	return &cp
}

// Expiring returns a copy of c that annotates what it creates with AnnotationExpires at t: when
// the run that made it is over and the janitor may remove it.
func (c *Client) Expiring(t time.Time) *Client {
	cp := *c
	cp.expires = t
	return &cp
}

// annotations are what c puts on what it creates: the expiry, when it has one.
func (c *Client) annotations() map[string]string {
	if c.expires.IsZero() {
		return nil
	}
	return map[string]string{AnnotationExpires: c.expires.UTC().Format(time.RFC3339)}
}

// Namespace is Velero's namespace.
func (c *Client) Namespace() string { return c.namespace }

// RunID is the run this client labels objects with.
func (c *Client) RunID() string { return c.runID }

// labels returns firedrill's labels merged over extra.
func (c *Client) labels(extra map[string]string) (map[string]string, error) {
	if c.runID == "" {
		return nil, fmt.Errorf("%w: no run id: use Client.ForRun", ErrUsage)
	}
	l := make(map[string]string, len(extra)+2)
	for k, v := range extra {
		l[k] = v
	}
	l[LabelManagedBy] = ManagedBy
	l[LabelRun] = c.runID
	return l, nil
}

func ours(o metav1.Object) bool { return o.GetLabels()[LabelManagedBy] == ManagedBy }

// cleanupContext bounds cleanup that must happen even when ctx was cancelled.
func cleanupContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
}

// status is what a wait looks at.
type status struct {
	phase       string
	done, total int
	terminal    bool
}

// waitFor re-reads get until it reports a terminal status. progress sees every change of the
// counts. When nothing changed for c.stall, Velero must acknowledge a DownloadRequest about
// probeBackup within c.probe, or the wait ends with a *NotProcessingError.
func (c *Client) waitFor(ctx context.Context, kind, name, what, probeBackup string,
	get func(context.Context) (status, error), progress func(done, total int)) (status, error) {
	start := time.Now()
	lastChange, lastProbe := start, start
	alive := false
	var last status
	first := true
	tick := time.NewTicker(c.poll)
	defer tick.Stop()
	for {
		st, err := get(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return last, c.notFinished(ctx, kind, name, last, start, lastChange, alive)
			}
			return last, err
		}
		if first || st != last {
			if progress != nil && (first || st.done != last.done || st.total != last.total) {
				progress(st.done, st.total)
			}
			last, first = st, false
			lastChange = time.Now()
		}
		if st.terminal {
			return st, nil
		}
		now := time.Now()
		if now.Sub(lastChange) >= c.stall && now.Sub(lastProbe) >= c.stall {
			lastProbe = now
			ok, err := c.ping(ctx, probeBackup)
			switch {
			case err != nil && ctx.Err() != nil:
				return last, c.notFinished(ctx, kind, name, last, start, lastChange, alive)
			case err != nil:
				return last, err
			case !ok:
				at := ""
				if last.total > 0 {
					at = fmt.Sprintf(" at %d of %d items", last.done, last.total)
				}
				detail := fmt.Sprintf("%s %s/%s has stayed %s%s for %s, and Velero did not acknowledge a DownloadRequest within %s",
					kind, c.namespace, name, phaseOrNew(last.phase), at, time.Since(lastChange).Round(time.Second), c.probe)
				return last, &NotProcessingError{Namespace: c.namespace, What: what, Detail: detail}
			}
			alive = true
		}
		select {
		case <-ctx.Done():
			return last, c.notFinished(ctx, kind, name, last, start, lastChange, alive)
		case <-tick.C:
		}
	}
}

func (c *Client) notFinished(ctx context.Context, kind, name string, st status, start, lastChange time.Time, alive bool) error {
	return &NotFinishedError{Namespace: c.namespace, Kind: kind, Name: name, Phase: st.phase, Done: st.done, Total: st.total,
		Elapsed: time.Since(start), SinceChange: time.Since(lastChange), VeleroAlive: alive, Err: ctx.Err()}
}

func phaseOrNew(p string) string {
	if p == "" {
		return "New"
	}
	return p
}

// Ping checks that the Velero server is running: it must acknowledge a DownloadRequest within
// 15 seconds. Velero logs one "fail to get backup for DownloadRequest" line per ping.
func (c *Client) Ping(ctx context.Context) error {
	ok, err := c.ping(ctx, "firedrill-ping")
	if err != nil {
		return fmt.Errorf("ping velero: %w", err)
	}
	if !ok {
		return &NotProcessingError{Namespace: c.namespace, What: "requests",
			Detail: fmt.Sprintf("it did not acknowledge a DownloadRequest within %s", c.probe)}
	}
	return nil
}

// ping creates a DownloadRequest and reports whether Velero touched it within c.probe. Velero
// sets status.expiration on every request it reconciles, even one it cannot serve, so an
// acknowledgement proves the server runs whatever state the backup is in.
func (c *Client) ping(ctx context.Context, backup string) (bool, error) {
	dr, err := c.newDownloadRequest(ctx, velerov1.DownloadTargetKindBackupLog, backup)
	if err != nil {
		return false, err
	}
	defer c.deleteDownloadRequest(ctx, dr)
	pctx, cancel := context.WithTimeout(ctx, c.probe)
	defer cancel()
	for {
		if err := c.kube.Get(pctx, client.ObjectKeyFromObject(dr), dr); err != nil && !apierrors.IsNotFound(err) {
			if pctx.Err() != nil && ctx.Err() == nil {
				return false, nil
			}
			return false, err
		}
		if dr.Status.Expiration != nil || dr.Status.Phase == velerov1.DownloadRequestPhaseProcessed {
			return true, nil
		}
		select {
		case <-pctx.Done():
			if ctx.Err() != nil {
				return false, ctx.Err()
			}
			return false, nil
		case <-time.After(c.poll):
		}
	}
}

// get reads one object of Velero's namespace.
func (c *Client) get(ctx context.Context, name string, obj client.Object) error {
	return c.kube.Get(ctx, client.ObjectKey{Namespace: c.namespace, Name: name}, obj)
}

// isGone reports whether err says the object does not exist.
func isGone(err error) bool { return apierrors.IsNotFound(err) }
