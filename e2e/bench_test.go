//go:build linux

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
	Namespaces   []string           `json:"namespaces"`
	Interrupted  bool               `json:"interrupted"`
	Errors       []string           `json:"errors"`
	Measurements []benchMeasurement `json:"measurements"`
}

// benchMeasurement is what the smoke tests read of one window.
type benchMeasurement struct {
	Phase        string  `json:"phase"`
	Mode         string  `json:"mode"`
	Error        string  `json:"error"`
	DeliveredPPS float64 `json:"delivered_pps"`
	Gen          struct {
		Sent uint64 `json:"sent"`
	} `json:"gen"`
	Latency *struct {
		Count int `json:"count"`
	} `json:"latency"`
	RingWait *struct {
		Buckets []uint64 `json:"buckets"`
	} `json:"ring_wait"`
}

// runBench builds the bench and runs it against dsrlbBin with args (and
// --json), and returns its report and output. A hung bench is interrupted
// (it then tears its namespaces down), and killed only if that does not end
// it.
func runBench(t *testing.T, args ...string) (benchReport, []byte) {
	t.Helper()
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
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append([]string{"--dsrlb", dsrlbBin, "--json", js}, args...)...)
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
	if len(rep.Namespaces) == 0 {
		t.Error("the report names no namespaces")
	}
	for _, name := range rep.Namespaces {
		if netns.Exists(name) {
			t.Errorf("namespace %s left behind", name)
		}
	}
	return rep, out
}

// checkWindows checks that rep has one measurement for each of want
// ("phase mode"), each without error and delivering frames, and, for dsrlb,
// with ring-wait counts; check looks further at each.
func checkWindows(t *testing.T, rep *benchReport, want map[string]bool, check func(key string, m *benchMeasurement)) {
	t.Helper()
	for i := range rep.Measurements {
		m := &rep.Measurements[i]
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
		if check != nil {
			check(key, m)
		}
	}
	for key := range want {
		t.Errorf("no measurement for %s", key)
	}
}

// The bench program runs end to end: every mode (dsrlb, the nft reference
// with and without RPS, direct) in both phases, with the built-in TX-ring
// generator, delivers frames and measures latency, and the bench removes
// its namespaces. Numbers are not checked (timing has no place here): that
// each window measured something is.
func TestBenchSmoke(t *testing.T) {
	rep, out := runBench(t, "--gen", "txring", "--workers", "1",
		"--reps", "1", "--warmup", "300ms", "--window", "1s",
		"--latency-reps", "1", "--latency-rate", "20000")
	want := map[string]bool{}
	for _, phase := range []string{"throughput", "latency"} {
		for _, mode := range []string{"dsrlb-w1", "nft", "nft-local", "direct"} {
			want[phase+" "+mode] = true
		}
	}
	checkWindows(t, &rep, want, func(key string, m *benchMeasurement) {
		if m.Phase == "latency" && (m.Latency == nil || m.Latency.Count == 0) {
			t.Errorf("%s: no latency samples", key)
		}
	})
	if t.Failed() {
		t.Logf("bench output:\n%s", out)
	}
}

// The throughput phase runs with trafgen (netsniff-ng) as well: it starts,
// its frames are counted from its own report, and no trafgen process (its
// forked workers ignore their parent's SIGINT) outlives the run.
func TestBenchSmokeTrafgen(t *testing.T) {
	if _, err := exec.LookPath("trafgen"); err != nil {
		t.Fatal("trafgen not found: install netsniff-ng (.ci/run does)")
	}
	rep, out := runBench(t, "--gen", "trafgen", "--gen-threads", "2", "--modes", "dsrlb,direct", "--workers", "1",
		"--reps", "1", "--warmup", "300ms", "--window", "1s", "--latency=false")
	checkWindows(t, &rep, map[string]bool{"throughput dsrlb-w1": true, "throughput direct": true}, func(key string, m *benchMeasurement) {
		if m.Gen.Sent == 0 {
			t.Errorf("%s: trafgen reported no frames sent", key)
		}
	})
	if ps, _ := exec.Command("pgrep", "-x", "trafgen").Output(); len(ps) > 0 {
		t.Errorf("trafgen processes still run after the bench: %s", ps)
	}
	if t.Failed() {
		t.Logf("bench output:\n%s", out)
	}
}
