package main

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/hookgate/hookgate"
	"github.com/hookgate/hookgate/config"
)

// TestLogRedactsWithAttrs: attributes added with With, in groups or not,
// before or after the secret store knew the value, are redacted like the
// record's own (issue 15).
func TestLogRedactsWithAttrs(t *testing.T) {
	const secret = "log-s3cret-value-9f8e"
	for _, format := range []string{"text", "json"} {
		var buf bytes.Buffer
		log, p := newLogger(config.Log{Level: "info", Format: format}, &buf)
		early := log.With("early", "x "+secret+" y")
		red := hookgate.NewRedactor()
		f := red.Redact
		p.Store(&f)
		red.Add(secret)
		late := log.With("late", secret).WithGroup("g").With("err", errors.New("dial "+secret))
		early.Info("one", "a", secret)
		late.Info("two "+secret, "b", []string{secret})
		out := buf.String()
		if strings.Contains(out, secret) {
			t.Errorf("%s log holds the secret:\n%s", format, out)
		}
		if n := strings.Count(out, hookgate.Redacted); n < 5 {
			t.Errorf("%s log has %d [redacted]; want at least 5:\n%s", format, n, out)
		}
	}
}
