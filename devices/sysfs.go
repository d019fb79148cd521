package devices

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// DS18B20Config configures a DS18B20 on the kernel's 1-Wire bus.
type DS18B20Config struct {
	Name     string
	ID       string        // 28-xxxxxxxxxxxx, as in /sys/bus/w1/devices
	Root     string        // prefix for /sys (tests); default "/"
	Interval time.Duration // default 10s
}

// NewDS18B20 returns a DS18B20 read through the kernel's w1 driver
// (/sys/bus/w1/devices/ID/w1_slave). On boards the 1-Wire bus is a GPIO
// driven by the kernel (dtoverlay=w1-gpio on a Raspberry Pi), which owns
// the bus: periph's onewire package needs a bus master it drives itself
// (a DS248x bridge), so the kernel interface is the one that works on the
// boards we target. The kernel checks the CRC; we check its verdict.
func NewDS18B20(cfg DS18B20Config) Device {
	if cfg.Interval <= 0 {
		cfg.Interval = 10 * time.Second
	}
	return &polled{name: cfg.Name, interval: cfg.Interval, s: &ds18b20{cfg: cfg}}
}

type ds18b20 struct{ cfg DS18B20Config }

func (d *ds18b20) path() string {
	return filepath.Join(rootOr(d.cfg.Root), "sys/bus/w1/devices", d.cfg.ID, "w1_slave")
}

func (d *ds18b20) init() error {
	if _, err := os.Stat(d.path()); err != nil {
		return fmt.Errorf("ds18b20 %s: %w (is the w1-gpio overlay loaded and the sensor wired?)", d.cfg.ID, err)
	}
	return nil
}

func (d *ds18b20) close() error { return nil }

// sense parses w1_slave:
//
//	72 01 4b 46 7f ff 0e 10 57 : crc=57 YES
//	72 01 4b 46 7f ff 0e 10 57 t=23125
func (d *ds18b20) sense(context.Context) ([]Field, error) {
	b, err := readSmall(d.path(), 512)
	if err != nil {
		return nil, fmt.Errorf("ds18b20 %s: %w", d.cfg.ID, err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) != 2 {
		return nil, fmt.Errorf("ds18b20 %s: unexpected w1_slave contents %q", d.cfg.ID, clean(truncateText(string(b), 80)))
	}
	if !strings.HasSuffix(strings.TrimSpace(lines[0]), "YES") {
		return nil, fmt.Errorf("ds18b20 %s: CRC check failed (loose wiring or missing pull-up?)", d.cfg.ID)
	}
	_, t, ok := strings.Cut(lines[1], "t=")
	milli, err := strconv.Atoi(strings.TrimSpace(t))
	if !ok || err != nil {
		return nil, fmt.Errorf("ds18b20 %s: no temperature in %q", d.cfg.ID, clean(truncateText(lines[1], 80)))
	}
	// 85 °C is the power-on reset value of the scratchpad: the conversion
	// did not run (brown-out, parasite power too weak).
	if milli == 85000 {
		return nil, fmt.Errorf("ds18b20 %s: power-on reset value 85 °C; check the supply", d.cfg.ID)
	}
	return []Field{Number("temperature", float64(milli)/1000, 3, "°C")}, nil
}

func rootOr(root string) string {
	if root == "" {
		return "/"
	}
	return root
}

// readSmall reads a file of at most max bytes; sysfs and procfs files are
// small, and a bigger one means the path is not what we think.
func readSmall(path string, max int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b := make([]byte, max+1)
	n, err := f.Read(b)
	if err != nil && n == 0 {
		return nil, err
	}
	if int64(n) > max {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, max)
	}
	return b[:n], nil
}

// SystemConfig configures the board's own health readings.
type SystemConfig struct {
	Name     string
	Root     string        // prefix for /proc and /sys (tests); default "/"
	Interval time.Duration // default 60s
}

// NewSystem returns a device reporting CPU temperature, load, available
// memory, free disk space, uptime and, where the board has Wi-Fi, the
// signal level. A value the board does not have is left out; the
// reading fails only when none can be read.
func NewSystem(cfg SystemConfig) Device {
	if cfg.Interval <= 0 {
		cfg.Interval = time.Minute
	}
	return &polled{name: cfg.Name, interval: cfg.Interval, s: &system{root: rootOr(cfg.Root)}}
}

type system struct{ root string }

func (s *system) init() error  { return nil }
func (s *system) close() error { return nil }

func (s *system) file(p string) ([]byte, error) { return readSmall(filepath.Join(s.root, p), 64<<10) }

func (s *system) sense(context.Context) ([]Field, error) {
	var fs []Field
	var errs []error
	add := func(f Field, err error) {
		if err != nil {
			errs = append(errs, err)
			return
		}
		fs = append(fs, f)
	}
	add(s.cpuTemp())
	add(s.load1())
	add(s.memAvailable())
	add(s.diskFree())
	add(s.uptime())
	if f, ok := s.wifi(); ok {
		fs = append(fs, f)
	}
	if len(fs) == 0 {
		return nil, fmt.Errorf("system: no value readable: %w", errors.Join(errs...))
	}
	return fs, nil
}

func (s *system) cpuTemp() (Field, error) {
	b, err := s.file("sys/class/thermal/thermal_zone0/temp")
	if err != nil {
		return Field{}, err
	}
	milli, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return Field{}, fmt.Errorf("thermal_zone0/temp: %w", err)
	}
	return Number("cpu_temp", float64(milli)/1000, 1, "°C"), nil
}

func (s *system) load1() (Field, error) {
	v, err := s.firstNumber("proc/loadavg")
	return Number("load1", v, 2, ""), err
}

// firstNumber returns the first whitespace-separated number of a file
// (/proc/loadavg, /proc/uptime).
func (s *system) firstNumber(path string) (float64, error) {
	b, err := s.file(path)
	if err != nil {
		return 0, err
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0, fmt.Errorf("%s: empty", path)
	}
	v, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", path, err)
	}
	return v, nil
}

func (s *system) memAvailable() (Field, error) {
	b, err := s.file("proc/meminfo")
	if err != nil {
		return Field{}, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "MemAvailable:"); ok {
			f := strings.Fields(rest)
			if len(f) == 0 {
				break
			}
			kb, err := strconv.ParseUint(f[0], 10, 64)
			if err != nil {
				return Field{}, fmt.Errorf("proc/meminfo: %w", err)
			}
			return Number("mem_available", float64(kb)/1024, 1, "MiB"), nil
		}
	}
	return Field{}, errors.New("proc/meminfo: no MemAvailable (kernel older than 3.14)")
}

func (s *system) diskFree() (Field, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(s.root, &st); err != nil {
		return Field{}, fmt.Errorf("statfs %s: %w", s.root, err)
	}
	return Number("disk_free", float64(st.Bavail)*float64(st.Bsize)/(1<<20), 0, "MiB"), nil
}

func (s *system) uptime() (Field, error) {
	v, err := s.firstNumber("proc/uptime")
	return Number("uptime", v, 0, "s"), err
}

// wifi reads the signal level of the first interface in
// /proc/net/wireless ("wlan0: 0000   54.  -56.  -256 ...").
func (s *system) wifi() (Field, bool) {
	b, err := s.file("proc/net/wireless")
	if err != nil {
		return Field{}, false
	}
	lines := strings.Split(string(b), "\n")
	for _, line := range lines[min(2, len(lines)):] {
		f := strings.Fields(line)
		if len(f) < 4 || !strings.HasSuffix(f[0], ":") {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSuffix(f[3], "."), 64)
		if err != nil {
			continue
		}
		return Number("wifi_signal", v, 0, "dBm"), true
	}
	return Field{}, false
}
