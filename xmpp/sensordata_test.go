package xmpp

import (
	"bytes"
	"flag"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite golden files")

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs:\ngot:  %s\nwant: %s", name, got, want)
	}
}

var ts = time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)

func climate() []SensorField {
	return []SensorField{
		{Name: "temperature", Kind: FieldNumeric, Num: 21.5, Decimals: 1, Unit: "°C"},
		{Name: "humidity", Kind: FieldNumeric, Num: 40.2, Decimals: 1, Unit: "%"},
	}
}

func TestSensorMessageGolden(t *testing.T) {
	tests := []struct {
		file string
		msg  SensorMessage
	}{
		{"reading.xml", SensorMessage{To: "operator@iot.test", ID: "r-42", SeqNr: 42, Nodes: []SensorNode{{ID: "greenhouse", Time: ts, Fields: climate()}}}},
		{"reading-delayed.xml", SensorMessage{To: "operator@iot.test", ID: "r-43", SeqNr: 43, Nodes: []SensorNode{{ID: "greenhouse", Time: ts,
			Fields: climate()}}, Delay: ts.Add(time.Second), DelayFrom: "device@iot.test"}},
		{"reading-kinds.xml", SensorMessage{To: "room@conference.iot.test", Type: "groupchat", SeqNr: 1, Nodes: []SensorNode{{ID: "door<&>'\"",
			Time: ts.Add(1500 * time.Millisecond), Fields: []SensorField{
				{Name: "open", Kind: FieldBoolean, Bool: true},
				{Name: "line", Kind: FieldString, Str: "a<b & 'c' \x01 \xff"},
				{Name: "bad", Kind: FieldNumeric, Num: math.NaN(), Decimals: -1},
				{Name: "inf", Kind: FieldNumeric, Num: math.Inf(-1), Decimals: -1},
				{Name: "shortest", Kind: FieldNumeric, Num: 0.1 + 0.2, Decimals: -1},
			}}}}},
		{"reading-batch.xml", SensorMessage{To: "operator@iot.test", ID: "r-44", SeqNr: 44, Nodes: []SensorNode{
			{ID: "greenhouse", Time: ts, Fields: climate()},
			{ID: "relay1", Time: ts.Add(time.Millisecond), Fields: []SensorField{{Name: "state", Kind: FieldBoolean, Bool: true}}},
		}}},
		// A batch of one device's readings: still a <node/> per reading,
		// which is what receivers count (a historical readout groups them).
		{"reading-batch-one-device.xml", SensorMessage{To: "operator@iot.test", ID: "r-45", SeqNr: 45, Nodes: []SensorNode{
			{ID: "greenhouse", Time: ts, Fields: climate()},
			{ID: "greenhouse", Time: ts.Add(time.Second), Fields: climate()},
		}}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			got := AppendSensorMessage(nil, &tt.msg)
			golden(t, tt.file, got)
			// What we send must parse as one well-formed stanza.
			r := newReader(strings.NewReader(header+string(got)), 0, 0)
			r.header()
			el, err := r.next()
			if err != nil {
				t.Fatalf("encoded stanza does not parse: %v", err)
			}
			f := el.Child(NSSensorData, "fields")
			if f == nil || f.Attr("seqnr") != itoa(tt.msg.SeqNr) {
				t.Fatalf("fields/seqnr missing: %s", el)
			}
			nodes := f.Children
			if len(nodes) != len(tt.msg.Nodes) {
				t.Fatalf("%d nodes decoded, want %d", len(nodes), len(tt.msg.Nodes))
			}
			for i, n := range nodes {
				if got := len(n.Child("", "timestamp").Children); got != len(tt.msg.Nodes[i].Fields) {
					t.Errorf("node %d: %d fields decoded, want %d", i, got, len(tt.msg.Nodes[i].Fields))
				}
			}
		})
	}
}

func BenchmarkAppendSensorMessage(b *testing.B) {
	b.ReportAllocs()
	m := SensorMessage{To: "operator@iot.test", ID: "r-42", SeqNr: 42, Nodes: []SensorNode{{ID: "greenhouse", Time: ts, Fields: climate()}}}
	var buf []byte
	for b.Loop() {
		m.SeqNr++
		buf = AppendSensorMessage(buf[:0], &m)
	}
}
