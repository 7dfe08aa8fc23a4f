// Package asyncapi checks the relay's AsyncAPI document
// (protocol/asyncapi.yaml, served at /api/v1/livestore/asyncapi.yaml): that
// it describes every message, error code and close code the relay uses, and
// that the official AsyncAPI parser accepts it.
package asyncapi

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/livestore-relay/livestore-relay/actors"
	"github.com/livestore-relay/livestore-relay/protocol"
	"github.com/livestore-relay/livestore-relay/test/relaytest"
	"github.com/livestore-relay/livestore-relay/transport"
)

// document is the parsed AsyncAPI document with local $ref resolution.
type document struct {
	root map[string]any
}

func load(t *testing.T) *document {
	t.Helper()
	var root map[string]any
	if err := yaml.Unmarshal(protocol.AsyncAPI(), &root); err != nil {
		t.Fatalf("protocol/asyncapi.yaml is not YAML: %v", err)
	}
	if v, _ := root["asyncapi"].(string); v != "3.0.0" {
		t.Fatalf("asyncapi version = %q, want 3.0.0", v)
	}
	return &document{root: root}
}

// resolve follows a local reference such as #/components/schemas/Event.
func (d *document) resolve(ref string) (any, error) {
	rest, ok := strings.CutPrefix(ref, "#/")
	if !ok {
		return nil, fmt.Errorf("reference %q is not local", ref)
	}
	var cur any = d.root
	for _, part := range strings.Split(rest, "/") {
		part = strings.ReplaceAll(strings.ReplaceAll(part, "~1", "/"), "~0", "~")
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("reference %q: %q is not inside an object", ref, part)
		}
		if cur, ok = m[part]; !ok {
			return nil, fmt.Errorf("reference %q: no %q", ref, part)
		}
	}
	return cur, nil
}

// obj returns v as an object, following $ref (repeatedly) first.
func (d *document) obj(t *testing.T, v any, what string) map[string]any {
	t.Helper()
	for range 32 {
		m, ok := v.(map[string]any)
		if !ok {
			t.Fatalf("%s: want an object, got %T", what, v)
		}
		ref, ok := m["$ref"].(string)
		if !ok {
			return m
		}
		next, err := d.resolve(ref)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		v = next
	}
	t.Fatalf("%s: reference chain too long", what)
	return nil
}

func (d *document) list(t *testing.T, v any, what string) []any {
	t.Helper()
	l, ok := v.([]any)
	if !ok {
		t.Fatalf("%s: want a list, got %T", what, v)
	}
	return l
}

// message is one message an operation sends or receives.
type message struct {
	name    string         // key under components/messages, for reports
	typ     string         // the payload's type const
	payload map[string]any // resolved payload schema
}

// prop returns the resolved schema of a property of an object schema.
func (d *document) prop(t *testing.T, schema map[string]any, name, what string) map[string]any {
	t.Helper()
	props := d.obj(t, schema["properties"], what+".properties")
	v, ok := props[name]
	if !ok {
		t.Fatalf("%s has no property %q", what, name)
	}
	return d.obj(t, v, what+"."+name)
}

// messages lists, per operation action (send or receive), the messages of
// every operation.
func (d *document) messages(t *testing.T) map[string][]message {
	t.Helper()
	out := map[string][]message{}
	ops := d.obj(t, d.root["operations"], "operations")
	for id, raw := range ops {
		op := d.obj(t, raw, "operations."+id)
		action, _ := op["action"].(string)
		if action != "send" && action != "receive" {
			t.Fatalf("operations.%s: action %q", id, action)
		}
		for i, mraw := range d.list(t, op["messages"], "operations."+id+".messages") {
			what := fmt.Sprintf("operations.%s.messages[%d]", id, i)
			name := ""
			if ref, ok := mraw.(map[string]any)["$ref"].(string); ok {
				name = ref[strings.LastIndex(ref, "/")+1:]
			}
			m := d.obj(t, mraw, what)
			payload := d.obj(t, m["payload"], what+".payload")
			typ := d.prop(t, payload, "type", what+".payload")
			c, ok := typ["const"].(string)
			if !ok {
				t.Fatalf("%s.payload.type has no string const", what)
			}
			out[action] = append(out[action], message{name: name, typ: c, payload: payload})
		}
	}
	return out
}

func types(ms []message) []string {
	var out []string
	for _, m := range ms {
		if !slices.Contains(out, m.typ) {
			out = append(out, m.typ)
		}
	}
	slices.Sort(out)
	return out
}

func sorted(s ...string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

func stringsOf(t *testing.T, v any, what string) []string {
	t.Helper()
	var out []string
	l, ok := v.([]any)
	if !ok {
		t.Fatalf("%s: want a list, got %T", what, v)
	}
	for _, e := range l {
		s, ok := e.(string)
		if !ok {
			t.Fatalf("%s: %v is not a string", what, e)
		}
		out = append(out, s)
	}
	return out
}

func TestChannel(t *testing.T) {
	d := load(t)
	ch := d.obj(t, d.obj(t, d.root["channels"], "channels")["sync"], "channels.sync")
	if got := ch["address"]; got != transport.SyncPath {
		t.Errorf("channels.sync.address = %v, want %s", got, transport.SyncPath)
	}
	servers := d.obj(t, d.root["servers"], "servers")
	protocols := map[string]bool{}
	for name, raw := range servers {
		s := d.obj(t, raw, "servers."+name)
		p, _ := s["protocol"].(string)
		protocols[p] = true
		if len(d.list(t, s["security"], "servers."+name+".security")) == 0 {
			t.Errorf("servers.%s has no security", name)
		}
	}
	if !protocols["wss"] || !protocols["ws"] {
		t.Errorf("servers: want a wss and a ws server, have protocols %v", protocols)
	}
	// The token is looked up in the query, then in the cookie.
	schemes := d.obj(t, d.obj(t, d.root["components"], "components")["securitySchemes"], "components.securitySchemes")
	found := map[string]bool{}
	for name, raw := range schemes {
		s := d.obj(t, raw, "securitySchemes."+name)
		found[fmt.Sprint(s["in"], ":", s["name"])] = true
	}
	for _, want := range []string{"query:token", "cookie:auth_token"} {
		if !found[want] {
			t.Errorf("no security scheme with in:name %s", want)
		}
	}
}

func TestMessages(t *testing.T) {
	d := load(t)
	byAction := d.messages(t)

	if got, want := types(byAction["receive"]), sorted("push", "pull", "peer_pull", "peer_pull_response"); !slices.Equal(got, want) {
		t.Errorf("message types the relay receives = %v, want %v", got, want)
	}
	if got, want := types(byAction["send"]), sorted("push", "ack", "pull_response", "peer_pull", "peer_pull_response", "error"); !slices.Equal(got, want) {
		t.Errorf("message types the relay sends = %v, want %v", got, want)
	}

	// peer_pull carries the targetClientId extension.
	for _, m := range byAction["receive"] {
		if m.typ == "peer_pull" {
			d.prop(t, d.prop(t, m.payload, "payload", m.name), "targetClientId", m.name+".payload")
		}
	}
	// The relay's own peer_pull_response, from clientId "server".
	own := false
	for _, m := range byAction["send"] {
		if m.typ == "peer_pull_response" && d.prop(t, m.payload, "clientId", m.name)["const"] == protocol.ServerClientID {
			own = true
		}
	}
	if !own {
		t.Errorf("no peer_pull_response the relay sends with clientId const %q", protocol.ServerClientID)
	}

	// Identifiers are limited to 1..128 bytes.
	for _, m := range byAction["receive"] {
		for _, field := range []string{"clientId", "sessionId"} {
			s := d.prop(t, m.payload, field, m.name)
			if s["minLength"] != 1 || s["maxLength"] != protocol.MaxIDLen {
				t.Errorf("%s.%s: minLength %v maxLength %v, want 1 and %d", m.name, field, s["minLength"], s["maxLength"], protocol.MaxIDLen)
			}
		}
	}
}

func TestErrorCodes(t *testing.T) {
	d := load(t)
	var want []string
	for _, c := range protocol.AllCodes() {
		want = append(want, c.String())
	}
	slices.Sort(want)

	var errMsgs []message
	for _, m := range d.messages(t)["send"] {
		if m.typ == "error" {
			errMsgs = append(errMsgs, m)
		}
	}
	if len(errMsgs) == 0 {
		t.Fatal("no error message among the messages the relay sends")
	}
	for _, m := range errMsgs {
		code := d.prop(t, m.payload, "code", m.name)
		got := sorted(stringsOf(t, code["enum"], m.name+".code.enum")...)
		if !slices.Equal(got, want) {
			t.Errorf("%s: code enum = %v, want protocol.AllCodes() %v", m.name, got, want)
		}
		var documented []string
		for k := range d.obj(t, code["x-error-codes"], m.name+".code.x-error-codes") {
			documented = append(documented, k)
		}
		slices.Sort(documented)
		if !slices.Equal(documented, want) {
			t.Errorf("%s: x-error-codes documents %v, want %v", m.name, documented, want)
		}
		desc, _ := code["description"].(string)
		for _, c := range want {
			if !strings.Contains(desc, "`"+c+"`") {
				t.Errorf("%s: the code's description does not explain %s", m.name, c)
			}
		}
	}
}

// closeCodes are the close codes the relay sends.
var closeCodes = []int{1000, 1001, 1002, 1007, 1008, 1009, 1011, 1012, 4001, 4002, 4003}

func TestCloseCodes(t *testing.T) {
	// The list above is the relay's: every reason that sends a close frame.
	var fromRelay []int
	for _, r := range []actors.CloseReason{
		actors.ClosePeer, actors.CloseGoingAway, actors.CloseProtocolError, actors.CloseInvalidUTF8,
		actors.CloseLiveness, actors.CloseTooBig, actors.CloseInternal, actors.CloseTokenExpired,
		actors.CloseReplaced, actors.CloseSlowConsumer, actors.CloseRehomed,
	} {
		fromRelay = append(fromRelay, int(r.Code()))
	}
	slices.Sort(fromRelay)
	if !slices.Equal(fromRelay, closeCodes) {
		t.Fatalf("the relay's close codes are %v, the test expects %v", fromRelay, closeCodes)
	}

	d := load(t)
	ch := d.obj(t, d.obj(t, d.root["channels"], "channels")["sync"], "channels.sync")
	var documented []int
	for i, raw := range d.list(t, ch["x-close-codes"], "channels.sync.x-close-codes") {
		e := d.obj(t, raw, fmt.Sprintf("x-close-codes[%d]", i))
		code, ok := e["code"].(int)
		if !ok {
			t.Fatalf("x-close-codes[%d].code = %v, want an integer", i, e["code"])
		}
		if m, _ := e["meaning"].(string); m == "" {
			t.Errorf("x-close-codes[%d] (%d) has no meaning", i, code)
		}
		documented = append(documented, code)
	}
	slices.Sort(documented)
	if !slices.Equal(documented, closeCodes) {
		t.Errorf("x-close-codes = %v, want %v", documented, closeCodes)
	}
	desc, _ := ch["description"].(string)
	for _, c := range closeCodes {
		if !strings.Contains(desc, "| "+strconv.Itoa(c)+" |") {
			t.Errorf("the channel description's close code table lacks %d", c)
		}
	}
}

func TestHandshakeRefusals(t *testing.T) {
	d := load(t)
	ch := d.obj(t, d.obj(t, d.root["channels"], "channels")["sync"], "channels.sync")
	got := map[string]bool{}
	for i, raw := range d.list(t, ch["x-handshake-refusals"], "channels.sync.x-handshake-refusals") {
		e := d.obj(t, raw, fmt.Sprintf("x-handshake-refusals[%d]", i))
		got[fmt.Sprint(e["status"], " ", e["code"])] = true
	}
	for _, want := range []string{
		"401 unauthorized", "403 forbidden_origin", "429 too_many_connections", "503 unavailable", "426 upgrade_required",
	} {
		if !got[want] {
			t.Errorf("x-handshake-refusals lacks %s", want)
		}
	}
}

// TestParser runs the official AsyncAPI parser over the document, through
// validate.mjs. It needs Node.js and the packages of package-lock.json.
func TestParser(t *testing.T) {
	node := relaytest.Node(t, filepath.Join("node_modules", "@asyncapi", "parser", "package.json"))
	doc, err := filepath.Abs(filepath.Join("..", "..", "protocol", "asyncapi.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, node, "validate.mjs", doc).CombinedOutput()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		t.Fatalf("AsyncAPI validation failed (exit %d):\n%s", exit.ExitCode(), out)
	case err != nil:
		t.Fatalf("run node validate.mjs: %v\n%s", err, out)
	}
	t.Logf("%s", out)
}
