package xmpp

import (
	"math"
	"strconv"
	"time"
)

// NSSensorData is XEP-0323 (Internet of Things - Sensor Data).
const NSSensorData = "urn:xmpp:iot:sensordata"

// FieldKind selects the XEP-0323 field element.
type FieldKind uint8

// Field kinds.
const (
	FieldNumeric FieldKind = iota // <numeric value unit>
	FieldBoolean                  // <boolean value>
	FieldString                   // <string value>
)

// SensorField is one XEP-0323 field. All readouts are momentary and
// automatic, as stanzad reports what it measures.
type SensorField struct {
	Name string
	// Type is the XEP-0323 field type flag set on the field, e.g.
	// "historicalMinute"; empty means "momentary".
	Type     string
	Kind     FieldKind
	Num      float64
	Decimals int // -1: shortest round-trip representation
	Unit     string
	Bool     bool
	Str      string
}

// SensorMessage is an unsolicited reading message: a human <body> plus
// XEP-0323 <fields> with one or more nodes (several readings sent as one
// stanza), each at its own timestamp.
type SensorMessage struct {
	To, ID string
	// Type is the message type; empty means "chat".
	Type string
	// Body is the human text; empty means one is derived from the fields:
	// "node: name=value unit ...", one line per node.
	Body  string
	SeqNr uint64
	// Nodes must not be empty.
	Nodes []SensorNode
	// Delay, when non-zero, adds a XEP-0203 <delay> with this stamp: the
	// time the stanza was first queued, for readings sent after an outage.
	Delay time.Time
	// DelayFrom is the JID that delayed the stanza (the agent itself).
	DelayFrom string
}

// AppendSensorMessage appends the encoded message stanza to dst. It does
// not allocate beyond growing dst.
func AppendSensorMessage(dst []byte, m *SensorMessage) []byte {
	typ := m.Type
	if typ == "" {
		typ = "chat"
	}
	dst = append(dst, "<message"...)
	dst = appendAttr(dst, "to", m.To)
	dst = appendAttr(dst, "type", typ)
	if m.ID != "" {
		dst = appendAttr(dst, "id", m.ID)
	}
	dst = append(dst, "><body>"...)
	if m.Body != "" {
		dst = AppendEscaped(dst, m.Body)
	} else {
		for i := range m.Nodes {
			if i > 0 {
				dst = append(dst, '\n')
			}
			dst = AppendSensorBody(dst, m.Nodes[i].ID, m.Nodes[i].Fields)
		}
	}
	dst = append(dst, "</body>"...)
	dst = appendFieldsElement(dst, m.SeqNr, true, m.Nodes)
	if !m.Delay.IsZero() {
		dst = append(dst, "<delay xmlns='urn:xmpp:delay'"...)
		if m.DelayFrom != "" {
			dst = appendAttr(dst, "from", m.DelayFrom)
		}
		dst = append(dst, " stamp='"...)
		dst = AppendTime(dst, m.Delay)
		dst = append(dst, "'/>"...)
	}
	return append(dst, "</message>"...)
}

// AppendSensorBody appends the human summary of a reading,
// "node: temperature=21.5 °C humidity=40.2 %".
func AppendSensorBody(dst []byte, node string, fields []SensorField) []byte {
	dst = AppendEscaped(dst, node)
	dst = append(dst, ':')
	for i := range fields {
		f := &fields[i]
		dst = append(dst, ' ')
		dst = AppendEscaped(dst, f.Name)
		dst = append(dst, '=')
		switch f.Kind {
		case FieldNumeric:
			dst = appendNumber(dst, f.Num, f.Decimals)
			if f.Unit != "" {
				dst = append(dst, ' ')
				dst = AppendEscaped(dst, f.Unit)
			}
		case FieldBoolean:
			dst = strconv.AppendBool(dst, f.Bool)
		default:
			dst = AppendEscaped(dst, f.Str)
		}
	}
	return dst
}

// AppendSensorFields appends a XEP-0323 <fields> element with done='true'
// for one node and timestamp; it is also the pubsub item payload.
func AppendSensorFields(dst []byte, seqnr uint64, node string, ts time.Time, fields []SensorField) []byte {
	dst = appendSeqnr(dst, "<fields", seqnr, true)
	dst = appendSensorNode(dst, node, ts, fields)
	return append(dst, "</fields>"...)
}

// SensorNode is the readout of one node (device) at one timestamp.
type SensorNode struct {
	ID     string
	Time   time.Time
	Fields []SensorField
}

// SensorFailure is a failed readout of one node.
type SensorFailure struct {
	ID   string
	Time time.Time
	Text string
}

func appendFieldsElement(dst []byte, seqnr uint64, done bool, nodes []SensorNode) []byte {
	dst = appendSeqnr(dst, "<fields", seqnr, done)
	for i := range nodes {
		dst = appendSensorNode(dst, nodes[i].ID, nodes[i].Time, nodes[i].Fields)
	}
	return append(dst, "</fields>"...)
}

// appendGroupedFields appends <fields/> with nodes, consecutive nodes
// with the same ID as one <node/> with a <timestamp/> each: a historical
// readout. Telemetry keeps a <node/> per reading (appendFieldsElement),
// which is what receivers count.
func appendGroupedFields(dst []byte, seqnr uint64, done bool, nodes []SensorNode) []byte {
	dst = appendSeqnr(dst, "<fields", seqnr, done)
	for i := range nodes {
		n := &nodes[i]
		if i == 0 || nodes[i-1].ID != n.ID {
			if i > 0 {
				dst = append(dst, "</node>"...)
			}
			dst = append(dst, "<node nodeId='"...)
			dst = AppendEscaped(dst, n.ID)
			dst = append(dst, "'>"...)
		}
		dst = appendTimestamp(dst, n.Time, n.Fields)
	}
	if len(nodes) > 0 {
		dst = append(dst, "</node>"...)
	}
	return append(dst, "</fields>"...)
}

func appendFailureElement(dst []byte, seqnr uint64, fails []SensorFailure) []byte {
	dst = appendSeqnr(dst, "<failure", seqnr, true)
	for _, f := range fails {
		dst = append(dst, "<error"...)
		dst = appendAttr(dst, "nodeId", f.ID)
		dst = append(dst, " timestamp='"...)
		dst = AppendTime(dst, f.Time)
		dst = append(dst, "'>"...)
		dst = AppendEscaped(dst, f.Text)
		dst = append(dst, "</error>"...)
	}
	return append(dst, "</failure>"...)
}

// AppendReadoutMessages appends the messages that answer a XEP-0323
// readout request with seqnr: one <fields/> message with the nodes read
// (if any), then one <failure/> message for the nodes that failed (if
// any); the last one has done='true'. With neither, it appends an empty
// <fields done='true'/> so the requester knows the readout is over.
func AppendReadoutMessages(dst []byte, to string, seqnr uint64, nodes []SensorNode, fails []SensorFailure) []byte {
	if len(nodes) > 0 || len(fails) == 0 {
		dst = appendMessageStart(dst, to)
		dst = appendFieldsElement(dst, seqnr, len(fails) == 0, nodes)
		dst = append(dst, "</message>"...)
	}
	if len(fails) > 0 {
		dst = appendMessageStart(dst, to)
		dst = appendFailureElement(dst, seqnr, fails)
		dst = append(dst, "</message>"...)
	}
	return dst
}

// AppendHistoricalMessage appends one message of a historical readout
// with seqnr: a <fields/> whose consecutive nodes of one device are one
// <node/> with a <timestamp/> each; done marks the last message. A
// readout too large for one stanza is sent as several.
func AppendHistoricalMessage(dst []byte, to string, seqnr uint64, done bool, nodes []SensorNode) []byte {
	dst = appendMessageStart(dst, to)
	dst = appendGroupedFields(dst, seqnr, done, nodes)
	return append(dst, "</message>"...)
}

func appendMessageStart(dst []byte, to string) []byte {
	dst = append(dst, "<message"...)
	dst = appendAttr(dst, "to", to)
	return append(dst, '>')
}

func appendSeqnr(dst []byte, start string, seqnr uint64, done bool) []byte {
	dst = append(dst, start...)
	dst = append(dst, " xmlns='urn:xmpp:iot:sensordata' seqnr='"...)
	dst = strconv.AppendUint(dst, seqnr, 10)
	if done {
		return append(dst, "' done='true'>"...)
	}
	return append(dst, "'>"...)
}

func appendSensorNode(dst []byte, node string, ts time.Time, fields []SensorField) []byte {
	dst = append(dst, "<node nodeId='"...)
	dst = AppendEscaped(dst, node)
	dst = append(dst, "'>"...)
	dst = appendTimestamp(dst, ts, fields)
	return append(dst, "</node>"...)
}

func appendTimestamp(dst []byte, ts time.Time, fields []SensorField) []byte {
	dst = append(dst, "<timestamp value='"...)
	dst = AppendTime(dst, ts)
	dst = append(dst, "'>"...)
	for i := range fields {
		dst = appendSensorField(dst, &fields[i])
	}
	return append(dst, "</timestamp>"...)
}

func appendSensorField(dst []byte, f *SensorField) []byte {
	switch f.Kind {
	case FieldNumeric:
		dst = append(dst, "<numeric"...)
	case FieldBoolean:
		dst = append(dst, "<boolean"...)
	default:
		dst = append(dst, "<string"...)
	}
	dst = appendAttr(dst, "name", f.Name)
	if f.Type == "" {
		dst = append(dst, " momentary='true'"...)
	} else {
		dst = append(dst, ' ')
		dst = append(dst, f.Type...)
		dst = append(dst, "='true'"...)
	}
	dst = append(dst, " automaticReadout='true' value='"...)
	switch f.Kind {
	case FieldNumeric:
		dst = appendNumber(dst, f.Num, f.Decimals)
		dst = append(dst, '\'')
		if f.Unit != "" {
			dst = appendAttr(dst, "unit", f.Unit)
		}
	case FieldBoolean:
		dst = strconv.AppendBool(dst, f.Bool)
		dst = append(dst, '\'')
	default:
		dst = AppendEscaped(dst, f.Str)
		dst = append(dst, '\'')
	}
	return append(dst, "/>"...)
}

// appendNumber writes an xs:double: NaN, INF and -INF for the special
// values, which strconv spells differently.
func appendNumber(dst []byte, v float64, decimals int) []byte {
	switch {
	case math.IsNaN(v):
		return append(dst, "NaN"...)
	case math.IsInf(v, 1):
		return append(dst, "INF"...)
	case math.IsInf(v, -1):
		return append(dst, "-INF"...)
	}
	return strconv.AppendFloat(dst, v, 'f', decimals, 64)
}
