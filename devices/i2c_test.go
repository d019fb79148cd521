package devices

import (
	"context"
	"encoding/binary"
	"errors"
	"math"
	"strings"
	"testing"

	"periph.io/x/conn/v3/i2c"
	"periph.io/x/conn/v3/i2c/i2ctest"
)

func TestCRC8(t *testing.T) {
	// SHT3x datasheet §4.12: CRC(0xBEEF) = 0x92.
	if got := crc8([]byte{0xBE, 0xEF}); got != 0x92 {
		t.Errorf("crc8(BEEF) = %#x, want 0x92", got)
	}
}

func sht3xFrame(t, rh uint16) []byte {
	b := []byte{byte(t >> 8), byte(t), 0, byte(rh >> 8), byte(rh), 0}
	b[2], b[5] = crc8(b[0:2]), crc8(b[3:5])
	return b
}

func fieldNum(t *testing.T, r Reading, name string) float64 {
	t.Helper()
	for _, f := range r.Fields {
		if f.Name == name {
			return f.Num
		}
	}
	t.Fatalf("reading %+v has no %s", r, name)
	return 0
}

func TestSHT3x(t *testing.T) {
	measure := i2ctest.IO{Addr: 0x44, W: []byte{0x24, 0x00}}
	bus := &i2ctest.Playback{DontPanic: true, Ops: []i2ctest.IO{
		measure, {Addr: 0x44, R: sht3xFrame(0x6666, 0x8000)}, // 25.00 °C, 50.0 %
		measure, {Addr: 0x44, R: []byte{0x66, 0x66, 0x00, 0x80, 0x00, 0x00}}, // bad CRC
	}}
	d := NewSHT3x(I2CConfig{Name: "shed", Addr: 0x44, Open: func() (i2c.BusCloser, error) { return bus, nil }}).(*polled)
	c := newCollector()
	stop := run(t, d, c.emit)
	r := c.next(t)
	if r.Err != nil || math.Abs(fieldNum(t, r, "temperature")-25) > 0.01 || math.Abs(fieldNum(t, r, "humidity")-50) > 0.01 {
		t.Fatalf("reading %+v", r)
	}
	if r, err := d.Read(context.Background()); err == nil || !strings.Contains(err.Error(), "CRC") {
		t.Errorf("read with a corrupt frame = %+v, %v; want a CRC error", r, err)
	}
	// The bus then fails (the playback is exhausted): error readings, and
	// after three in a row Run gives up so the supervisor starts over.
	stop()
}

func TestPolledGivesUpAfterFailures(t *testing.T) {
	bus := &i2ctest.Playback{DontPanic: true} // every Tx fails, like a sensor unplugged
	d := NewSHT3x(I2CConfig{Name: "shed", Addr: 0x44, Interval: 1, Open: func() (i2c.BusCloser, error) { return bus, nil }})
	c := newCollector()
	err := d.Run(context.Background(), c.emit)
	if err == nil || !strings.Contains(err.Error(), "3 reads failed") {
		t.Fatalf("Run = %v, want it to give up after 3 failures", err)
	}
	for range 3 {
		if r := c.next(t); r.Err == nil {
			t.Errorf("reading %+v, want an error reading", r)
		}
	}
	d2 := NewSHT3x(I2CConfig{Name: "x", Addr: 0x44, Open: func() (i2c.BusCloser, error) { return nil, errors.New("no /dev/i2c-1") }})
	if err := d2.Run(context.Background(), c.emit); err == nil {
		t.Error("Run with no bus returned nil")
	}
}

// bme280Trace is what a BME280 answers to periph's bmxx80 driver: chip id,
// calibration, configuration, one forced measurement, halt. The
// calibration and raw values are the worked example of the Bosch BMP280
// datasheet (§3.12: T = 25.08 °C, p = 100653.27 Pa), with typical
// humidity calibration values.
func bme280Trace(adcT, adcP int32, adcH uint16) []i2ctest.IO {
	calib := make([]byte, 26)
	le := binary.LittleEndian
	for i, v := range []int{27504, 26435, -1000, 36477, -10685, 3024, 2855, 140, -7, 15500, -14600, 6000} {
		le.PutUint16(calib[2*i:], uint16(int16(v)))
		if i == 0 || i == 3 { // dig_T1, dig_P1 are unsigned
			le.PutUint16(calib[2*i:], uint16(v))
		}
	}
	calib[25] = 75 // dig_H1
	// dig_H2=362, H3=0, H4=313, H5=50, H6=30 (0xE1..0xE7)
	hcal := []byte{0x6A, 0x01, 0x00, 313 >> 4, byte(313&0x0F) | byte(50&0x0F)<<4, 50 >> 4, 30}
	raw := []byte{byte(adcP >> 12), byte(adcP >> 4), byte(adcP<<4) & 0xF0, byte(adcT >> 12), byte(adcT >> 4), byte(adcT<<4) & 0xF0,
		byte(adcH >> 8), byte(adcH)}
	const a = 0x76
	return []i2ctest.IO{
		{Addr: a, W: []byte{0xD0}, R: []byte{0x60}},
		{Addr: a, W: []byte{0x88}, R: calib},
		{Addr: a, W: []byte{0xE1}, R: hcal},
		{Addr: a, W: []byte{0xF4, 0x6C, 0xF2, 0x03, 0xF5, 0xA0, 0xF4, 0x6C}},
		{Addr: a, W: []byte{0xF4, 0x6D}}, // forced measurement
		{Addr: a, W: []byte{0xF3}, R: []byte{0x00}},
		{Addr: a, W: []byte{0xF7}, R: raw},
	}
}

func TestBME280(t *testing.T) {
	const adcH = 30000
	bus := &i2ctest.Playback{DontPanic: true, Ops: bme280Trace(519888, 415148, adcH)}
	d := NewBME280(I2CConfig{Name: "climate", Addr: 0x76, Open: func() (i2c.BusCloser, error) { return bus, nil }})
	c := newCollector()
	stop := run(t, d, c.emit)
	r := c.next(t)
	if r.Err != nil {
		t.Fatal(r.Err)
	}
	if got := fieldNum(t, r, "temperature"); math.Abs(got-25.08) > 0.005 {
		t.Errorf("temperature %v, want 25.08 (datasheet)", got)
	}
	if got := fieldNum(t, r, "pressure"); math.Abs(got-1006.53) > 0.02 {
		t.Errorf("pressure %v hPa, want 1006.53 (datasheet)", got)
	}
	// Humidity by the datasheet's floating-point formula (BME280 §4.2.3).
	const tFine = 128422.0
	h1, h2, h3, h4, h5, h6 := 75.0, 362.0, 0.0, 313.0, 50.0, 30.0
	v := tFine - 76800
	v = (adcH - (h4*64 + h5/16384*v)) * (h2 / 65536 * (1 + h6/67108864*v*(1+h3/67108864*v)))
	v = v * (1 - h1*v/524288)
	if got := fieldNum(t, r, "humidity"); math.Abs(got-v) > 0.1 {
		t.Errorf("humidity %v, want %.2f", got, v)
	}
	stop()
	// The trace had no halt: periph's Halt is a no-op outside continuous
	// mode, and Close checks that every expected transfer happened.
	if err := bus.Close(); err != nil {
		t.Error(err)
	}
}
