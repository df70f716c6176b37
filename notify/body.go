package notify

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/firedrill-dev/firedrill/drill"
)

// body encodes ev in the receiver's format.
func (r *receiver) body(ev *Event) ([]byte, error) {
	if r.format == FormatSlack {
		return json.Marshal(slackMessage(ev))
	}
	return json.Marshal(ev)
}

// SlackMessage is the Slack-compatible body: text for notifications and clients without
// blocks, blocks for the channel.
type SlackMessage struct {
	Text   string       `json:"text"`
	Blocks []SlackBlock `json:"blocks"`
}

// SlackBlock is a section or context block with mrkdwn text.
type SlackBlock struct {
	Type     string      `json:"type"`
	Text     *SlackText  `json:"text,omitempty"`
	Elements []SlackText `json:"elements,omitempty"`
}

// SlackText is a text object.
type SlackText struct {
	Type string `json:"type"`
	Text string `json:"text"`
}

// slackMessage says in one line what happened, then the run's figures in a context line.
func slackMessage(ev *Event) *SlackMessage {
	icon, what := ":large_green_circle:", "passed again"
	if ev.PreviousResult != "" && ev.Event == EventRecovery {
		what += " (after " + string(ev.PreviousResult) + ")"
	}
	if ev.Event == EventFailure {
		icon = ":red_circle:"
		switch ev.Result {
		case drill.Failed:
			what = "failed"
		case drill.Error:
			what = "could not be carried out (error)"
		case drill.Missed:
			what = "missed its scheduled run"
		default:
			what = string(ev.Result)
		}
	}
	msg := ""
	if ev.Event == EventFailure && ev.Message != "" {
		msg = ": " + truncate(oneLine(ev.Message), 300)
	}
	text := fmt.Sprintf("%s drill %s %s%s", icon, escape(ev.Scenario), what, escape(msg))
	section := fmt.Sprintf("%s drill *%s* %s%s", icon, escape(ev.Scenario), what, escape(msg))
	if ev.URL != "" {
		section += fmt.Sprintf(" <%s|view run>", ev.URL)
	}

	facts := []string{"run `" + escape(ev.RunID) + "`"}
	if !ev.StartedAt.IsZero() {
		facts = append(facts, "started "+ev.StartedAt.UTC().Format("2006-01-02 15:04 UTC"))
	}
	for _, o := range ev.Objectives {
		actual := "not measured"
		if o.ActualSeconds != nil {
			actual = seconds(*o.ActualSeconds)
		}
		mark := "met"
		if !o.Met {
			mark = "missed"
		}
		facts = append(facts, fmt.Sprintf("%s %s (target %s, %s)", strings.ToUpper(escape(o.Name)), actual, seconds(o.TargetSeconds), mark))
	}
	return &SlackMessage{
		Text: text,
		Blocks: []SlackBlock{
			{Type: "section", Text: &SlackText{Type: "mrkdwn", Text: section}},
			{Type: "context", Elements: []SlackText{{Type: "mrkdwn", Text: strings.Join(facts, " · ")}}},
		},
	}
}

func seconds(s float64) string {
	return time.Duration(s * float64(time.Second)).Round(time.Second).String()
}

// escape keeps user text from being read as Slack markup (links, mentions).
func escape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}
