package telemetry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stanzad/stanzad/agent/config"
	"github.com/stanzad/stanzad/agent/outbox"
	"github.com/stanzad/stanzad/devices"
	"github.com/stanzad/stanzad/xmpp"
)

// lateAfter: a reading sent later than this after it was taken carries an
// XEP-0203 <delay/> with its original time.
const lateAfter = 2 * time.Second

// sendBatch is how many outbox records a sink takes per round.
const sendBatch = 256

// Batching: readings that arrive together go to a message sink as one
// stanza of at most the sink's batch (default defaultBatch) readings and
// about maxBatchBytes of record.
const (
	defaultBatch  = 32
	maxBatchBytes = 16 << 10
)

// Sink is one [[sink]]: a destination with its own device selection,
// filter and outbox. Readings go into the outbox on the dispatcher
// goroutine and out to the network on the sink's sender goroutine, so a
// slow or absent network never holds up devices. Outbox ids are the
// seqnr, so a receiver sees one contiguous sequence and any gap is a
// real loss.
type Sink struct {
	p       *Pipeline
	id      uint64      // unique in the agent's life: the high bits of its ack tags
	key     string      // the outbox directory: a reload matches sinks by it
	cfg     config.Sink // as configured (zero for the MQTT bridge's sink)
	kind    string      // chat, muc, pubsub, pep, mqtt
	name    string      // for logs and status: "chat operator@iot.test"
	to      string      // chat: the JID; muc: the room; pubsub: the service
	dest    xmpp.JID    // chat: the recipient; muc: the room (parsed once)
	from    string      // the agent's bare JID (XEP-0203 delay 'from')
	devices []string
	box     *outbox.Outbox
	wake    chan struct{} // capacity 1: "the outbox has news"
	cancel  context.CancelFunc
	unkeep  func()         // ends the outbox upkeep (outbox.Keep)
	wg      sync.WaitGroup // the sink's goroutines

	// Used by the dispatcher goroutine only.
	filter   filter
	batch    []devices.Reading
	batchSz  int
	batchMax int // readings per stanza

	room *room       // muc only
	pub  *publisher  // pubsub and pep only
	mq   *mqttSender // the MQTT bridge's sink only

	filtered atomic.Uint64 // readings skipped by deadband or min_interval
	rejected atomic.Uint64 // readings the server refused for good
	bounced  atomic.Uint64 // reading messages the server answered with an error
	lost     atomic.Uint64 // bounced after the outbox had let them go

	dl   *deliveries // chat and muc only: bounces put readings back
	hold sinkHold    // chat and muc only: not sending until then

	// Used only by the sender goroutine.
	buf   []byte
	rec   record
	nodes []xmpp.SensorNode
	flds  []xmpp.SensorField
	idBuf []byte
	msg   xmpp.SensorMessage
}

// tagBits splits an ack tag into sink id (the top 16 bits; newSinkID)
// and outbox id.
const tagBits = 48

func (s *Sink) tag(id uint64) uint64 { return s.id<<tagBits | id }

// NewSink builds the sink of cfg.Sinks[i] for the agent self around
// box, the outbox of the sink it replaces, or opens its outbox when box
// is nil. The outbox directory is named after the destination, so
// reordering sinks in the config keeps each receiver's sequence.
func (p *Pipeline) NewSink(cfg *config.Config, i int, self xmpp.JID, box *outbox.Outbox) (*Sink, error) {
	log := p.log
	sc := cfg.Sinks[i]
	dir, err := sinkKey(sc)
	if err != nil {
		return nil, err
	}
	s := &Sink{
		p: p, id: p.newSinkID(), key: dir, cfg: sc, kind: sc.Kind, from: self.Bare().String(),
		wake: make(chan struct{}, 1),
	}
	s.refilter(sc)
	switch sc.Kind {
	case "chat":
		to, err := xmpp.ParseJID(sc.To)
		if err != nil {
			return nil, err
		}
		s.to, s.dest, s.name = sc.To, to, "chat "+sc.To
	case "muc":
		room, err := xmpp.ParseJID(sc.Room)
		if err != nil {
			return nil, err
		}
		s.to, s.dest, s.name = room.Bare().String(), room.Bare(), "muc "+room.Bare().String()
		s.room = newRoom(room.Bare(), sc.Nick, sc.Password.Reveal(), log)
	case "pubsub", "pep":
		s.to = sc.Service
		s.name = sc.Kind + " " + sc.Service + " " + sc.Node
		if sc.Kind == "pep" {
			s.name = "pep " + sc.Node
		}
		s.pub = &publisher{service: sc.Service, node: sc.Node, config: xmpp.NodeConfig{
			PersistItems: true, MaxItems: sc.MaxItems,
		}, acc: newAccessControl(sc, self)}
	default:
		return nil, fmt.Errorf("kind %q is not supported", sc.Kind)
	}
	// Message sinks keep what the server acknowledged for a while: it
	// may still bounce it.
	var retain time.Duration
	if s.pub == nil {
		retain = deliveryRetain
	}
	if box == nil {
		if box, err = openBox(cfg, dir, s.name, retain, log); err != nil {
			return nil, err
		}
	}
	s.box = box
	if s.pub == nil {
		s.dl = newDeliveries(box)
	}
	return s, nil
}

// sinkKey names a sink's outbox directory: its kind and destination. Two
// sinks with one key would share an outbox; a reload matches old and new
// sinks by it.
func sinkKey(sc config.Sink) (string, error) {
	switch sc.Kind {
	case "chat":
		return "chat-" + sc.To, nil
	case "muc":
		room, err := xmpp.ParseJID(sc.Room)
		if err != nil {
			return "", err
		}
		return "muc-" + room.Bare().String(), nil
	case "pubsub":
		return "pubsub-" + sc.Service + "-" + sc.Node, nil
	case "pep":
		return "pep-" + sc.Node, nil
	}
	return "", fmt.Errorf("kind %q is not supported", sc.Kind)
}

// refilter sets what the sink takes (devices) and lets through (filter,
// batch) from its config. Used on the dispatcher goroutine only, once
// the sink runs: a reload changes filters in place.
func (s *Sink) refilter(sc config.Sink) {
	s.devices, s.batchMax = sc.Devices, sc.Batch
	s.filter.minInterval, s.filter.maxSilence, s.filter.deadband = sc.MinInterval.Duration, sc.MaxSilence.Duration, sc.Deadband
}

// openBox opens a sink's outbox under state_dir/outbox/dir; the sinks
// share outbox_max.
func openBox(cfg *config.Config, dir, name string, retain time.Duration, log *slog.Logger) (*outbox.Outbox, error) {
	n := len(cfg.Sinks)
	if cfg.MQTT != nil {
		n++
	}
	box, err := outbox.Open(filepath.Join(cfg.Agent.StateDir, "outbox", safeName(dir)), outbox.Options{
		Max:    int64(cfg.Agent.OutboxMax) / int64(max(1, n)),
		Logger: log.With("component", "outbox", "sink", name),
		Retain: retain,
	})
	if err != nil {
		return nil, fmt.Errorf("outbox: %w", err)
	}
	return box, nil
}

// safeName makes a directory name of a destination: JIDs and node names
// may hold '/' (resources, node paths); the name keeps them apart.
func safeName(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r == '/' || r == '\\' || r == 0:
			return '_'
		case r == ':':
			return '_'
		}
		return r
	}, s)
}

// Wants reports whether the sink's device selection matches name; entries
// are names or path.Match globs ("*", "temp-*").
func (s *Sink) Wants(name string) bool {
	if len(s.devices) == 0 {
		return true
	}
	for _, pat := range s.devices {
		if pat == name || pat == "*" {
			return true
		}
		if ok, _ := path.Match(pat, name); ok {
			return true
		}
	}
	return false
}

// batchLimit is how many readings may share one stanza: pubsub items hold
// one reading each (one item per publish, XEP-0060 §7.1.1).
func (s *Sink) batchLimit() int {
	switch {
	case s.pub != nil:
		return 1
	case s.batchMax <= 0:
		return defaultBatch
	}
	return s.batchMax
}

// add puts r in the sink's current batch, queueing the batch first if r
// would not fit. It never touches the network.
func (s *Sink) add(r devices.Reading, scratch []byte, log *slog.Logger) []byte {
	size := recordSize(r)
	if len(s.batch) > 0 && (len(s.batch) >= s.batchLimit() || s.batchSz+size > maxBatchBytes) {
		scratch = s.flush(scratch, log)
	}
	s.batch = append(s.batch, r)
	s.batchSz += size
	return scratch
}

// flush queues the current batch as one outbox record.
func (s *Sink) flush(scratch []byte, log *slog.Logger) []byte {
	if len(s.batch) == 0 {
		return scratch
	}
	scratch = s.enqueue(scratch, "", s.batch, log)
	clear(s.batch)
	s.batch, s.batchSz = s.batch[:0], 0
	return scratch
}

// enqueue stores one record (one stanza) and wakes the sender.
func (s *Sink) enqueue(scratch []byte, body string, rs []devices.Reading, log *slog.Logger) []byte {
	scratch = appendRecordOf(scratch[:0], body, rs)
	if _, err := s.box.Append(scratch); err != nil {
		log.Warn("readings not queued", "sink", s.name, "readings", len(rs), "err", err)
		return scratch
	}
	select {
	case s.wake <- struct{}{}:
	default:
	}
	return scratch
}

// recordSize estimates the bytes r takes in a record.
func recordSize(r devices.Reading) int {
	n := 16 + len(r.Device)
	for _, f := range r.Fields {
		n += 12 + len(f.Name) + len(f.Unit) + len(f.Str)
	}
	return n
}

// run sends outbox records until ctx is done.
func (s *Sink) run(ctx context.Context) {
	log := s.p.log.With("sink", s.name)
	switch {
	case s.pub != nil:
		s.pub.run(ctx, s, log)
		return
	case s.mq != nil:
		s.mq.run(ctx, s, log)
		return
	}
	s.runMessages(ctx, log)
}

// runMessages sends records as chat or groupchat messages on the live
// session. On a new stream everything not yet acknowledged is sent again,
// in order; on a resumed stream the session itself resends what the
// server missed, so it carries on where it was. A room sink sends only
// while the agent is in the room; a chat sink holds while its recipient
// is known to be offline, and any message sink holds for a while after
// the server bounced a reading (see deliveries).
func (s *Sink) runMessages(ctx context.Context, log *slog.Logger) {
	c := s.p.conn()
	var sess *xmpp.Session
	var stream uint64 // sess.Stream(): what was sent belongs to it
	var cursor uint64 // highest id sent on the stream
	for {
		cur, err := c.WaitConnected(ctx)
		if err != nil {
			return
		}
		var roomChanged chan struct{}
		if s.room != nil {
			roomChanged = s.room.changed
			if !s.room.joinedOn(cur) {
				select {
				case <-roomChanged:
				case <-cur.Done():
				case <-ctx.Done():
					return
				}
				continue
			}
		}
		if cur != sess {
			sess = cur
			// Not Resumed: the stream resumed may be one that a session
			// this sink never saw started, dropping what was sent here.
			if cur.Stream() != stream {
				stream = cur.Stream()
				cursor = s.box.Stats().Acked
				s.dl.newStream()
			}
		}
		if s.dl.takeMoved() {
			cursor = s.box.Stats().Acked // bounced records are due again
		}
		var retry *time.Timer
		var retryC <-chan time.Time
		if wait := s.held(); wait > 0 {
			retry = time.NewTimer(wait)
			retryC = retry.C
		} else if wait == 0 {
			cursor = s.sendPending(ctx, sess, cursor, log)
		}
		select {
		case <-ctx.Done():
		case <-s.wake:
		case <-sess.Done():
		case <-roomChanged:
		case <-retryC:
			s.p.h.HoldChanged() // the hold is over: presence drops it
		}
		if retry != nil {
			retry.Stop()
		}
		if ctx.Err() != nil {
			return
		}
	}
}

// held reports how long the sink must not send: 0 to send now, the rest
// of a hold after a bounce, or -1 while the recipient is offline (until
// its presence changes).
func (s *Sink) held() time.Duration {
	if wait, _ := s.hold.left(time.Now()); wait > 0 {
		return wait
	}
	if s.kind == "chat" && s.p.h.Offline(s.dest) {
		return -1
	}
	return 0
}

// sendPending sends records after cursor until the outbox is drained or
// the session fails, and returns the new cursor. Records the server
// already has (delivered before an earlier one bounced, or in flight)
// are passed over.
func (s *Sink) sendPending(ctx context.Context, sess *xmpp.Session, cursor uint64, log *slog.Logger) uint64 {
	for {
		rs := s.box.Pending(cursor, sendBatch)
		if len(rs) == 0 {
			return cursor
		}
		for _, rec := range rs {
			if !s.dl.claim(rec.ID) {
				cursor = rec.ID
				continue
			}
			if err := decodeRecord(rec.Payload, &s.rec); err != nil {
				log.Error("outbox record unreadable; skipped", "id", rec.ID, "err", err)
				s.dl.skip(rec.ID, time.Now())
				cursor = rec.ID
				continue
			}
			s.encode(&s.rec, rec.ID, time.Now())
			if err := sess.SendTracked(ctx, s.buf, s.tag(rec.ID)); err != nil {
				if errors.Is(err, xmpp.ErrQueuedForResume) {
					cursor = rec.ID // a resumed stream resends it itself
				} else {
					s.dl.unsent(rec.ID)
				}
				log.Debug("reading not sent; waiting for the next session", "id", rec.ID, "err", err)
				return cursor
			}
			cursor = rec.ID
		}
	}
}

// encode fills s.buf with the message stanza for rec; a record older
// than lateAfter at now gets a <delay/> with the time of its first
// reading.
func (s *Sink) encode(rec *record, seq uint64, now time.Time) {
	s.flds = s.flds[:0]
	for _, r := range rec.readings {
		s.flds = SensorFields(s.flds, r.Fields)
	}
	s.nodes = s.nodes[:0]
	off := 0
	for _, r := range rec.readings {
		n := len(r.Fields)
		s.nodes = append(s.nodes, xmpp.SensorNode{ID: r.Device, Time: r.Time, Fields: s.flds[off : off+n : off+n]})
		off += n
	}
	var delay time.Time
	if t := rec.readings[0].Time; now.Sub(t) > lateAfter {
		delay = t // XEP-0203: when it was taken
	}
	s.idBuf = strconv.AppendUint(append(s.idBuf[:0], "r-"...), seq, 10)
	typ := "chat"
	if s.room != nil {
		typ = "groupchat"
	}
	s.msg = xmpp.SensorMessage{
		To:        s.to,
		Type:      typ,
		ID:        string(s.idBuf),
		Body:      rec.body,
		SeqNr:     seq,
		Nodes:     s.nodes,
		Delay:     delay,
		DelayFrom: s.from,
	}
	if s.buf == nil {
		// A reading of a dozen fields fits; grown by append from nil,
		// this long-lived buffer would sit in a size class of its own
		// (1,792 bytes for the bench's readings), which costs the
		// runtime 20-30 KB whatever the object (decisions §14).
		s.buf = make([]byte, 0, 2<<10)
	}
	s.buf = xmpp.AppendSensorMessage(s.buf[:0], &s.msg)
}

// Name is the sink for logs and status: "chat operator@iot.test".
func (s *Sink) Name() string { return s.name }

// Kind is the sink's kind: chat, muc, pubsub, pep or mqtt.
func (s *Sink) Kind() string { return s.kind }

// Key names the sink's outbox directory: its kind and destination.
func (s *Sink) Key() string { return s.key }

// Start runs the sink's goroutines (sender, room) and has its outbox kept
// (synced, compacted) on the shared upkeep goroutine, until
// Halt, StopRun or ctx stops them.
func (s *Sink) Start(ctx context.Context) {
	ctx, s.cancel = context.WithCancel(ctx)
	s.unkeep = s.box.Keep(ctx) // syncs and compaction, on the shared upkeep goroutine
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.run(ctx)
	}()
	if s.room != nil {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.room.run(ctx, s.p)
		}()
	}
}

// StopRun stops the sink's goroutines; its outbox stays open.
func (s *Sink) StopRun() {
	if s.cancel != nil {
		s.cancel()
		s.unkeep()
		s.wg.Wait()
		s.cancel = nil
	}
}

// Rebind makes a paused sink send as self: a new account.
func (s *Sink) Rebind(self xmpp.JID) {
	s.from = self.Bare().String()
	if s.pub != nil {
		s.pub.acc = newAccessControl(s.cfg, self)
	}
}

// Halt stops the sink's goroutines and closes its outbox; what it still
// holds stays on disk for the next sink with its destination.
func (s *Sink) Halt() {
	s.StopRun()
	if err := s.box.Close(); err != nil {
		s.p.log.Warn("closing outbox", "sink", s.name, "err", err)
	}
}

// settle waits until deadline at most for the sink's readings in flight
// on the session to be acknowledged, so that stopping it does not leave
// them to be sent twice.
func (s *Sink) settle(deadline time.Time) {
	if s.dl == nil {
		return
	}
	for s.dl.inFlight() && time.Now().Before(deadline) && s.p.conn().Session() != nil {
		time.Sleep(20 * time.Millisecond)
	}
}

// OutboxStatus is one sink's queue.
type OutboxStatus struct {
	Sink             string // kind and destination: "chat operator@iot.test"
	Pending, Dropped int
	Degraded         bool   // disk failed: queued in memory only
	Filtered         uint64 // readings skipped by deadband or min_interval
	Rejected         uint64 // readings the server refused for good
	Bounced          uint64 // reading messages the server answered with an error
	Lost             uint64 // bounced after the outbox had let them go
	Note             string // e.g. "not in the room"
}

// String is the human line for one sink.
func (o OutboxStatus) String() string {
	line := fmt.Sprintf("%s: %d waiting, %d dropped (full)", o.Sink, o.Pending, o.Dropped)
	if o.Filtered > 0 {
		line += fmt.Sprintf(", %d filtered", o.Filtered)
	}
	if o.Bounced > 0 {
		line += fmt.Sprintf(", %d bounced by the server", o.Bounced)
	}
	if o.Rejected > 0 {
		line += fmt.Sprintf(", %d refused by the server", o.Rejected)
	}
	if o.Lost > 0 {
		line += fmt.Sprintf(", %d lost (bounced after leaving the outbox)", o.Lost)
	}
	if o.Degraded {
		line += ", in memory only: disk failed"
	}
	if o.Note != "" {
		line += ", " + o.Note
	}
	return line
}

// status is the sink's queue and why it does not send, if it does not;
// sess is the live session or nil.
func (s *Sink) status(sess *xmpp.Session, now time.Time) OutboxStatus {
	st := s.box.Stats()
	o := OutboxStatus{Sink: s.name, Pending: st.Pending, Dropped: int(st.Dropped), Degraded: st.Degraded != nil,
		Filtered: s.filtered.Load(), Rejected: s.rejected.Load(), Bounced: s.bounced.Load(), Lost: s.lost.Load()}
	if wait, why := s.hold.left(now); wait > 0 {
		o.Note = fmt.Sprintf("held: %s; sending again in %s", why, wait.Round(time.Second))
	} else if s.dl != nil && s.held() < 0 {
		o.Note = "held: " + s.to + " is offline; sent when they are back"
	}
	if s.mq != nil && !s.mq.Client.IsConnected() {
		o.Note = "broker unreachable"
	}
	if s.room != nil && sess != nil && !s.room.joinedOn(sess) {
		o.Note = "not in the room"
		if g := s.room.goneWhy(); g != "" {
			o.Note = g
		}
	}
	if s.pub != nil {
		o.Sink = s.kind + " " + s.pub.where() // the nodes, not the template
		if s.kind == "pubsub" {
			o.Sink = s.kind + " " + s.pub.service + " " + s.pub.where()
		}
		o.Note = appendNote(o.Note, s.pub.acc.status()) // nodes looser than access_model
	}
	return o
}
