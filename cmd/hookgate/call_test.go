package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hookgate/hookgate/outbound/bitrix24test"
)

func TestCallCommand(t *testing.T) {
	sim := bitrix24test.NewServer(bitrix24test.WithCredentials("1", "portal-webhook-secret-9x"))
	srv := sim.Start()
	defer srv.Close()
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "secrets.yaml"), []byte("b24/main:\n  token: portal-webhook-secret-9x\n"), 0o600)
	cfg := filepath.Join(dir, "hookgate.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`
data_dir: %s/data
secrets: {backend: file, file: %s/secrets.yaml}
portals:
  - {id: main, base_url: %s, user_id: 1, secret: b24/main}
`, dir, dir, srv.URL)), 0o600)

	run := func(args ...string) (string, string, int) {
		cmd := exec.Command(binPath, append([]string{"call", "--config", cfg}, args...)...)
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		code := 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return out.String(), errb.String(), code
	}

	out, errOut, code := run("main", "crm.deal.add", "fields[TITLE]=Acme", "fields[OPPORTUNITY]=100")
	var added struct{ Result int }
	if code != 0 || json.Unmarshal([]byte(out), &added) != nil || added.Result == 0 {
		t.Fatalf("crm.deal.add: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	out, _, code = run("main", "crm.deal.get", fmt.Sprintf("id=%d", added.Result))
	var got struct{ Result map[string]any }
	if code != 0 || json.Unmarshal([]byte(out), &got) != nil || got.Result["TITLE"] != "Acme" {
		t.Errorf("crm.deal.get: exit %d, %q; want TITLE Acme", code, out)
	}
	out, _, code = run("main", "crm.deal.list", "select[]=ID", "select[]=TITLE")
	if code != 0 || !strings.Contains(out, `"total": 1`) {
		t.Errorf("crm.deal.list: exit %d, %q", code, out)
	}
	out, errOut, code = run("main", "crm.nope.get")
	if code != 1 || !strings.Contains(out, "ERROR_METHOD_NOT_FOUND") {
		t.Errorf("unknown method: exit %d, stdout %q; want 1 and ERROR_METHOD_NOT_FOUND", code, out)
	}
	if sim.Requests("crm.nope.get") != 1 {
		t.Errorf("simulator saw %d requests for the unknown method; want 1 (not retried)", sim.Requests("crm.nope.get"))
	}
	if strings.Contains(out+errOut, "portal-webhook-secret-9x") {
		t.Errorf("the webhook secret was printed")
	}
	_, _, code = run("nope", "crm.deal.get")
	if code == 0 {
		t.Errorf("unknown portal: exit 0")
	}
}
