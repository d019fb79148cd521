package agent

import (
	"encoding/binary"
	"errors"
	"math"
	"time"

	"github.com/stanzad/stanzad/devices"
)

// A reading waits in the outbox in this compact form (it is re-encoded as
// a stanza when sent, with a <delay/> if it is late):
//
//	varint unix nanos | string device | uvarint n | n × field
//	field: kind byte | string name | string unit | varint decimals | value
//	value: numeric 8 bytes IEEE 754 | boolean 1 byte | string
//
// where string is uvarint length + bytes.

var errBadRecord = errors.New("agent: malformed outbox record")

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendRecord(b []byte, r devices.Reading) []byte {
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

// decodeRecord parses a record into r, reusing r.Fields.
func decodeRecord(b []byte, r *devices.Reading) error {
	d := recordReader{b: b}
	r.Time = time.Unix(0, d.varint()).UTC()
	r.Device = d.string()
	n := d.uvarint()
	if n > uint64(len(d.b)) { // every field takes at least one byte
		return errBadRecord
	}
	r.Fields = r.Fields[:0]
	for range n {
		var f devices.Field
		kind := d.bytes(1)
		if d.err != nil {
			return d.err
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
			return errBadRecord
		}
		r.Fields = append(r.Fields, f)
	}
	if d.err != nil || len(d.b) != 0 {
		return errBadRecord
	}
	r.Err = nil
	return nil
}
