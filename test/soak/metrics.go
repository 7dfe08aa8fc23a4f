package soak

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// serverSample is what the tool reads from the relay's /metrics.
type serverSample struct {
	RSS        float64
	Goroutines float64
	CPUSeconds float64
	Conns      float64 // livestore_relay_connections
	has        int     // bit set of the fields found
}

const (
	hasRSS = 1 << iota
	hasGoroutines
	hasCPU
	hasConns
)

// parseMetrics picks three unlabelled series out of a Prometheus text
// exposition; anything else is skipped.
func parseMetrics(r io.Reader) (serverSample, error) {
	var s serverSample
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		name, value, ok := strings.Cut(line, " ")
		if !ok || strings.HasPrefix(line, "#") {
			continue
		}
		var dst *float64
		var bit int
		switch name {
		case "process_resident_memory_bytes":
			dst, bit = &s.RSS, hasRSS
		case "go_goroutines":
			dst, bit = &s.Goroutines, hasGoroutines
		case "process_cpu_seconds_total":
			dst, bit = &s.CPUSeconds, hasCPU
		case "livestore_relay_connections":
			dst, bit = &s.Conns, hasConns
		default:
			continue
		}
		// A sample may carry a timestamp after the value.
		value, _, _ = strings.Cut(strings.TrimSpace(value), " ")
		v, err := strconv.ParseFloat(value, 64)
		if err != nil {
			return s, fmt.Errorf("metric %s: %w", name, err)
		}
		*dst = v
		s.has |= bit
	}
	if err := sc.Err(); err != nil {
		return s, fmt.Errorf("read metrics: %w", err)
	}
	return s, nil
}

// sampler polls /metrics once a second and keeps the peaks.
type sampler struct {
	url    string
	client *http.Client

	mu              sync.Mutex
	samples         int
	first, last     serverSample
	held            serverSample // the last sample with the most connections open
	peakRSS, peakGo float64
	failures        int
}

func newSampler(url string) *sampler {
	return &sampler{url: url, client: &http.Client{Timeout: 2 * time.Second}}
}

func (s *sampler) run(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		s.sample(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (s *sampler) sample(ctx context.Context) {
	smp, err := s.fetch(ctx)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.failures++
		return
	}
	if s.samples == 0 {
		s.first = smp
	}
	s.samples++
	s.last = smp
	if smp.Conns > 0 && smp.Conns >= s.held.Conns {
		s.held = smp
	}
	s.peakRSS = max(s.peakRSS, smp.RSS)
	s.peakGo = max(s.peakGo, smp.Goroutines)
}

func (s *sampler) fetch(ctx context.Context) (serverSample, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.url, nil)
	if err != nil {
		return serverSample{}, fmt.Errorf("metrics request: %w", err)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return serverSample{}, fmt.Errorf("get metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return serverSample{}, fmt.Errorf("get metrics: status %d", resp.StatusCode)
	}
	return parseMetrics(resp.Body)
}

// latest is the last sample, for the progress line.
func (s *sampler) latest() (serverSample, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last, s.samples > 0
}

// fill writes the server figures into r.
func (s *sampler) fill(r *Result) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r.ServerSamples = s.samples
	if s.samples == 0 {
		return
	}
	i64 := func(v float64) *int64 { n := int64(v); return &n }
	if s.first.has&hasRSS != 0 {
		r.ServerPeakRSS = i64(s.peakRSS)
		r.ServerStartRSS = i64(s.first.RSS)
		// Per connection: the RSS while the most connections were open (the
		// end of an idle hold), over the RSS before any connected.
		if s.held.Conns > 0 {
			r.ServerHeldRSS = i64(s.held.RSS)
			r.ServerRSSPerConn = i64((s.held.RSS - s.first.RSS) / s.held.Conns)
		}
	}
	if s.first.has&hasGoroutines != 0 {
		r.ServerPeakGoroutines = i64(s.peakGo)
	}
	if s.first.has&hasCPU != 0 {
		cpu := s.last.CPUSeconds - s.first.CPUSeconds
		r.ServerCPUSeconds = &cpu
	}
}
