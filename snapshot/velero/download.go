package velero

import (
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"sort"
	"strings"
	"time"

	velerov1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

func (c *Client) newDownloadRequest(ctx context.Context, kind velerov1.DownloadTargetKind, name string) (*velerov1.DownloadRequest, error) {
	labels, err := c.labels(nil)
	if err != nil {
		// A read needs no run of its own; the request still says who made it.
		labels = map[string]string{LabelManagedBy: ManagedBy}
	}
	dr := &velerov1.DownloadRequest{
		ObjectMeta: metav1.ObjectMeta{Namespace: c.namespace, GenerateName: "firedrill-" + strings.ToLower(string(kind)) + "-", Labels: labels, Annotations: c.annotations()},
		Spec:       velerov1.DownloadRequestSpec{Target: velerov1.DownloadTarget{Kind: kind, Name: name}},
	}
	if err := c.kube.Create(ctx, dr); err != nil {
		return nil, fmt.Errorf("create DownloadRequest in namespace %s: %w", c.namespace, err)
	}
	return dr, nil
}

// deleteDownloadRequest removes a request once used; Velero would only expire it after 10 minutes.
func (c *Client) deleteDownloadRequest(ctx context.Context, dr *velerov1.DownloadRequest) {
	cctx, cancel := cleanupContext(ctx)
	defer cancel()
	_ = c.kube.Delete(cctx, dr)
}

// download asks Velero for a signed URL to one of its files and streams it to read. It needs no
// bucket credentials, only that the object store's URL is reachable from here.
func (c *Client) download(ctx context.Context, kind velerov1.DownloadTargetKind, name string, read func(io.Reader) error) error {
	dr, err := c.newDownloadRequest(ctx, kind, name)
	if err != nil {
		return err
	}
	defer c.deleteDownloadRequest(ctx, dr)
	start := time.Now()
	var acked time.Time
	for dr.Status.Phase != velerov1.DownloadRequestPhaseProcessed || dr.Status.DownloadURL == "" {
		select {
		case <-ctx.Done():
			if acked.IsZero() {
				return &NotProcessingError{Namespace: c.namespace, What: "download requests",
					Detail: fmt.Sprintf("%s of %s not acknowledged within %s: %v", kind, name, time.Since(start).Round(time.Second), ctx.Err())}
			}
			return fmt.Errorf("download %s of %s: %w", kind, name, ctx.Err())
		case <-time.After(c.poll):
		}
		if err := c.kube.Get(ctx, client.ObjectKeyFromObject(dr), dr); err != nil {
			if ctx.Err() != nil {
				continue
			}
			return fmt.Errorf("read DownloadRequest %s: %w", dr.Name, err)
		}
		if dr.Status.Expiration != nil && acked.IsZero() {
			acked = time.Now()
		}
		if acked.IsZero() && time.Since(start) > c.probe {
			return &NotProcessingError{Namespace: c.namespace, What: "download requests",
				Detail: fmt.Sprintf("%s of %s not acknowledged within %s", kind, name, c.probe)}
		}
		if !acked.IsZero() && dr.Status.Phase != velerov1.DownloadRequestPhaseProcessed && time.Since(acked) > c.ackGrace {
			return fmt.Errorf("download %s of %s: Velero in namespace %s could not make a download URL "+
				"(does the %s exist and is its BackupStorageLocation Available? see the Velero server's log)", kind, name, c.namespace, targetObject(kind))
		}
	}

	req, err := http.NewRequestWithContext(ctx, http.MethodGet, dr.Status.DownloadURL, nil)
	if err != nil {
		return fmt.Errorf("download %s of %s: %w", kind, name, err)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("download %s of %s from %s: %w (firedrill must reach the object store at the URL Velero signs: "+
			"set publicUrl in the BackupStorageLocation's config if its s3Url is only reachable inside the cluster)", kind, name, redactURL(dr.Status.DownloadURL), err)
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return fmt.Errorf("download %s of %s: %w", kind, name, ErrNotInStorage)
	case resp.StatusCode != http.StatusOK:
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("download %s of %s from %s: HTTP %s: %s", kind, name, redactURL(dr.Status.DownloadURL), resp.Status, strings.TrimSpace(string(body)))
	}
	if err := read(resp.Body); err != nil {
		return fmt.Errorf("read %s of %s: %w", kind, name, err)
	}
	return nil
}

func targetObject(kind velerov1.DownloadTargetKind) string {
	if strings.HasPrefix(string(kind), "Restore") {
		return "restore"
	}
	return "backup"
}

// redactURL drops the signature from a signed URL: it is a credential for as long as it lives.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparseable URL)"
	}
	u.RawQuery = ""
	return u.String()
}

// downloadJSON fetches a gzip-compressed JSON file into v.
func (c *Client) downloadJSON(ctx context.Context, kind velerov1.DownloadTargetKind, name string, v any) error {
	return c.download(ctx, kind, name, func(r io.Reader) error {
		gz, err := gzip.NewReader(r)
		if err != nil {
			return err
		}
		defer gz.Close()
		return json.NewDecoder(gz).Decode(v)
	})
}

// Messages are Velero's warnings or errors of a backup or restore, grouped as Velero groups them.
type Messages struct {
	Velero     []string            `json:"velero,omitempty"`
	Cluster    []string            `json:"cluster,omitempty"`
	Namespaces map[string][]string `json:"namespaces,omitempty"`
}

// Count is the number of messages.
func (m Messages) Count() int {
	n := len(m.Velero) + len(m.Cluster)
	for _, v := range m.Namespaces {
		n += len(v)
	}
	return n
}

// First returns up to n messages, Velero's own first, then cluster-scoped, then by namespace.
func (m Messages) First(n int) []string {
	var out []string
	add := func(prefix string, msgs []string) {
		for _, s := range msgs {
			if len(out) >= n {
				return
			}
			out = append(out, prefix+tidyMessage(s))
		}
	}
	add("velero: ", m.Velero)
	add("cluster: ", m.Cluster)
	nss := make([]string, 0, len(m.Namespaces))
	for ns := range m.Namespaces {
		nss = append(nss, ns)
	}
	sort.Strings(nss)
	for _, ns := range nss {
		add("namespace "+ns+": ", m.Namespaces[ns])
	}
	return out
}

// loggedMessage is how Velero's log hook records a backup's errors and warnings:
// " resource: /pods name: /db message: /Skip pod volume data error: /daemonset pod not found".
var loggedMessage = regexp.MustCompile(`^\s*(?:resource: /(.*?))?\s*(?:name: /(.*?))?\s*message: /(.*?)(?:\s+error: /(.*))?$`)

// tidyMessage turns a logged message into "pods db: Skip pod volume data: daemonset pod not found";
// other messages are returned as they are.
func tidyMessage(s string) string {
	m := loggedMessage.FindStringSubmatch(s)
	if m == nil {
		return strings.TrimSpace(s)
	}
	var parts []string
	if obj := strings.TrimSpace(m[1] + " " + m[2]); obj != "" {
		parts = append(parts, obj)
	}
	for _, p := range m[3:] {
		if p = strings.TrimSpace(p); p != "" {
			parts = append(parts, p)
		}
	}
	return strings.Join(parts, ": ")
}

// Results are the errors and warnings Velero recorded for a backup or restore.
type Results struct {
	Errors   Messages `json:"errors"`
	Warnings Messages `json:"warnings"`
}

// BackupResults fetches the backup's errors and warnings (DownloadRequest BackupResults).
func (c *Client) BackupResults(ctx context.Context, backup string) (*Results, error) {
	var r Results
	if err := c.downloadJSON(ctx, velerov1.DownloadTargetKindBackupResults, backup, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// RestoreResults fetches the restore's errors and warnings (DownloadRequest RestoreResults).
func (c *Client) RestoreResults(ctx context.Context, restore string) (*Results, error) {
	var r Results
	if err := c.downloadJSON(ctx, velerov1.DownloadTargetKindRestoreResults, restore, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// ListedItem is one entry of a backup's or restore's resource list.
type ListedItem struct {
	// GroupVersionKind as Velero lists it: "v1/ConfigMap", "apps/v1/Deployment".
	GroupVersionKind string
	Namespace        string // empty for cluster-scoped items
	Name             string
	// Action is what the restore did: created, updated, skipped or failed. Empty for backups.
	Action string
}

// BackupResourceList lists what the backup holds (DownloadRequest BackupResourceList), sorted.
func (c *Client) BackupResourceList(ctx context.Context, backup string) ([]ListedItem, error) {
	var m map[string][]string
	if err := c.downloadJSON(ctx, velerov1.DownloadTargetKindBackupResourceList, backup, &m); err != nil {
		return nil, err
	}
	return parseResourceList(m), nil
}

// RestoredItems lists what the restore did with each item (DownloadRequest RestoreResourceList),
// namespaces as restored (mapped), sorted.
func (c *Client) RestoredItems(ctx context.Context, restore string) ([]ListedItem, error) {
	var m map[string][]string
	if err := c.downloadJSON(ctx, velerov1.DownloadTargetKindRestoreResourceList, restore, &m); err != nil {
		return nil, err
	}
	return parseResourceList(m), nil
}

// parseResourceList reads Velero's {"apps/v1/Deployment": ["ns/name(created)", "name", ...]}.
func parseResourceList(m map[string][]string) []ListedItem {
	var out []ListedItem
	for gvk, entries := range m {
		for _, e := range entries {
			it := ListedItem{GroupVersionKind: gvk}
			if i := strings.LastIndexByte(e, '('); i > 0 && strings.HasSuffix(e, ")") {
				it.Action = e[i+1 : len(e)-1]
				e = e[:i]
			}
			if ns, name, ok := strings.Cut(e, "/"); ok {
				it.Namespace, it.Name = ns, name
			} else {
				it.Name = e
			}
			out = append(out, it)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.GroupVersionKind != b.GroupVersionKind {
			return a.GroupVersionKind < b.GroupVersionKind
		}
		if a.Namespace != b.Namespace {
			return a.Namespace < b.Namespace
		}
		return a.Name < b.Name
	})
	return out
}

// Namespaces returns the distinct namespaces of items, sorted.
func Namespaces(items []ListedItem) []string {
	seen := map[string]bool{}
	var out []string
	for _, it := range items {
		ns := it.Namespace
		if it.GroupVersionKind == "v1/Namespace" {
			ns = it.Name
		}
		if ns != "" && !seen[ns] {
			seen[ns] = true
			out = append(out, ns)
		}
	}
	sort.Strings(out)
	return out
}
