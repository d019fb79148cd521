package chart

import (
	"bytes"
	"compress/zlib"
	"encoding/binary"
	"hash/crc32"
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
		crc := crc32.NewIEEE()
		crc.Write([]byte(typ))
		crc.Write(data)
		out.WriteString(typ)
		out.Write(data)
		binary.BigEndian.PutUint32(n[:], crc.Sum32())
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
