// Package history keeps a board's recent readings on disk, so that an
// operator can ask "how warm was the greenhouse last night?" and get a
// curve: raw readings for a recent window, and one-minute min/avg/max
// buckets further back.
//
// # Format
//
// state_dir/history holds two logs, "raw" and "min" (one-minute
// buckets), each a series of segment files (raw-000001.log, …) of
// records
//
//	u32 length of payload | u32 CRC-32C of payload | payload
//
// (big endian), the payload being a kind byte, the time in Unix
// milliseconds (varint), the device, field and unit (length-prefixed
// strings), and the value (raw: one float64) or the bucket (min, max,
// sum as float64, then the count as uvarint).
//
// # Bounds
//
// Options.Max bounds both logs together (a quarter for raw readings,
// the rest for buckets). A log over its share drops its oldest segment
// whole, so the oldest history goes first and the files never grow
// past their share by more than one segment.
//
// # Faults
//
// Appends are buffered and written every second (Tick), synced when a
// segment is closed and on Close: history is not the outbox, and a
// crash may take the last second of it, a power loss the last seconds. A torn or corrupt record at the end of the newest
// segment (a crash or power loss during a write) is cut off on Open,
// logged, never fatal; a damaged record in an older segment ends the
// reading of that segment.
//
// The package imports only the standard library.
package history
