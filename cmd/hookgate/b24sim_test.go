package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hookgate/hookgate/internal/testenv"
	"github.com/hookgate/hookgate/outbound/bitrix24test"
)

// TestFirstCallOnB24sim: the simulator binary documents itself and, started
// with no flags but its address, answers the first
// `hookgate call main crm.deal.get id=1` with a deal (issue 16).
func TestFirstCallOnB24sim(t *testing.T) {
	sim := filepath.Join(t.TempDir(), "b24sim")
	if out, err := exec.Command("go", "build", "-o", sim, "../b24sim").CombinedOutput(); err != nil {
		t.Fatalf("build b24sim: %v\n%s", err, out)
	}
	out, err := exec.Command(sim, "--help").Output()
	if err != nil || !strings.Contains(string(out), "Bitrix24 portal") || !strings.Contains(string(out), "-seed") {
		t.Errorf("b24sim --help: %v, %q; want exit 0 with the description and flags", err, out)
	}

	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	cmd := exec.Command(sim, "-listen", addr)
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			ready <- sc.Text()
		}
	}()
	select {
	case line := <-ready:
		if !strings.Contains(line, "3 deals") {
			t.Errorf("b24sim said %q; want the seeded counts", line)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("b24sim did not start")
	}

	path, dir := writeConfig(t, fmt.Sprintf(`
data_dir: {{data}}
secrets: {backend: file, file: {{dir}}/secrets.yaml}
portals:
  - {id: main, base_url: http://%s, user_id: 1, secret: b24sim/webhook}
`, addr))
	os.WriteFile(filepath.Join(dir, "secrets.yaml"), []byte("b24sim/webhook: {token: "+bitrix24test.DefaultSecret+"}\n"), 0o600)
	call := exec.Command(binPath, "call", "--config", path, "main", "crm.deal.get", "id=1")
	res, err := call.Output()
	var got struct{ Result map[string]any }
	if err != nil || json.Unmarshal(res, &got) != nil || got.Result["ID"] != "1" || got.Result["TITLE"] == nil {
		t.Errorf("hookgate call main crm.deal.get id=1: %v, %s; want deal 1", err, res)
	}
}
