package e2e

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dsrlb/dsrlb/internal/netns"
)

// benchReport is what the smoke test reads of the bench's JSON.
type benchReport struct {
	Namespaces   []string `json:"namespaces"`
	Interrupted  bool     `json:"interrupted"`
	Errors       []string `json:"errors"`
	Measurements []struct {
		Phase        string  `json:"phase"`
		Mode         string  `json:"mode"`
		Error        string  `json:"error"`
		DeliveredPPS float64 `json:"delivered_pps"`
		Latency      *struct {
			Count int `json:"count"`
		} `json:"latency"`
		RingWait *struct {
			Buckets []uint64 `json:"buckets"`
		} `json:"ring_wait"`
	} `json:"measurements"`
}

// The bench program runs end to end: every mode (dsrlb, the nft reference
// with and without RPS, direct) in both phases, with the built-in TX-ring
// generator, delivers frames and measures latency, and the bench removes
// its namespaces. Numbers are not checked (timing has no place here): that
// each window measured something is.
func TestBenchSmoke(t *testing.T) {
	requireRoot(t)
	if _, err := exec.LookPath("nft"); err != nil {
		t.Fatal("nft not found: the bench's kernel reference needs nftables (.ci/run installs it)")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "bench")
	if out, err := exec.Command("go", "build", "-o", bin, "../bench").CombinedOutput(); err != nil {
		t.Fatalf("build bench: %v\n%s", err, out)
	}
	js := filepath.Join(dir, "bench.json")
	// A hung bench is interrupted (it then tears its namespaces down), and
	// killed only if that does not end it.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "--dsrlb", dsrlbBin, "--gen", "txring", "--workers", "1",
		"--reps", "1", "--warmup", "300ms", "--window", "1s",
		"--latency-reps", "1", "--latency-rate", "20000", "--json", js)
	cmd.Dir = dir
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGINT) }
	cmd.WaitDelay = 30 * time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("bench: %v\n%s", err, out)
	}
	raw, err := os.ReadFile(js)
	if err != nil {
		t.Fatalf("bench wrote no JSON: %v\n%s", err, out)
	}
	var rep benchReport
	if err := json.Unmarshal(raw, &rep); err != nil {
		t.Fatalf("bench JSON: %v", err)
	}
	if rep.Interrupted || len(rep.Errors) > 0 {
		t.Errorf("bench: interrupted %v, errors %q", rep.Interrupted, rep.Errors)
	}
	want := map[string]bool{}
	for _, phase := range []string{"throughput", "latency"} {
		for _, mode := range []string{"dsrlb-w1", "nft", "nft-local", "direct"} {
			want[phase+" "+mode] = true
		}
	}
	for _, m := range rep.Measurements {
		key := m.Phase + " " + m.Mode
		if !want[key] {
			t.Errorf("unexpected or repeated measurement %s", key)
			continue
		}
		delete(want, key)
		if m.Error != "" {
			t.Errorf("%s: %s", key, m.Error)
		}
		if m.DeliveredPPS <= 0 {
			t.Errorf("%s: delivered %.0f pps", key, m.DeliveredPPS)
		}
		if m.Phase == "latency" && (m.Latency == nil || m.Latency.Count == 0) {
			t.Errorf("%s: no latency samples", key)
		}
		if strings.HasPrefix(m.Mode, "dsrlb") {
			var frames uint64
			if m.RingWait != nil {
				for _, n := range m.RingWait.Buckets {
					frames += n
				}
			}
			if frames == 0 {
				t.Errorf("%s: no ring-wait counts read from dsrlb", key)
			}
		}
	}
	for key := range want {
		t.Errorf("no measurement for %s", key)
	}
	if len(rep.Namespaces) == 0 {
		t.Fatal("the report names no namespaces")
	}
	for _, name := range rep.Namespaces {
		if netns.Exists(name) {
			t.Errorf("namespace %s left behind", name)
		}
	}
	if t.Failed() {
		t.Logf("bench output:\n%s", out)
	}
}
