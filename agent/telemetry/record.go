package telemetry

import (
	"encoding/binary"
	"errors"
	"math"
	"slices"
	"time"

	"github.com/stanzad/stanzad/devices"
	"github.com/stanzad/stanzad/xmpp"
)

// An outbox record is one stanza to send: one or more readings (a batch
// that arrived together) and, for alerts, the human text to send instead
// of the derived one. It is re-encoded as a stanza when sent, with a
// <delay/> if it is late:
//
//	record:  header byte | [string body] | reading × 1..n
//	header:  recReadings (1), or recBody (3): a body follows
//	reading: varint unix nanos | string device | uvarint n | n × field
//	field:   kind byte | string name | string unit | varint decimals | value
//	value:   numeric 8 bytes IEEE 754 | boolean 1 byte | string
//
// where string is uvarint length + bytes. A record whose first byte is
// neither header is one bare reading, as the first outbox format had it
// (a varint of a time after 1970 never starts with an odd byte).

var errBadRecord = errors.New("agent: malformed outbox record")

const (
	recReadings = 1
	recBody     = 3
)

// record is a decoded outbox record.
type record struct {
	body     string
	readings []devices.Reading
}

// appendRecordOf appends a record of rs with an optional body.
func appendRecordOf(b []byte, body string, rs []devices.Reading) []byte {
	if body != "" {
		b = append(b, recBody)
		b = appendString(b, body)
	} else {
		b = append(b, recReadings)
	}
	for _, r := range rs {
		b = appendReading(b, r)
	}
	return b
}

// decodeRecord parses an outbox record into rec, reusing its slices.
func decodeRecord(b []byte, rec *record) error {
	rec.body = ""
	d := recordReader{b: b}
	switch {
	case len(b) == 0:
		return errBadRecord
	case b[0] == recBody:
		d.b = d.b[1:]
		rec.body = d.string()
	case b[0] == recReadings:
		d.b = d.b[1:]
	default:
		rec.readings = grow(rec.readings, 1)
		return decodeReading(b, &rec.readings[0])
	}
	n := 0
	for d.err == nil && len(d.b) > 0 {
		rec.readings = grow(rec.readings, n+1)
		rest, err := d.reading(&rec.readings[n])
		if err != nil {
			return err
		}
		d.b = rest
		n++
	}
	if d.err != nil || n == 0 {
		return errBadRecord
	}
	rec.readings = rec.readings[:n]
	return nil
}

// grow returns rs with length n, keeping the elements (and their Fields
// slices) it already had for reuse.
func grow(rs []devices.Reading, n int) []devices.Reading {
	if n <= cap(rs) {
		return rs[:n]
	}
	return append(rs[:cap(rs)], make([]devices.Reading, n-cap(rs))...)
}
func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendReading(b []byte, r devices.Reading) []byte {
	b = binary.AppendVarint(b, r.Time.UnixNano())
	b = appendString(b, r.Device)
	b = binary.AppendUvarint(b, uint64(len(r.Fields)))
	for _, f := range r.Fields {
		b = append(b, byte(f.Kind))
		b = appendString(b, f.Name)
		b = appendString(b, f.Unit)
		b = binary.AppendVarint(b, int64(f.Decimals))
		switch f.Kind {
		case devices.Numeric:
			b = binary.BigEndian.AppendUint64(b, math.Float64bits(f.Num))
		case devices.Boolean:
			v := byte(0)
			if f.Bool {
				v = 1
			}
			b = append(b, v)
		default:
			b = appendString(b, f.Str)
		}
	}
	return b
}

type recordReader struct {
	b   []byte
	err error
}

func (d *recordReader) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err, d.b = errBadRecord, nil
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *recordReader) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.err, d.b = errBadRecord, nil
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *recordReader) bytes(n uint64) []byte {
	if uint64(len(d.b)) < n {
		d.err, d.b = errBadRecord, nil
		return nil
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}

func (d *recordReader) string() string { return string(d.bytes(d.uvarint())) }

// decodeReading parses exactly one reading, reusing r.Fields.
func decodeReading(b []byte, r *devices.Reading) error {
	d := recordReader{b: b}
	rest, err := d.reading(r)
	if err == nil && len(rest) != 0 {
		err = errBadRecord
	}
	return err
}

// reading parses one reading from the front of d and returns what follows.
func (d *recordReader) reading(r *devices.Reading) ([]byte, error) {
	r.Time = time.Unix(0, d.varint()).UTC()
	r.Device = d.string()
	n := d.uvarint()
	if n > uint64(len(d.b)) { // every field takes at least one byte
		return nil, errBadRecord
	}
	r.Fields = r.Fields[:0]
	for range n {
		var f devices.Field
		kind := d.bytes(1)
		if d.err != nil {
			return nil, d.err
		}
		f.Kind = devices.Kind(kind[0])
		f.Name = d.string()
		f.Unit = d.string()
		f.Decimals = int(d.varint())
		switch f.Kind {
		case devices.Numeric:
			if v := d.bytes(8); len(v) == 8 {
				f.Num = math.Float64frombits(binary.BigEndian.Uint64(v))
			}
		case devices.Boolean:
			v := d.bytes(1)
			f.Bool = len(v) == 1 && v[0] == 1
		case devices.String:
			f.Str = d.string()
		default:
			return nil, errBadRecord
		}
		r.Fields = append(r.Fields, f)
	}
	if d.err != nil {
		return nil, errBadRecord
	}
	r.Err = nil
	return d.b, nil
}

// SensorFields appends fs to dst as XEP-0323 fields.
func SensorFields(dst []xmpp.SensorField, fs []devices.Field) []xmpp.SensorField {
	dst = slices.Grow(dst, len(fs))
	for _, f := range fs {
		sf := xmpp.SensorField{Name: f.Name, Num: f.Num, Decimals: f.Decimals, Unit: f.Unit, Bool: f.Bool, Str: f.Str}
		switch f.Kind {
		case devices.Numeric:
			sf.Kind = xmpp.FieldNumeric
		case devices.Boolean:
			sf.Kind = xmpp.FieldBoolean
		default:
			sf.Kind = xmpp.FieldString
		}
		dst = append(dst, sf)
	}
	return dst
}
