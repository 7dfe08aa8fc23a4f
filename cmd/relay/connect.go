package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
)

// runConnect is a small interactive client: each line read is sent (JSON as
// is, anything else as a one-event push), each message received is printed.
func runConnect(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("relay connect", flag.ContinueOnError)
	fs.SetOutput(stderr)
	url := fs.String("url", "", "ws:// URL of the sync path, with ?token=")
	clientID := fs.String("client-id", "cli", "clientId of this device")
	sessionID := fs.String("session-id", fmt.Sprintf("s%d", time.Now().UnixNano()), "sessionId of this session")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if *url == "" {
		fmt.Fprintln(stderr, "relay connect: --url is required")
		return exitUsage
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	conn, _, _, err := ws.Dial(ctx, *url)
	if err != nil {
		fmt.Fprintf(stderr, "relay connect: %v\n", err)
		return exitFailed
	}
	defer conn.Close()
	fmt.Fprintf(stderr, "connected as clientId %q, sessionId %q. Type a line to push it as one event.\n"+
		"A line of JSON is sent as it is: it must carry this clientId and sessionId, or the relay answers client_mismatch.\n",
		*clientID, *sessionID)

	// closedBy is set by the receiving goroutine before done is closed: the
	// code the server closed with, or 0 when the connection just ended.
	var closedBy ws.StatusCode
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			msg, err := wsutil.ReadServerText(conn)
			if err != nil {
				var ce wsutil.ClosedError
				if errors.As(err, &ce) {
					closedBy = ce.Code
					fmt.Fprintf(stderr, "closed by server: %d %s\n", ce.Code, ce.Reason)
				} else if !errors.Is(err, io.EOF) {
					fmt.Fprintf(stderr, "connection lost: %v\n", err)
				}
				return
			}
			fmt.Fprintf(stdout, "%s\n", msg)
		}
	}()
	// A pull binds this connection as a device of its user, so that it
	// receives the others' pushes from now on, and lists who is online.
	pull := fmt.Sprintf(`{"type":"pull","clientId":%q,"sessionId":%q,"timestamp":%d,"payload":{}}`, *clientID, *sessionID, time.Now().UnixMilli())
	if err := wsutil.WriteClientText(conn, []byte(pull)); err != nil {
		fmt.Fprintf(stderr, "relay connect: %v\n", err)
		return exitFailed
	}
	// Lines are read on their own goroutine, so that a close by the server
	// ends the command even while it waits for input.
	lines := make(chan []byte)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdin)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			select {
			case lines <- bytes.Clone(sc.Bytes()):
			case <-done:
				return
			}
		}
	}()
	n := 0
	for {
		var line []byte
		var ok bool
		select {
		case <-done:
			if closedBy == ws.StatusNormalClosure || closedBy == ws.StatusGoingAway {
				return exitOK
			}
			return exitFailed
		case <-ctx.Done():
			ok = false
		case line, ok = <-lines:
		}
		if !ok {
			break
		}
		if len(line) == 0 {
			continue
		}
		out := line
		if !json.Valid(line) {
			n++
			now := time.Now().UnixMilli()
			out, _ = json.Marshal(map[string]any{
				"type": "push", "clientId": *clientID, "sessionId": *sessionID, "timestamp": now,
				"payload": map[string]any{"events": []any{map[string]any{
					"eventName": "note.typed", "eventNumber": n, "clientId": *clientID, "sessionId": *sessionID,
					"timestamp": now, "data": map[string]any{"text": string(line)},
				}}},
			})
		}
		if err := wsutil.WriteClientText(conn, out); err != nil {
			fmt.Fprintf(stderr, "relay connect: %v\n", err)
			return exitFailed
		}
	}
	_ = wsutil.WriteClientMessage(conn, ws.OpClose, ws.NewCloseFrameBody(ws.StatusNormalClosure, ""))
	select {
	case <-done:
	case <-time.After(2 * time.Second):
	}
	return exitOK
}
