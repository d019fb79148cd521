package chart

import (
	"bytes"
	"compress/zlib"
	"encoding/binary"
)

// encodePNG encodes an 8-bit paletted image (one palette index per
// pixel, rows top to bottom) as PNG (RFC 2083): IHDR, PLTE, one IDAT of
// the zlib-compressed rows (filter type 0), IEND. image/png would cost
// the armv7 binary ~60 KB of its 8 MiB budget for the one image type
// drawn here (docs/decisions.md §13).
func encodePNG(pix []uint8, width, height int, palette [][3]uint8) []byte {
	var out bytes.Buffer
	out.WriteString("\x89PNG\r\n\x1a\n")
	chunk := func(typ string, data []byte) {
		var n [4]byte
		binary.BigEndian.PutUint32(n[:], uint32(len(data)))
		out.Write(n[:])
		out.WriteString(typ)
		out.Write(data)
		binary.BigEndian.PutUint32(n[:], crcIEEE(crcIEEE(0, []byte(typ)), data))
		out.Write(n[:])
	}
	ihdr := make([]byte, 13)
	binary.BigEndian.PutUint32(ihdr[0:], uint32(width))
	binary.BigEndian.PutUint32(ihdr[4:], uint32(height))
	ihdr[8], ihdr[9] = 8, 3 // bit depth 8, colour type 3: indexed
	chunk("IHDR", ihdr)
	plte := make([]byte, 0, 3*len(palette))
	for _, c := range palette {
		plte = append(plte, c[0], c[1], c[2])
	}
	chunk("PLTE", plte)
	var idat bytes.Buffer
	z, _ := zlib.NewWriterLevel(&idat, zlib.BestCompression)
	for y := range height {
		z.Write([]byte{0}) // filter: none
		z.Write(pix[y*width : (y+1)*width])
	}
	z.Close()
	chunk("IDAT", idat.Bytes())
	chunk("IEND", nil)
	return out.Bytes()
}

// crcIEEE updates a CRC-32 (IEEE, as PNG's chunks have) bit by bit:
// hash/crc32's first IEEE use builds an 8 KiB table that the process
// keeps for good, in a size class of its own (docs/decisions.md §14),
// for the few kB of a chart.
func crcIEEE(crc uint32, p []byte) uint32 {
	crc = ^crc
	for _, b := range p {
		crc ^= uint32(b)
		for range 8 {
			crc = crc>>1 ^ 0xedb88320&-(crc&1)
		}
	}
	return ^crc
}
