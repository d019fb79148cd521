// Package outbox is the agent's persistent queue of readings not yet
// acknowledged by the XMPP server. It is what makes "no reading lost"
// true across network outages, server restarts and agent crashes.
//
// # Format
//
// A directory holds two files. "log" is append-only: records of
//
//	u32 length of payload | u32 CRC-32C of id and payload | u64 id | payload
//
// (big endian) with ids growing by one. "acked" holds one u64: every
// record with an id up to it has been delivered (or dropped) and may go.
// Ids double as the readings' seqnr, so a receiver sees a gap exactly
// where a record was dropped.
//
// # Memory
//
// Only the newest pending records, up to Options.MemMax (64 KiB by
// default), are also kept in memory; older ones are read back from the
// log when a sink sends them (a sequential read, through an index of
// one offset per 16 KiB of log). A queue built up over a long outage
// costs disk, not memory. A record that no longer reads back right (a
// failing card) loses the records held on disk only: they are counted
// as dropped and logged, and the outbox goes on in memory.
//
// # Durability
//
// Appends are plain writes: a crash of the process loses nothing (the
// page cache has them). While Run runs, the log is fsynced at most once
// per SyncEvery (default 1 s), and always on Close, so a power loss loses
// at most that window.
// A torn or corrupt record at the end of the log (power loss during a
// write) is detected by its length and CRC on Open, logged, and cut off;
// everything before it is kept. A full or read-only disk degrades the
// outbox to memory with a warning (the records held on disk only are
// read into memory first): readings keep flowing, only their
// crash-safety is gone until the disk takes writes again.
//
// The package imports only the standard library.
package outbox
