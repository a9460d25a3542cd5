package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Hostile or broken config files: each is refused with exit code 2 and a
// clear error naming the problem, and nothing is started.
func TestConfigHardening(t *testing.T) {
	dir := t.TempDir()
	huge := bytes.Repeat([]byte("# padding padding padding padding padding padding\n"), 25000) // > 1 MiB
	binary := append([]byte("interface: "+noIface+"\n"), 0x00, 0xff, 0xfe, 0x01)
	cases := []struct {
		name string
		body []byte
		want string
	}{
		{"huge", append(huge, []byte(goodConfig)...), "is larger than 1048576 bytes"},
		{"binary", binary, "is not text"},
		{"duplicate key", []byte(strings.Replace(goodConfig, "interface: "+noIface+"\n", "interface: "+noIface+"\ninterface: eth1\n", 1)), "interface: duplicate key (first at line 1) (line 2)"},
		{"unknown key", []byte(strings.Replace(goodConfig, "    port: 80\n", "    port: 80\n    colour: red\n", 1)), "services[0].colour: unknown key (line 6)"},
		{"duplicate service name", []byte(goodConfig + "  - name: web\n    vip: 10.0.0.101\n    backends:\n      - address: 10.0.0.11\n"), `services[1].name: duplicate name "web"`},
		{"duplicate vip and port", []byte(goodConfig + "  - name: web2\n    vip: 10.0.0.100\n    port: 80\n    backends:\n      - address: 10.0.0.11\n"), "10.0.0.100:80/tcp is also used by services[0]"},
		{"vip equal to a backend", []byte(goodConfig + "  - name: other\n    vip: 10.0.0.11\n    backends:\n      - address: 10.0.0.12\n"), "10.0.0.11 is the vip of services[1]"},
		{"yaml alias", []byte("interface: &i " + noIface + "\nworkers: *i\nservices: []\n"), "YAML aliases are not supported"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := filepath.Join(dir, strings.ReplaceAll(c.name, " ", "_")+".yaml")
			if err := os.WriteFile(p, c.body, 0o644); err != nil {
				t.Fatal(err)
			}
			for _, args := range [][]string{{"run", "--config", p}, {"config", "check", p}} {
				code, stdout, stderr := run(t, args...)
				if code != exitUsage {
					t.Errorf("%v: exit %d, want %d\n%s", args, code, exitUsage, stderr)
				}
				if !strings.Contains(stderr, c.want) {
					t.Errorf("%v: stderr lacks %q:\n%s", args, c.want, stderr)
				}
				if stdout != "" {
					t.Errorf("%v: printed %q: something ran", args, stdout)
				}
			}
		})
	}
}
