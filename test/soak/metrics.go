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

// peaks follows the samples of one relay, or the sums over the nodes of a
// cluster, and keeps what the result reports.
type peaks struct {
	samples         int
	first, last     serverSample
	held            serverSample // the last sample with the most connections open
	peakRSS, peakGo float64
}

func (p *peaks) observe(smp serverSample) {
	if p.samples == 0 {
		p.first = smp
	}
	p.samples++
	p.last = smp
	if smp.Conns > 0 && smp.Conns >= p.held.Conns {
		p.held = smp
	}
	p.peakRSS = max(p.peakRSS, smp.RSS)
	p.peakGo = max(p.peakGo, smp.Goroutines)
}

// figures are the peaks as the result reports them; absent series stay nil.
func (p *peaks) figures() NodeFigures {
	var f NodeFigures
	f.Samples = p.samples
	if p.samples == 0 {
		return f
	}
	i64 := func(v float64) *int64 { n := int64(v); return &n }
	if p.first.has&hasRSS != 0 {
		f.PeakRSS = i64(p.peakRSS)
		f.StartRSS = i64(p.first.RSS)
		// Per connection: the RSS while the most connections were open (the
		// end of an idle hold), over the RSS before any connected.
		if p.held.Conns > 0 {
			f.HeldRSS = i64(p.held.RSS)
			f.RSSPerConn = i64((p.held.RSS - p.first.RSS) / p.held.Conns)
		}
	}
	if p.first.has&hasGoroutines != 0 {
		f.PeakGoroutines = i64(p.peakGo)
	}
	if p.first.has&hasCPU != 0 {
		cpu := p.last.CPUSeconds - p.first.CPUSeconds
		f.CPUSeconds = &cpu
	}
	if p.held.Conns > 0 {
		f.PeakConns = i64(p.held.Conns)
	}
	return f
}

// NodeFigures is what the sampler saw of one relay node.
type NodeFigures struct {
	URL            string   `json:"url,omitempty"`
	Samples        int      `json:"samples"`
	PeakRSS        *int64   `json:"peak_rss_bytes,omitempty"`
	StartRSS       *int64   `json:"start_rss_bytes,omitempty"`
	HeldRSS        *int64   `json:"held_rss_bytes,omitempty"`
	RSSPerConn     *int64   `json:"rss_bytes_per_connection,omitempty"`
	PeakGoroutines *int64   `json:"peak_goroutines,omitempty"`
	PeakConns      *int64   `json:"peak_connections,omitempty"`
	CPUSeconds     *float64 `json:"cpu_seconds,omitempty"`
	Failures       int      `json:"failures,omitempty"`
}

// sampler polls each node's /metrics once a second and keeps the peaks,
// per node and of the sums over the nodes.
type sampler struct {
	urls   []string
	client *http.Client

	mu       sync.Mutex
	nodes    []peaks
	failures []int
	// total follows the sums over the nodes, from the ticks at which every
	// node answered: a sum missing a node would look like a drop.
	total peaks
}

func newSampler(urls []string) *sampler {
	return &sampler{
		urls: urls, client: &http.Client{Timeout: 2 * time.Second},
		nodes: make([]peaks, len(urls)), failures: make([]int, len(urls)),
	}
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

// sample asks every node at once and records what they answered.
func (s *sampler) sample(ctx context.Context) {
	smps := make([]serverSample, len(s.urls))
	errs := make([]error, len(s.urls))
	var wg sync.WaitGroup
	for i, u := range s.urls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			smps[i], errs[i] = s.fetch(ctx, u)
		}()
	}
	wg.Wait()
	s.mu.Lock()
	defer s.mu.Unlock()
	sum := serverSample{has: hasRSS | hasGoroutines | hasCPU | hasConns}
	complete := true
	for i, smp := range smps {
		if errs[i] != nil {
			s.failures[i]++
			complete = false
			continue
		}
		s.nodes[i].observe(smp)
		sum.RSS += smp.RSS
		sum.Goroutines += smp.Goroutines
		sum.CPUSeconds += smp.CPUSeconds
		sum.Conns += smp.Conns
		sum.has &= smp.has
	}
	if complete {
		s.total.observe(sum)
	}
}

func (s *sampler) fetch(ctx context.Context, url string) (serverSample, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
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

// latest is the last sum over the nodes, for the progress line.
func (s *sampler) latest() (serverSample, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.total.last, s.total.samples > 0
}

// fill writes the server figures into r: the sums over the nodes, and with
// more than one node each node's own.
func (s *sampler) fill(r *Result) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.total.figures()
	r.ServerSamples = t.Samples
	r.ServerPeakRSS, r.ServerStartRSS, r.ServerHeldRSS, r.ServerRSSPerConn = t.PeakRSS, t.StartRSS, t.HeldRSS, t.RSSPerConn
	r.ServerPeakGoroutines, r.ServerCPUSeconds = t.PeakGoroutines, t.CPUSeconds
	if len(s.urls) < 2 {
		return
	}
	r.ServerNodes = make([]NodeFigures, len(s.urls))
	for i := range s.nodes {
		f := s.nodes[i].figures()
		f.URL, f.Failures = s.urls[i], s.failures[i]
		r.ServerNodes[i] = f
	}
}
