package protocol

import (
	"math/rand/v2"
	"testing"
)

func naivePlainRun(d []byte, i int) int {
	for i < len(d) && !stringSpecial(d[i]) {
		i++
	}
	return i
}

// TestPlainRun checks the word-at-a-time string scan against the plain
// byte loop, for every byte value at every position of a word and for
// random mixes of the bytes around the thresholds.
func TestPlainRun(t *testing.T) {
	for n := range 20 {
		for pos := range n {
			for b := range 256 {
				d := make([]byte, n)
				for i := range d {
					d[i] = 'a'
				}
				d[pos] = byte(b)
				for start := range n {
					if got, want := plainRun(d, start), naivePlainRun(d, start); got != want {
						t.Fatalf("% x from %d: got %d, want %d", d, start, got, want)
					}
				}
			}
		}
	}
	edge := []byte{0x00, 0x01, 0x1f, 0x20, 0x21, '"', 0x23, 0x5b, '\\', 0x5d, 0x7f, 0x80, 0xa2, 0xdc, 0xff}
	r := rand.New(rand.NewPCG(1, 2))
	d := make([]byte, 24)
	for range 200000 {
		for i := range d {
			if r.IntN(3) == 0 {
				d[i] = edge[r.IntN(len(edge))]
			} else {
				d[i] = byte(r.IntN(256))
			}
		}
		start := r.IntN(len(d))
		if got, want := plainRun(d, start), naivePlainRun(d, start); got != want {
			t.Fatalf("% x from %d: got %d, want %d", d, start, got, want)
		}
	}
}

func TestNumber(t *testing.T) {
	tests := []struct {
		in          string
		v           int64
		isInt, ok   bool
		consumedLen int
	}{
		{"0", 0, true, true, 1},
		{"-0", 0, true, true, 2},
		{"7,", 7, true, true, 1},
		{"18446744073709551615", 0, false, true, 20},
		{"18446744073709551616", 0, false, true, 20},
		{"99999999999999999999999", 0, false, true, 23},
		{"9223372036854775807", 9223372036854775807, true, true, 19},
		{"-9223372036854775808", -9223372036854775808, true, true, 20},
		{"1.0", 0, false, true, 3},
		{"1e5", 0, false, true, 3},
		{"1E-5", 0, false, true, 4},
		{"01", 0, true, true, 1},
		{"-", 0, false, false, 0},
		{"-a", 0, false, false, 0},
		{"1.", 0, false, false, 0},
		{"1.e1", 0, false, false, 0},
		{"1e+", 0, false, false, 0},
	}
	for _, tt := range tests {
		s := scanner{data: []byte(tt.in)}
		v, isInt, ok := s.number()
		if v != tt.v || isInt != tt.isInt || ok != tt.ok || ok && s.pos != tt.consumedLen {
			t.Errorf("%q: got %d %v %v pos %d", tt.in, v, isInt, ok, s.pos)
		}
	}
}
