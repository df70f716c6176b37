package notify

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"go.yaml.in/yaml/v3"
)

// A notifications file (`firedrill serve --notify-config`) is identified by these.
const (
	FileAPIVersion = "firedrill.dev/v1alpha1"
	FileKind       = "Notifications"
)

// maxFileSize is far above any list of receivers; a bigger file is something else named by mistake.
const maxFileSize = 1 << 20

// file is the document LoadFile reads.
type file struct {
	APIVersion string         `yaml:"apiVersion"`
	Kind       string         `yaml:"kind"`
	Receivers  []fileReceiver `yaml:"receivers"`
}

// fileReceiver is one receiver: exactly one of its URLs, and the scenarios it hears about.
type fileReceiver struct {
	Name           string            `yaml:"name"`
	Webhook        string            `yaml:"webhook"`
	SlackWebhook   string            `yaml:"slackWebhook"`
	HeartbeatURL   string            `yaml:"heartbeatURL"`
	MatchScenarios []string          `yaml:"matchScenarios"`
	MatchLabels    map[string]string `yaml:"matchLabels"`
}

// Receivers are the webhooks and heartbeats of a notifications file.
type Receivers struct {
	Webhooks   []Webhook
	Heartbeats []Heartbeat
}

// LoadFile reads a notifications file strictly (unknown fields are errors) and reports every
// problem at once, each prefixed with the file and the receiver. Like New, it never quotes a
// URL: the file holds secrets.
//
//	apiVersion: firedrill.dev/v1alpha1
//	kind: Notifications
//	receivers:
//	  - name: shop-team
//	    slackWebhook: https://hooks.slack.com/services/T000/B000/XXXX
//	    matchScenarios: ["shop-*"]
//	    matchLabels: {team: shop}
//	  - heartbeatURL: https://hc-ping.com/UUID
func LoadFile(path string) (Receivers, error) {
	data, err := readSmall(path)
	if err != nil {
		return Receivers{}, fmt.Errorf("%s: %w", path, err)
	}
	var doc file
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			err = errors.New("is empty")
		}
		return Receivers{}, fmt.Errorf("%s: %s", path, yamlMessage(err))
	}
	var problems []string
	add := func(format string, a ...any) { problems = append(problems, fmt.Sprintf(format, a...)) }
	if doc.APIVersion != FileAPIVersion || doc.Kind != FileKind {
		add("starts with apiVersion %q and kind %q: want apiVersion: %s and kind: %s", doc.APIVersion, doc.Kind, FileAPIVersion, FileKind)
	}
	if len(doc.Receivers) == 0 {
		add("lists no receivers: add at least one under receivers:")
	}
	var out Receivers
	for i, fr := range doc.Receivers {
		at := fmt.Sprintf("receivers[%d]", i)
		if fr.Name != "" {
			at += " (" + fr.Name + ")"
		}
		m := Match{Scenarios: fr.MatchScenarios, Labels: fr.MatchLabels}
		urls := 0
		for _, u := range []string{fr.Webhook, fr.SlackWebhook, fr.HeartbeatURL} {
			if u != "" {
				urls++
			}
		}
		if urls != 1 {
			add("%s: set exactly one of webhook, slackWebhook and heartbeatURL", at)
			continue
		}
		raw, field, format := fr.HeartbeatURL, "heartbeatURL", ""
		switch {
		case fr.Webhook != "":
			raw, field, format = fr.Webhook, "webhook", FormatJSON
		case fr.SlackWebhook != "":
			raw, field, format = fr.SlackWebhook, "slackWebhook", FormatSlack
		}
		if _, err := checkURL(raw); err != nil {
			add("%s.%s: %v", at, field, err)
			continue
		}
		if err := m.check(); err != nil {
			add("%s: %v", at, err)
			continue
		}
		if format == "" {
			out.Heartbeats = append(out.Heartbeats, Heartbeat{URL: raw, Match: m, Name: fr.Name})
		} else {
			out.Webhooks = append(out.Webhooks, Webhook{URL: raw, Format: format, Match: m, Name: fr.Name})
		}
	}
	if len(problems) > 0 {
		return Receivers{}, fmt.Errorf("%s: %s", path, strings.Join(problems, "; "))
	}
	return out, nil
}

func readSmall(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxFileSize {
		return nil, fmt.Errorf("is larger than %d KiB: is this the notifications file?", maxFileSize>>10)
	}
	return data, nil
}

// yamlMessage says yaml.v3's complaint in the file's terms rather than Go's.
func yamlMessage(err error) string {
	msg := strings.NewReplacer(
		"yaml: unmarshal errors:\n  ", "",
		"\n  ", "; ",
		" in type notify.fileReceiver", " in a receiver (known: name, webhook, slackWebhook, heartbeatURL, matchScenarios, matchLabels)",
		" in type notify.file", " (known: apiVersion, kind, receivers)",
		"notify.fileReceiver", "a receiver",
		"notify.file", "a notifications file",
	).Replace(err.Error())
	return strings.TrimPrefix(msg, "yaml: ")
}
