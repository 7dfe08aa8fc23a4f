// Command healthcheck asks a relay whether it is alive, for container images
// that have no shell or curl: it requests a URL (by default the relay's
// /healthz on the loopback interface) and exits 0 when the answer is 200 OK,
// 1 otherwise. Docker's HEALTHCHECK runs it inside the relay's container.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"
)

// Exit codes, as Docker's HEALTHCHECK reads them; Docker reserves 2, so a
// usage error is reported as unhealthy too.
const (
	exitHealthy   = 0
	exitUnhealthy = 1
)

func main() {
	os.Exit(run(os.Args[1:], os.Stderr))
}

func run(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("healthcheck", flag.ContinueOnError)
	fs.SetOutput(stderr)
	url := fs.String("url", "http://127.0.0.1:8080/healthz", "URL that must answer 200 OK")
	timeout := fs.Duration("timeout", 3*time.Second, "longest wait for the answer")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitHealthy
		}
		return exitUnhealthy
	}
	if fs.NArg() > 0 || *timeout <= 0 {
		fmt.Fprintln(stderr, "healthcheck: usage: healthcheck [--url URL] [--timeout D]")
		return exitUnhealthy
	}
	if err := check(*url, *timeout); err != nil {
		fmt.Fprintf(stderr, "healthcheck: %v\n", err)
		return exitUnhealthy
	}
	return exitHealthy
}

// check requests url once and succeeds only on 200 OK.
func check(url string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	// A probe must not be answered by a proxy from the environment.
	client := &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s answered %s", url, resp.Status)
	}
	return nil
}
