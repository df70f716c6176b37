package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/firedrill-dev/firedrill/api/v1alpha1"
	"github.com/firedrill-dev/firedrill/drill"
	"github.com/firedrill-dev/firedrill/drill/jobexec"
	"github.com/firedrill-dev/firedrill/internal/testkit"
	"github.com/firedrill-dev/firedrill/sandbox"
	"github.com/firedrill-dev/firedrill/sandbox/sandboxtest"
)

// TestServeExecutorJob: `serve --executor job` runs each drill as a Job of firedrill's own image
// on the sandbox's real node, and stores what the Job's log carries in its own history:
//   - a scheduled run and a DrillRun of a Scenario resource pass as Jobs; the DrillRun's status
//     names the history's record hash;
//   - an etcd drill passes, and its record is in a hash chain `history verify` accepts;
//   - the pod deleted mid-drill: the run is aborted with the reason, the janitor removes what
//     the run left at once (a scratch namespace of the run's), and the next run passes;
//   - a scenario naming a ServiceAccount that does not exist: aborted, naming it;
//   - a drill past its memory limit: aborted, OOMKilled, naming the limit;
//   - serve stopped past its grace: the Job deleted, the pod's aborted record stored.
func TestServeExecutorJob(t *testing.T) {
	sb, kubectl, ns, endpoint, slow := jobsSandbox(t, "fdjobs")

	dir := t.TempDir()
	scenarioFile := func(name, extra string) {
		doc := etcdScenario(name, "", []string{endpoint}, "", false) + extra
		if err := os.WriteFile(filepath.Join(dir, name+".yaml"), []byte(doc), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	scenarioFile("job-etcd", "")
	scenarioFile("job-no-sa", "  runner: {serviceAccountName: nobody-here}\n")
	scenarioFile("job-oom", "  runner: {resources: {limits: {memory: 10Mi}}}\n")

	// A Scenario resource with a schedule, for a scheduled run and a DrillRun as Jobs.
	kubectl(etcdScenario("job-cluster", "@every 15s", []string{endpoint}, "{team: platform}", false), "-n", ns, "apply", "-f", "-")

	hist := filepath.Join(t.TempDir(), "history.db")
	env := []string{"FIREDRILL_HISTORY=" + hist, "TMPDIR=" + t.TempDir(), "FIREDRILL_TOKEN=job-token", "FIREDRILL_SCENARIOS="}
	p := startServe(t, env, "--scenarios", dir, "--scenarios-from", "files,cluster", "--scenarios-namespace", ns,
		"--kubeconfig", sb.Kubeconfig(), "--executor", "job",
		"--job-image", sandbox.FiredrillImage, "--job-namespace", ns, "--janitor-interval", "1h", "--shutdown-grace", "5s")

	// 0. A scheduled run and a DrillRun of a Scenario resource run as Jobs and pass; the
	// DrillRun's status names the history's record hash. Then the Scenario goes.
	var sched drill.Record
	testkit.EventuallyTrue(t, 3*time.Minute, "a scheduled run of job-cluster passes as a Job", func() bool {
		for _, r := range p.runs("job-cluster") {
			if r.Trigger == "schedule" && r.Result != drill.Running {
				sched = r
				return true
			}
		}
		return false
	})
	if sched.Result != drill.Passed || jobPodHost(t, kubectl, ns, sched.ID) != sched.Runner.Host {
		t.Errorf("scheduled run %s: %s %q, runner %+v", sched.ID, sched.Result, sched.Message, sched.Runner)
	}
	created := strings.TrimSpace(kubectl("apiVersion: firedrill.dev/v1alpha1\nkind: DrillRun\nmetadata: {generateName: job-cluster-}\nspec: {scenarioRef: {name: job-cluster}, labels: {change: CHG-1}}\n",
		"-n", ns, "create", "-f", "-", "-o", "name"))
	kubectl("", "-n", ns, "wait", "--for=condition=Complete", "--timeout=5m", created)
	var dr v1alpha1.DrillRun
	if err := json.Unmarshal([]byte(kubectl("", "-n", ns, "get", created, "-o", "json")), &dr); err != nil {
		t.Fatal(err)
	}
	adhoc := waitRun(t, p, dr.Status.RunID, time.Minute)
	if dr.Status.Result != "passed" || dr.Status.RecordHash == "" || dr.Status.RecordHash != adhoc.Hash || adhoc.Trigger != "drillrun" ||
		adhoc.Labels["change"] != "CHG-1" || jobPodHost(t, kubectl, ns, adhoc.ID) != adhoc.Runner.Host {
		t.Errorf("DrillRun %s: %+v; its record %s: %s, hash %s, trigger %s, labels %v, runner %+v", created, dr.Status, adhoc.ID, adhoc.Result, adhoc.Hash, adhoc.Trigger, adhoc.Labels, adhoc.Runner)
	}
	kubectl("", "-n", ns, "delete", "scenario", "job-cluster")
	testkit.EventuallyTrue(t, 5*time.Minute, "job-cluster unscheduled, with no run in flight", func() bool {
		for _, r := range p.runs("job-cluster") {
			if r.Result == drill.Running {
				return false
			}
		}
		var body struct{ Scenarios []scenarioStatus }
		p.getJSON("/api/v1/scenarios", &body)
		return !slices.ContainsFunc(body.Scenarios, func(s scenarioStatus) bool { return s.Name == "job-cluster" })
	})
	trigger := func(name string) string {
		t.Helper()
		code, body := p.request("POST", "/api/v1/scenarios/"+name+"/runs", "job-token")
		var r struct{ ID string }
		if code != http.StatusAccepted || json.Unmarshal(body, &r) != nil {
			t.Fatalf("trigger %s: %d %s", name, code, body)
		}
		return r.ID
	}

	// 1. A drill as a Job passes; the history holds it as serve stored it.
	id := trigger("job-etcd")
	rec := waitRun(t, p, id, 5*time.Minute)
	if rec.Result != drill.Passed || rec.Hash == "" || len(rec.Checks) != 3 {
		t.Fatalf("run %s as a Job: %s %q, hash %q, %d checks", id, rec.Result, rec.Message, rec.Hash, len(rec.Checks))
	}
	if rec.Runner.Host != jobPodHost(t, kubectl, ns, id) {
		t.Errorf("the record's runner %+v is not the Job's pod", rec.Runner)
	}
	if got := kubectl("", "-n", ns, "get", "job", jobexec.JobName(id), "-o", "jsonpath={.spec.backoffLimit} {.spec.ttlSecondsAfterFinished} {.metadata.labels.firedrill\\.dev/scenario}"); got != "0 3600 job-etcd" {
		t.Errorf("the Job: backoffLimit, ttl, scenario label = %q", got)
	}

	// 2. The pod deleted mid-drill, gracefully (it cleans up and records aborted itself) and by
	// force (it dies without a final record): aborted with the reason, what the run left removed
	// at once.
	slow.Store(true)
	for _, del := range [][]string{{"--wait=false"}, {"--grace-period=0", "--force"}} {
		id = trigger("job-etcd")
		var pod string
		testkit.EventuallyTrue(t, 3*time.Minute, "the drill's pod runs", func() bool {
			pod = strings.TrimSpace(kubectl("", "-n", ns, "get", "pods", "-l", jobexec.LabelRunID+"="+id,
				"--field-selector=status.phase=Running", "-o", "jsonpath={.items[*].metadata.name}"))
			return pod != ""
		})
		leftover := "drill-" + id + "-left"
		kubectl(fmt.Sprintf(`apiVersion: v1
kind: Namespace
metadata:
  name: %s
  labels: {app.kubernetes.io/managed-by: firedrill, firedrill.dev/run: %q}
  annotations: {firedrill.dev/expires: %q}
`, leftover, id, time.Now().Add(24*time.Hour).UTC().Format(time.RFC3339)), "apply", "-f", "-")
		t.Cleanup(func() { runKubectl(sb, "delete", "namespace", leftover, "--ignore-not-found", "--wait=false")("") })
		kubectl("", append([]string{"-n", ns, "delete", "pod", pod}, del...)...)
		rec = waitRun(t, p, id, 8*time.Minute)
		if rec.Result != drill.Aborted || !strings.Contains(rec.Message, "pod") || rec.Hash == "" {
			t.Errorf("run %s whose pod was deleted (%s): %s %q (hash %q); want aborted, saying the pod went", id, del, rec.Result, rec.Message, rec.Hash)
		}
		t.Logf("pod deleted mid-drill (%s): %s: %s", strings.Join(del, " "), rec.Result, rec.Message)
		if del[0] == "--wait=false" && !strings.Contains(rec.Message, "SIGTERM") {
			// Deleted gracefully, the pod stops its drill, cleans up and records that itself; its
			// record must reach the history before the pod and its log are gone.
			t.Errorf("run %s whose pod was deleted gracefully: %q; want the pod's own record (interrupted by SIGTERM, cleanup ran)", id, rec.Message)
		}
		testkit.EventuallyTrue(t, 2*time.Minute, "the janitor removes the aborted run's namespace", func() bool {
			out, err := runKubectl(sb, "get", "namespace", leftover, "-o", "jsonpath={.status.phase}")("")
			return err != nil && strings.Contains(out, "NotFound") || out == "Terminating"
		})
	}
	slow.Store(false)
	id = trigger("job-etcd")
	if rec = waitRun(t, p, id, 5*time.Minute); rec.Result != drill.Passed {
		t.Errorf("the run after the aborted one: %s %q", rec.Result, rec.Message)
	}

	// 3. A ServiceAccount that does not exist: aborted, naming it; its Job deleted.
	id = trigger("job-no-sa")
	rec = waitRun(t, p, id, 3*time.Minute)
	if rec.Result != drill.Aborted || !strings.Contains(rec.Message, `"nobody-here"`) || !strings.Contains(rec.Message, "ServiceAccount does not exist") {
		t.Errorf("run %s under a missing ServiceAccount: %s %q", id, rec.Result, rec.Message)
	}
	t.Logf("missing ServiceAccount: %s: %s", rec.Result, rec.Message)
	testkit.EventuallyTrue(t, time.Minute, "the dead Job is deleted", func() bool {
		out, _ := runKubectl(sb, "-n", ns, "get", "job", jobexec.JobName(id))("")
		return strings.Contains(out, "NotFound")
	})

	// 4. A drill past its memory limit: OOMKilled, said with the limit and what to raise.
	id = trigger("job-oom")
	rec = waitRun(t, p, id, 5*time.Minute)
	if rec.Result != drill.Aborted || !strings.Contains(rec.Message, "OOMKilled (limit 10Mi): raise spec.runner.resources.limits.memory") {
		t.Errorf("run %s past its memory limit: %s %q", id, rec.Result, rec.Message)
	}
	t.Logf("past its memory limit: %s: %s", rec.Result, rec.Message)

	// 5. serve stopped while a drill runs, past its grace: it deletes the Job, whose pod cleans
	// up and records aborted, and serve stores that before it exits.
	slow.Store(true)
	id = trigger("job-etcd")
	testkit.EventuallyTrue(t, 3*time.Minute, "the drill's pod runs", func() bool {
		return strings.TrimSpace(kubectl("", "-n", ns, "get", "pods", "-l", jobexec.LabelRunID+"="+id,
			"--field-selector=status.phase=Running", "-o", "name")) != ""
	})
	if code := p.stop(syscall.SIGTERM, 8*time.Minute); code != 0 {
		t.Errorf("serve exited %d", code)
	}
	if out, _ := runKubectl(sb, "-n", ns, "get", "job", jobexec.JobName(id))(""); !strings.Contains(out, "NotFound") {
		t.Errorf("the Job of a run in flight at shutdown is still there: %s", out)
	}
	show := firedrill(t, []string{"FIREDRILL_HISTORY=" + hist}, "show", id, "-o", "json")
	rec = drill.Record{}
	if err := json.Unmarshal([]byte(show.stdout), &rec); err != nil || rec.Result != drill.Aborted || !strings.Contains(rec.Message, "SIGTERM") {
		t.Errorf("the run in flight at shutdown: %v %s %q", err, rec.Result, rec.Message)
	}
	if r := firedrill(t, []string{"FIREDRILL_HISTORY=" + hist}, "history", "verify"); r.code != 0 {
		t.Errorf("history verify: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}

// jobPodHost is the host name of run id's pod: its name.
// jobsSandbox is a real-node sandbox ready for drills as Jobs: firedrill's image on the node, a
// namespace of the test's own (its default ServiceAccount made), the Scenario and DrillRun CRDs,
// and an etcd endpoint the node's pods reach, slowed while slow is set (a drill kept in its
// backup, to be interrupted there).
func jobsSandbox(t *testing.T, prefix string) (sb *sandbox.Sandbox, kubectl func(stdin string, args ...string) string, ns, endpoint string, slow *atomic.Bool) {
	t.Helper()
	needSandbox(t)
	sb = sandboxtest.Start(t, sandbox.Options{RealNode: true})
	if !slices.Contains(sb.State().RealNode.Images, sandbox.FiredrillImage) {
		t.Fatalf("the real node has no %s: build bin/images/firedrill.tar with make sandbox-bin", sandbox.FiredrillImage)
	}
	kubectl = func(stdin string, args ...string) string {
		t.Helper()
		out, err := runKubectl(sb, args...)(stdin)
		if err != nil {
			t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}
	ns = fmt.Sprintf("%s-%d", prefix, time.Now().UnixNano()%1e6)
	kubectl("", "create", "namespace", ns)
	t.Cleanup(func() { runKubectl(sb, "delete", "namespace", ns, "--wait=false")("") })
	// The default ServiceAccount is made by the controller-manager; the Job's pod needs it.
	testkit.EventuallyTrue(t, time.Minute, "the namespace's default ServiceAccount", func() bool {
		_, err := runKubectl(sb, "-n", ns, "get", "serviceaccount", "default")("")
		return err == nil
	})
	// Pods reach the node's address, not the sandbox etcd's loopback: a proxy on the node
	// address forwards to it.
	slow = new(atomic.Bool)
	endpoint = etcdProxy(t, sb.State().RealNode.IP, strings.TrimPrefix(sb.EtcdEndpoints()[0], "http://"), slow)
	kubectl("", "apply", "--server-side", "--force-conflicts", "--field-manager=firedrill-e2e", "-f", scenarioCRD, "-f", drillRunCRD)
	kubectl("", "wait", "--for=condition=Established", "--timeout=1m", "crd/scenarios.firedrill.dev", "crd/drillruns.firedrill.dev")
	return sb, kubectl, ns, endpoint, slow
}

func jobPodHost(t *testing.T, kubectl func(string, ...string) string, ns, id string) string {
	t.Helper()
	return strings.TrimSpace(kubectl("", "-n", ns, "get", "pods", "-l", jobexec.LabelRunID+"="+id, "-o", "jsonpath={.items[0].metadata.name}"))
}

// etcdProxy forwards a port on ip to target until the test ends, and returns its URL. While
// slow is set, it passes on 16 KiB a second from the server: a snapshot then takes minutes.
func etcdProxy(t *testing.T, ip, target string, slow *atomic.Bool) string {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var conns sync.Map
	t.Cleanup(func() {
		ln.Close()
		conns.Range(func(k, _ any) bool { k.(net.Conn).Close(); return true })
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				up, err := net.Dial("tcp", target)
				if err != nil {
					return
				}
				defer up.Close()
				conns.Store(c, true)
				conns.Store(up, true)
				defer conns.Delete(c)
				defer conns.Delete(up)
				go func() { _, _ = io.Copy(up, c); up.(*net.TCPConn).CloseWrite() }()
				buf := make([]byte, 16<<10)
				for {
					n, err := up.Read(buf)
					if n > 0 {
						if _, werr := c.Write(buf[:n]); werr != nil {
							return
						}
						if slow.Load() {
							time.Sleep(time.Second)
						}
					}
					if err != nil {
						return
					}
				}
			})
		}
	})
	return (&url.URL{Scheme: "http", Host: ln.Addr().String()}).String()
}
