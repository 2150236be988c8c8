package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

func TestTailSubject(t *testing.T) {
	long := strings.Repeat("E", 200)
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"none", nil, "hookgate.in.>"},
		{"source", []string{"ci"}, "hookgate.in.ci.>"},
		{"source and event", []string{"ci", "ONCRMDEALADD"}, "hookgate.in.ci.ONCRMDEALADD"},
		{"sanitised event", []string{"ci", "ci.build.finished"}, "hookgate.in.ci.ci_build_finished"},
		{"any source", []string{"*", "ONCRMDEALADD"}, "hookgate.in.*.ONCRMDEALADD"},
		{"pattern", []string{"hookgate.in.ci.>"}, "hookgate.in.ci.>"},
		{"long event", []string{"b24", long}, "hookgate.in.b24." + long[:111] + "_"},
	} {
		got := tailSubject(tc.args)
		if tc.name == "long event" {
			if !strings.HasPrefix(got, tc.want) || len(got) != len("hookgate.in.b24.")+128 {
				t.Errorf("tailSubject(%s) = %q; want %q and a hash, 128 bytes", tc.name, got, tc.want)
			}
			continue
		}
		if got != tc.want {
			t.Errorf("tailSubject(%s) = %q; want %q", tc.name, got, tc.want)
		}
	}
}

// tailRun runs `hookgate tail ARGS` beside g for a while and returns what
// it printed on stdout (one line per event) and stderr.
func tailRun(t *testing.T, g *gatewayProc, within time.Duration, args ...string) (lines []string, stderr string) {
	t.Helper()
	cmd := exec.Command(binPath, append([]string{"tail", "--config", g.Config}, args...)...)
	cmd.Env = append(os.Environ(), "HOOKGATE_BUS_LISTEN="+busListen(g.BusURL))
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(within)
	cmd.Process.Signal(os.Interrupt)
	cmd.Wait()
	sc := bufio.NewScanner(&out)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	return lines, errb.String()
}

// TestTailFindsWhatYouMean: a source id, a source and an event (sanitised
// as the gateway does), a NATS pattern; --all and --since print stored
// events; a pattern matching nothing stored says so (issue 16).
func TestTailFindsWhatYouMean(t *testing.T) {
	path, dir := writeConfig(t, `
data_dir: {{data}}
secrets: {backend: file, file: {{dir}}/secrets.yaml}
sources:
  - {id: b24, provider: bitrix24, secret: b24/token}
  - {id: ci, provider: token, secret: ci/token, event: ci.build.finished}
`)
	os.WriteFile(dir+"/secrets.yaml", []byte("b24/token: {token: tail-b24-token-3k9m}\nci/token: {token: tail-ci-token-7x2q}\n"), 0o600)
	g := startGateway(t, path)

	if s, b := post(t, g.URL+"/webhook/b24", formType, bitrixForm("tail-b24-token-3k9m", "9", "1"), nil); s != 200 {
		t.Fatalf("bitrix24 POST: %d %v", s, b)
	}
	if s, b := post(t, g.URL+"/webhook/ci?token=tail-ci-token-7x2q", "application/json", `{"build":42}`, nil); s != 200 {
		t.Fatalf("token POST: %d %v", s, b)
	}

	const wait = 1500 * time.Millisecond
	for _, tc := range []struct {
		name      string
		args      []string
		want      []string // event types printed, in order
		wantNote  bool     // "no stored event matches" on stderr
		wantTrail string   // in the stderr "tailing" line
	}{
		{"default: new only", nil, nil, false, "hookgate.in.> "},
		{"all", []string{"--all"}, []string{"ONCRMDEALADD", "ci.build.finished"}, false, "hookgate.in.>"},
		{"source", []string{"ci", "--all"}, []string{"ci.build.finished"}, false, "hookgate.in.ci.>"},
		{"source and event", []string{"--all", "b24", "ONCRMDEALADD"}, []string{"ONCRMDEALADD"}, false, "hookgate.in.b24.ONCRMDEALADD"},
		{"sanitised event", []string{"--since", "10m", "ci", "ci.build.finished"}, []string{"ci.build.finished"}, false, "hookgate.in.ci.ci_build_finished"},
		{"pattern", []string{"--all", "hookgate.in.*.ONCRMDEALADD"}, []string{"ONCRMDEALADD"}, false, "hookgate.in.*.ONCRMDEALADD"},
		{"since excludes older", []string{"--since", "1ms", "ci"}, nil, false, "hookgate.in.ci.>"},
		{"no match", []string{"--all", "b24", "oncrmdealadd"}, nil, true, "hookgate.in.b24.oncrmdealadd"},
	} {
		lines, stderr := tailRun(t, g, wait, tc.args...)
		var got []string
		for _, l := range lines {
			var ev struct{ Type string }
			if err := json.Unmarshal([]byte(l), &ev); err != nil {
				t.Errorf("tail(%s) printed a line that is not JSON: %q", tc.name, l)
			}
			got = append(got, ev.Type)
		}
		if strings.Join(got, ",") != strings.Join(tc.want, ",") {
			t.Errorf("tail(%s) printed %v; want %v\nstderr: %s", tc.name, got, tc.want, stderr)
		}
		if note := strings.Contains(stderr, "no stored event matches"); note != tc.wantNote {
			t.Errorf("tail(%s) stderr %q; want the no-match note: %v", tc.name, stderr, tc.wantNote)
		}
		if tc.wantNote && !strings.Contains(stderr, "hookgate.in.b24.ONCRMDEALADD") {
			t.Errorf("tail(%s) note %q does not list the subjects held", tc.name, stderr)
		}
		if !strings.Contains(stderr, "tailing "+tc.wantTrail) {
			t.Errorf("tail(%s) stderr %q; want %q", tc.name, stderr, "tailing "+tc.wantTrail)
		}
	}

	// the default prints events stored after it starts
	tl := startTail(t, g)
	if s, b := post(t, g.URL+"/webhook/b24", formType, bitrixForm("tail-b24-token-3k9m", "10", "2"), nil); s != 200 {
		t.Fatalf("bitrix24 POST: %d %v", s, b)
	}
	if ev := tl.next(t, 5*time.Second); ev.Data.Params["data[FIELDS][ID]"] != "10" {
		t.Errorf("default tail printed %+v; want the new deal 10", ev)
	}

	out, err := exec.Command(binPath, "tail", "--help").Output()
	if err != nil || !strings.Contains(string(out), "--since") || !strings.Contains(string(out), "ci_build_finished") {
		t.Errorf("tail --help: %v, %q", err, out)
	}
}
