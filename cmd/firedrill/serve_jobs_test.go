package main

import (
	"errors"
	"strings"
	"testing"

	"github.com/firedrill-dev/firedrill/service"
)

func TestServeExecutorFlags(t *testing.T) {
	t.Parallel()
	noPod := func() (string, error) { return "", errors.New("not running in a Kubernetes pod") }
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	for _, tc := range []struct {
		name    string
		flags   jobFlags
		env     map[string]string
		own     func() (string, error)
		wantErr string // "" accepted
		image   string
	}{
		{name: "process is the default", flags: jobFlags{executor: "process"}},
		{name: "job flags without job", flags: jobFlags{executor: "process", jobs: service.Jobs{Image: "x"}}, wantErr: "need --executor job"},
		{name: "unknown executor", flags: jobFlags{executor: "pod"}, wantErr: `--executor "pod": use process or job`},
		{name: "job without an image outside a pod", flags: jobFlags{executor: "job"}, own: noPod, wantErr: "--executor job needs firedrill's image"},
		{name: "job with --job-image", flags: jobFlags{executor: "job", jobs: service.Jobs{Image: "reg/firedrill:1"}}, own: noPod, image: "reg/firedrill:1"},
		{name: "job with the env's image", flags: jobFlags{executor: "job"}, env: map[string]string{"FIREDRILL_JOB_IMAGE": "reg/firedrill:2"}, own: noPod, image: "reg/firedrill:2"},
		{name: "job with serve's own image", flags: jobFlags{executor: "job"}, own: func() (string, error) { return "reg/firedrill:3", nil }, image: "reg/firedrill:3"},
	} {
		var cfg service.Config
		err := tc.flags.resolve(&cfg, env(tc.env), "probe:1", tc.own)
		switch {
		case tc.wantErr == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("%s: %v, want %q", tc.name, err, tc.wantErr)
		case tc.wantErr == "" && tc.image != "" && (cfg.Jobs == nil || cfg.Jobs.Image != tc.image || cfg.Jobs.Env[0].Value != "probe:1"):
			t.Errorf("%s: jobs %+v", tc.name, cfg.Jobs)
		case tc.image == "" && tc.wantErr == "" && cfg.Jobs != nil:
			t.Errorf("%s: jobs set with the process executor", tc.name)
		}
	}
}
