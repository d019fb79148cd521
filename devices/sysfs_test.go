package devices

import (
	"context"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const board = "testdata/board" // a fake /sys and /proc of a Raspberry Pi

func readOnce(t *testing.T, d Device) (Reading, error) {
	t.Helper()
	p := d.(*polled)
	if err := p.s.init(); err != nil {
		return Reading{}, err
	}
	p.running = true
	return p.Read(context.Background())
}

func TestDS18B20(t *testing.T) {
	tests := []struct{ id, err string }{
		{"28-0316a2795dff", ""},
		{"28-00000000dead", "CRC check failed"},
		{"28-000000000085", "power-on reset"},
		{"28-0000000000ff", "w1-gpio overlay"},
		{"28-00000000beef", "unexpected w1_slave contents"},
		{"28-0000000000aa", "no temperature"},
	}
	for _, tt := range tests {
		r, err := readOnce(t, NewDS18B20(DS18B20Config{Name: "probe", ID: tt.id, Root: board}))
		if tt.err == "" {
			if err != nil || fieldNum(t, r, "temperature") != 23.125 {
				t.Errorf("%s: %+v, %v; want 23.125 °C", tt.id, r, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tt.err) {
			t.Errorf("%s: %v, want an error containing %q", tt.id, err, tt.err)
		}
	}
}

func TestSystem(t *testing.T) {
	r, err := readOnce(t, NewSystem(SystemConfig{Name: "host", Root: board}))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]float64{"cpu_temp": 48.312, "load1": 0.42, "mem_available": 700, "uptime": 86523.45, "wifi_signal": -56}
	for name, v := range want {
		if got := fieldNum(t, r, name); math.Abs(got-v) > 1e-9 {
			t.Errorf("%s = %v, want %v", name, got, v)
		}
	}
	if fieldNum(t, r, "disk_free") <= 0 {
		t.Error("disk_free not positive")
	}

	// A board without thermal zone or Wi-Fi still reports the rest.
	bare := t.TempDir()
	os.MkdirAll(filepath.Join(bare, "proc"), 0o755)
	os.WriteFile(filepath.Join(bare, "proc/uptime"), []byte("12.5 1.0\n"), 0o644)
	r, err = readOnce(t, NewSystem(SystemConfig{Name: "host", Root: bare}))
	if err != nil || fieldNum(t, r, "uptime") != 12.5 {
		t.Fatalf("bare board: %+v, %v", r, err)
	}
	for _, f := range r.Fields {
		if f.Name == "cpu_temp" || f.Name == "wifi_signal" {
			t.Errorf("bare board reports %s", f.Name)
		}
	}
	// Garbage where numbers belong is an error for that value only.
	os.WriteFile(filepath.Join(bare, "proc/loadavg"), []byte("\xff\xfe garbage\n"), 0o644)
	if r, err = readOnce(t, NewSystem(SystemConfig{Name: "host", Root: bare})); err != nil {
		t.Fatal(err)
	}
	for _, f := range r.Fields {
		if f.Name == "load1" {
			t.Errorf("garbage loadavg reported as %v", f.Num)
		}
	}
}
