package service

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/firedrill-dev/firedrill/drill"
	"github.com/firedrill-dev/firedrill/internal/testkit"
	"github.com/firedrill-dev/firedrill/notify"
)

// sent lists what rcv was sent: "event scenario" for a notification, "METHOD path" otherwise.
func sent(rcv *testkit.Receiver) []string {
	var out []string
	for _, r := range rcv.Requests() {
		var ev notify.Event
		if json.Unmarshal(r.Body, &ev) == nil && ev.Event != "" {
			out = append(out, ev.Event+" "+ev.Scenario)
		} else {
			out = append(out, r.Method+" "+r.Path)
		}
	}
	return out
}

// labelledScenario is scenario with a team label and the scenario's own heartbeat URL.
func labelledScenario(name, kind, team, heartbeat string) string {
	s := strings.Replace(scenario(name, "", kind), "labels: {drill: "+kind+"}", "labels: {drill: "+kind+", team: "+team+"}", 1)
	return s + fmt.Sprintf("  notify: {heartbeatURL: %q}\n", heartbeat)
}

// The notifications file routes each scenario's failures and recoveries to the receivers that
// match it, and a scenario's own heartbeat URL is requested after its passes only.
func TestServiceRoutesNotificationsAndScenarioHeartbeats(t *testing.T) {
	t.Parallel()
	shop, billing, global, beat := testkit.NewReceiver(t), testkit.NewReceiver(t), testkit.NewReceiver(t), testkit.NewReceiver(t)
	notifyFile := writeFile(t, t.TempDir(), "notifications.yaml", fmt.Sprintf(`apiVersion: firedrill.dev/v1alpha1
kind: Notifications
receivers:
  - {name: shop, webhook: %q, matchLabels: {team: shop}}
  - {name: billing, webhook: %q, matchScenarios: ["billing-*"]}
`, shop.URL+"/shop", billing.URL+"/billing"))
	dir := t.TempDir()
	writeFile(t, dir, "shop.yaml", labelledScenario("shop-orders", "fail", "shop", beat.URL+"/shop-orders-secret"))

	var log testkit.Buffer
	cfg := testConfig(t, openSQLite(t), dir, newHooks(), &log)
	cfg.Token, cfg.NotifyFile, cfg.Webhooks = "s3cret", notifyFile, []string{global.URL + "/all"}
	svc, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	r := start(context.Background(), t, svc)

	if rec := r.finished(r.trigger("shop-orders", "s3cret")); rec.Result != drill.Failed {
		t.Fatalf("first run: %s (%s), want failed", rec.Result, rec.Message)
	}
	writeFile(t, dir, "shop.yaml", labelledScenario("shop-orders", "pass", "shop", beat.URL+"/shop-orders-secret"))
	testkit.EventuallyTrue(t, time.Minute, "the passing version is loaded", func() bool {
		_, body := r.request("GET", "/api/v1/scenarios", "")
		return strings.Contains(body, `"drill": "pass"`)
	})
	for range 2 {
		if rec := r.finished(r.trigger("shop-orders", "s3cret")); rec.Result != drill.Passed {
			t.Fatalf("run after the fix: %s (%s), want passed", rec.Result, rec.Message)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := svc.Shutdown(ctx); err != nil { // delivers what is queued
		t.Fatal(err)
	}

	for _, c := range []struct {
		name string
		got  []string
		want string
	}{
		{"shop", sent(shop), "failure shop-orders,recovery shop-orders"},
		{"billing", sent(billing), ""},
		{"global", sent(global), "failure shop-orders,recovery shop-orders"},
		{"the scenario's heartbeat", sent(beat), "GET /shop-orders-secret,GET /shop-orders-secret"},
	} {
		if g := strings.Join(c.got, ","); g != c.want {
			t.Errorf("%s receiver got %q, want %q", c.name, g, c.want)
		}
	}
	if strings.Contains(log.String(), "secret") {
		t.Errorf("the log names a heartbeat URL:\n%s", log.String())
	}
}
