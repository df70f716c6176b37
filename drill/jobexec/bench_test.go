package jobexec_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/firedrill-dev/firedrill/drill"
	"github.com/firedrill-dev/firedrill/drill/etcddrill"
	"github.com/firedrill-dev/firedrill/drill/history"
	"github.com/firedrill-dev/firedrill/drill/jobexec"
	"github.com/firedrill-dev/firedrill/drill/schedule"
	"github.com/firedrill-dev/firedrill/internal/testkit"
	"github.com/firedrill-dev/firedrill/sandbox"
	"github.com/firedrill-dev/firedrill/sandbox/sandboxtest"
)

// BenchmarkJobStart measures what running a drill as a Job adds before the drill starts: from
// the executor's call (the Job is created at once) to the record's startedAt, which the drill
// sets in its pod — image present, so scheduling, the pod's sandbox and the process's start —
// against the same for the process executor (drill.Runner in this process). Reported per drill:
// job-start-s, process-start-s and their ratio. The target: job-start-s ≤ 5 s.
func BenchmarkJobStart(b *testing.B) {
	sb := sandboxtest.Start(b, sandbox.Options{RealNode: true})
	if !slices.Contains(sb.State().RealNode.Images, sandbox.FiredrillImage) {
		b.Fatalf("the real node has no %s: build bin/images/firedrill.tar with make sandbox-bin", sandbox.FiredrillImage)
	}
	kube, err := kubernetes.NewForConfig(sb.RESTConfig())
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	ns := fmt.Sprintf("fdbench-%d", time.Now().UnixNano()%1e6)
	if _, err := kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = kube.CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{}) })
	testkit.EventuallyTrue(b, time.Minute, "the default ServiceAccount", func() bool {
		_, err := kube.CoreV1().ServiceAccounts(ns).Get(ctx, "default", metav1.GetOptions{})
		return err == nil
	})
	store, err := history.Open(ctx, filepath.Join(b.TempDir(), "history.db"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { store.Close() })
	spool, err := history.NewSpool(store, b.TempDir(), nil)
	if err != nil {
		b.Fatal(err)
	}
	ex, err := jobexec.New(jobexec.Options{Kube: kube, Namespace: ns, Image: sandbox.FiredrillImage, Recorder: spool,
		Runner: history.CurrentRunner(), PollEvery: 250 * time.Millisecond})
	if err != nil {
		b.Fatal(err)
	}
	loopback := strings.TrimPrefix(sb.EtcdEndpoints()[0], "http://")
	onNode := forward(b, sb.State().RealNode.IP, loopback)
	scenario := func(endpoint string) string {
		return `apiVersion: firedrill.dev/v1alpha1
kind: Scenario
metadata: {name: bench-job}
spec:
  timeout: 5m
  backup: {etcd: {take: {endpoints: ["` + endpoint + `"]}}}
  restore: {scratchEtcd: {}}
  checks: [{etcdIntegrity: {}}]
`
	}
	inPod, inProcess := testkit.WriteScenario(b, scenario(onNode)), testkit.WriteScenario(b, scenario("http://"+loopback))
	drivers := drill.NewRegistry(etcddrill.New(etcddrill.Options{BinDir: sb.BinDir()}))

	var jobStart, procStart time.Duration
	b.ResetTimer()
	for i := range b.N {
		t0 := time.Now()
		rec, err := ex.Run(ctx, inPod, schedule.Trigger{ID: drill.NewRunID(t0), Kind: "api"})
		if err != nil || rec.Result != drill.Passed {
			b.Fatalf("drill %d as a Job: %v %s %q", i, err, rec.Result, rec.Message)
		}
		jobStart += rec.StartedAt.Sub(t0)

		t0 = time.Now()
		runner := &drill.Runner{Recorder: spool, Trigger: "api", WorkRoot: b.TempDir()}
		rec, err = runner.Run(ctx, inProcess, drivers.For(inProcess))
		if err != nil || rec.Result != drill.Passed {
			b.Fatalf("drill %d in process: %v %s %q", i, err, rec.Result, rec.Message)
		}
		procStart += rec.StartedAt.Sub(t0)
	}
	b.StopTimer()
	n := float64(b.N)
	b.ReportMetric(jobStart.Seconds()/n, "job-start-s")
	b.ReportMetric(procStart.Seconds()/n, "process-start-s")
	b.ReportMetric(jobStart.Seconds()/max(procStart.Seconds(), 1e-6), "job/process")
}

// forward serves a port on ip that forwards to target, until b ends: pods reach the node's
// address, not the sandbox etcd's loopback.
func forward(b *testing.B, ip, target string) string {
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				up, err := net.Dial("tcp", target)
				if err != nil {
					return
				}
				defer up.Close()
				go func() { _, _ = io.Copy(up, c) }()
				_, _ = io.Copy(c, up)
			}()
		}
	}()
	return "http://" + ln.Addr().String()
}
