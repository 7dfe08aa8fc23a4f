package docs

import (
	"debug/elf"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"go.yaml.in/yaml/v3"

	"github.com/livestore-relay/livestore-relay/test/relaytest"
)

const (
	dockerfilePath  = "docs/deploy/Dockerfile"
	composePath     = "docs/deploy/docker-compose.yml"
	kubernetesPath  = "docs/deploy/kubernetes.yaml"
	kubeClusterPath = "docs/deploy/kubernetes-cluster.yaml"

	// relayPort is the port the relay listens on in the images.
	relayPort = 8080
)

// ---- Dockerfile ------------------------------------------------------------

// instruction is one Dockerfile instruction, continuation lines joined.
type instruction struct {
	line int
	cmd  string // upper case: FROM, RUN, …
	args string
}

func readDockerfile(t *testing.T) []instruction {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, dockerfilePath))
	if err != nil {
		t.Fatal(err)
	}
	var out []instruction
	var cur strings.Builder
	start := 0
	for i, line := range strings.Split(string(b), "\n") {
		trimmed := strings.TrimSpace(line)
		if cur.Len() == 0 && (trimmed == "" || strings.HasPrefix(trimmed, "#")) {
			continue
		}
		if cur.Len() > 0 && strings.HasPrefix(trimmed, "#") {
			continue // a comment inside a continued instruction
		}
		if cur.Len() == 0 {
			start = i + 1
		}
		if body, ok := strings.CutSuffix(trimmed, "\\"); ok {
			cur.WriteString(body)
			cur.WriteByte(' ')
			continue
		}
		cur.WriteString(trimmed)
		cmd, args, _ := strings.Cut(cur.String(), " ")
		out = append(out, instruction{line: start, cmd: strings.ToUpper(cmd), args: strings.TrimSpace(args)})
		cur.Reset()
	}
	if cur.Len() > 0 {
		t.Fatalf("%s: the last instruction ends with a line continuation", dockerfilePath)
	}
	return out
}

// shellWords splits a shell command into words, honouring quotes.
func shellWords(s string) ([]string, error) {
	var words []string
	var w strings.Builder
	inWord := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\'' || c == '"':
			end := strings.IndexByte(s[i+1:], c)
			if end < 0 {
				return nil, fmt.Errorf("unterminated %c quote in %q", c, s)
			}
			w.WriteString(s[i+1 : i+1+end])
			i += end + 1
			inWord = true
		case c == '\\' && i+1 < len(s):
			i++
			w.WriteByte(s[i])
			inWord = true
		case c == ' ' || c == '\t':
			if inWord {
				words = append(words, w.String())
				w.Reset()
				inWord = false
			}
		default:
			w.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		words = append(words, w.String())
	}
	return words, nil
}

// goBuildCmd is one `go build` command of the Dockerfile.
type goBuildCmd struct {
	line  int
	env   []string // NAME=VALUE words before `go`
	flags []string // build flags, -o and its value excepted
	out   string   // the -o value
	pkg   string
}

var envAssign = regexp.MustCompile(`^[A-Z_][A-Z0-9_]*=`)

func dockerGoBuilds(t *testing.T, ins []instruction) []goBuildCmd {
	t.Helper()
	var builds []goBuildCmd
	for _, in := range ins {
		if in.cmd != "RUN" {
			continue
		}
		for _, part := range strings.Split(in.args, "&&") {
			words, err := shellWords(part)
			if err != nil {
				t.Fatalf("%s:%d: %v", dockerfilePath, in.line, err)
			}
			var b goBuildCmd
			b.line = in.line
			i := 0
			for i < len(words) && envAssign.MatchString(words[i]) {
				b.env = append(b.env, words[i])
				i++
			}
			if i+1 >= len(words) || words[i] != "go" || words[i+1] != "build" {
				continue
			}
			args := words[i+2:]
			for j := 0; j < len(args); j++ {
				switch a := args[j]; {
				case a == "-o":
					if j+1 == len(args) {
						t.Fatalf("%s:%d: -o without a value", dockerfilePath, in.line)
					}
					b.out = args[j+1]
					j++
				case a == "-ldflags" || a == "-tags" || a == "-gcflags":
					if j+1 == len(args) {
						t.Fatalf("%s:%d: %s without a value", dockerfilePath, in.line, a)
					}
					b.flags = append(b.flags, a, args[j+1])
					j++
				case strings.HasPrefix(a, "-"):
					b.flags = append(b.flags, a)
				default:
					if b.pkg != "" {
						t.Fatalf("%s:%d: go build of several packages (%s, %s)", dockerfilePath, in.line, b.pkg, a)
					}
					b.pkg = a
				}
			}
			builds = append(builds, b)
		}
	}
	return builds
}

// copyDest maps each file copied from the build stage to its place in the
// final image.
func copyDest(t *testing.T, final []instruction) map[string]string {
	t.Helper()
	dest := map[string]string{}
	for _, in := range final {
		if in.cmd != "COPY" {
			continue
		}
		words, err := shellWords(in.args)
		if err != nil || len(words) != 3 || !strings.HasPrefix(words[0], "--from=") {
			continue
		}
		dest[words[1]] = words[2]
	}
	return dest
}

// stages splits the instructions at each FROM.
func stages(ins []instruction) [][]instruction {
	var out [][]instruction
	for _, in := range ins {
		if in.cmd == "FROM" {
			out = append(out, nil)
		}
		if len(out) > 0 {
			out[len(out)-1] = append(out[len(out)-1], in)
		}
	}
	return out
}

func goDirective(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "go "); ok {
			parts := strings.Split(strings.TrimSpace(v), ".")
			if len(parts) >= 2 {
				return parts[0] + "." + parts[1]
			}
		}
	}
	t.Fatal("go.mod has no go directive")
	return ""
}

func TestDockerfile(t *testing.T) {
	ins := readDockerfile(t)
	st := stages(ins)
	if len(st) < 2 {
		t.Fatalf("%s: want a build stage and a final stage, found %d stage(s)", dockerfilePath, len(st))
	}
	build, final := st[0], st[len(st)-1]

	from := strings.Fields(build[0].args)
	if want := "golang:" + goDirective(t); len(from) == 0 || !strings.HasPrefix(from[0], want) {
		t.Errorf("%s:%d: build stage FROM %s, want %s (the go directive of go.mod)", dockerfilePath, build[0].line, build[0].args, want)
	}
	base := strings.Fields(final[0].args)[0]
	if base != "scratch" && !strings.HasPrefix(base, "gcr.io/distroless/static") {
		t.Errorf("%s:%d: final image %s, want scratch or distroless static", dockerfilePath, final[0].line, base)
	}

	builds := dockerGoBuilds(t, ins)
	var pkgs []string
	for _, b := range builds {
		pkgs = append(pkgs, b.pkg)
		if !slices.Contains(b.env, "CGO_ENABLED=0") {
			t.Errorf("%s:%d: go build %s without CGO_ENABLED=0", dockerfilePath, b.line, b.pkg)
		}
		if !slices.Contains(b.flags, "-trimpath") {
			t.Errorf("%s:%d: go build %s without -trimpath", dockerfilePath, b.line, b.pkg)
		}
		if i := slices.Index(b.flags, "-ldflags"); i < 0 || strings.Join(strings.Fields(b.flags[i+1]), " ") != "-s -w" {
			t.Errorf("%s:%d: go build %s: want -ldflags \"-s -w\", have %v", dockerfilePath, b.line, b.pkg, b.flags)
		}
		if b.out == "" {
			t.Errorf("%s:%d: go build %s without -o", dockerfilePath, b.line, b.pkg)
		}
	}
	slices.Sort(pkgs)
	if want := []string{"./cmd/healthcheck", "./cmd/relay"}; !slices.Equal(pkgs, want) {
		t.Fatalf("%s: go build of %v, want %v", dockerfilePath, pkgs, want)
	}

	dest := copyDest(t, final)
	binIn := map[string]string{} // package → path in the final image
	for _, b := range builds {
		d, ok := dest[b.out]
		if !ok {
			t.Errorf("%s: %s (from %s) is not copied into the final image", dockerfilePath, b.out, b.pkg)
		}
		binIn[b.pkg] = d
	}

	var user, expose, entrypoint, healthcheck string
	for _, in := range final {
		switch in.cmd {
		case "USER":
			user = in.args
		case "EXPOSE":
			expose = in.args
		case "ENTRYPOINT":
			entrypoint = in.args
		case "HEALTHCHECK":
			healthcheck = in.args
		}
	}
	if u, _, _ := strings.Cut(user, ":"); u == "" || u == "root" || u == "0" {
		t.Errorf("%s: final stage USER %q, want a non-root user", dockerfilePath, user)
	}
	if !slices.Contains(strings.Fields(expose), strconv.Itoa(relayPort)) {
		t.Errorf("%s: EXPOSE %q, want %d", dockerfilePath, expose, relayPort)
	}
	var ep []string
	if err := json.Unmarshal([]byte(entrypoint), &ep); err != nil || len(ep) == 0 || ep[0] != binIn["./cmd/relay"] {
		t.Errorf("%s: ENTRYPOINT %s, want the exec form running %s", dockerfilePath, entrypoint, binIn["./cmd/relay"])
	}
	_, cmd, ok := strings.Cut(healthcheck, "CMD ")
	var hc []string
	if !ok || json.Unmarshal([]byte(cmd), &hc) != nil || len(hc) == 0 {
		t.Fatalf("%s: HEALTHCHECK %q, want CMD in exec form", dockerfilePath, healthcheck)
	}
	if hc[0] != binIn["./cmd/healthcheck"] {
		t.Errorf("%s: HEALTHCHECK runs %s, want %s (cmd/healthcheck)", dockerfilePath, hc[0], binIn["./cmd/healthcheck"])
	}
	checkProbeURL(t, dockerfilePath+" HEALTHCHECK", hc, "/healthz")
}

// checkProbeURL checks a healthcheck command line: its --url (or the
// default of cmd/healthcheck) must be the relay's port and path.
func checkProbeURL(t *testing.T, what string, argv []string, wantPath string) {
	t.Helper()
	raw := "http://127.0.0.1:8080/healthz" // cmd/healthcheck's default
	for i, a := range argv {
		if a == "--url" || a == "-url" {
			if i+1 < len(argv) {
				raw = argv[i+1]
			}
		} else if v, ok := strings.CutPrefix(a, "--url="); ok {
			raw = v
		}
	}
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatalf("%s: URL %q: %v", what, raw, err)
	}
	if u.Port() != strconv.Itoa(relayPort) || u.Path != wantPath {
		t.Errorf("%s: probes %s, want port %d and path %s", what, raw, relayPort, wantPath)
	}
}

// ---- the static build and the running relay --------------------------------

// staticBinaries builds the relay and the healthcheck the way the
// Dockerfile's go build commands do, with the same environment and flags.
func staticBinaries(t *testing.T) (relay, healthcheck string) {
	t.Helper()
	for _, b := range dockerGoBuilds(t, readDockerfile(t)) {
		bin := relaytest.Build(t, b.pkg, relaytest.BuildOptions{Flags: b.flags, Env: b.env})
		switch b.pkg {
		case "./cmd/relay":
			relay = bin
		case "./cmd/healthcheck":
			healthcheck = bin
		}
	}
	if relay == "" || healthcheck == "" {
		t.Fatalf("%s does not build both ./cmd/relay and ./cmd/healthcheck", dockerfilePath)
	}
	return relay, healthcheck
}

func TestStaticBinaries(t *testing.T) {
	relay, check := staticBinaries(t)
	for _, bin := range []string{relay, check} {
		f, err := elf.Open(bin)
		if err != nil {
			t.Fatalf("%s: %v", bin, err)
		}
		for _, p := range f.Progs {
			if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
				t.Errorf("%s: has a %v program header; not statically linked", filepath.Base(bin), p.Type)
			}
		}
		if f.Section(".dynamic") != nil || f.Section(".interp") != nil {
			t.Errorf("%s: has a .dynamic or .interp section; not statically linked", filepath.Base(bin))
		}
		if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
			t.Errorf("%s: needs shared libraries %v", filepath.Base(bin), libs)
		}
		// -ldflags "-s -w": no symbol table, no DWARF.
		for _, s := range f.Sections {
			if s.Name == ".symtab" || strings.HasPrefix(s.Name, ".debug_") || strings.HasPrefix(s.Name, ".zdebug_") {
				t.Errorf("%s: has section %s; was it built with -ldflags \"-s -w\"?", filepath.Base(bin), s.Name)
			}
		}
		_ = f.Close()
	}
	out := runHelp(t, relay, "--help")
	if !strings.Contains(out, "-addr") {
		t.Errorf("relay --help from the static build does not list -addr:\n%s", out)
	}
}

// startRelay runs the relay executable bin on a free loopback port and
// waits until /healthz answers.
func startRelay(t *testing.T, bin string, args ...string) (*relaytest.Server, *relaytest.Process) {
	t.Helper()
	s, p := relaytest.StartPath(t, bin, relaytest.CleanEnv(), append([]string{"--log-format", "json"}, args...)...)
	relaytest.Eventually(t, 10*time.Second, "/healthz to answer 200", func() bool {
		select {
		case <-p.Exited():
			t.Fatalf("relay exited\n%s", p.Stderr())
		default:
		}
		status, err := httpStatus(s.HTTP + "/healthz")
		return err == nil && status == http.StatusOK
	})
	return s, p
}

func httpStatus(u string) (int, error) {
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	resp, err := client.Get(u)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	return resp.StatusCode, nil
}

// runHealthcheck runs the healthcheck binary and returns its exit code.
func runHealthcheck(t *testing.T, bin string, args ...string) (int, string) {
	t.Helper()
	p := relaytest.ExecPath(t, bin, nil, nil, args...)
	code := p.Wait(20 * time.Second)
	return code, p.Stdout() + p.Stderr()
}

// probePaths are the HTTP paths the deployment files probe, by file.
func probePaths(t *testing.T) (readiness, liveness []string) {
	t.Helper()
	c := composeRelay(t)
	if argv := composeHealthcheck(t, c); len(argv) > 0 {
		liveness = append(liveness, urlPath(t, argv))
	}
	_, container := kubeRelay(t)
	readiness = append(readiness, str(get(container, "readinessProbe", "httpGet", "path")))
	liveness = append(liveness, str(get(container, "livenessProbe", "httpGet", "path")))
	return readiness, liveness
}

func urlPath(t *testing.T, argv []string) string {
	t.Helper()
	for i, a := range argv {
		if (a == "--url" || a == "-url") && i+1 < len(argv) {
			u, err := url.Parse(argv[i+1])
			if err != nil {
				t.Fatal(err)
			}
			return u.Path
		}
	}
	return "/healthz"
}

func TestRelayBehindTheProbes(t *testing.T) {
	relay, check := staticBinaries(t)
	readiness, liveness := probePaths(t)
	const secret = "docs-test-secret"
	s, p := startRelay(t, relay, "--jwt-secret", secret, "--drain-timeout", "10s")
	base := s.HTTP

	t.Run("healthcheck", func(t *testing.T) {
		if code, out := runHealthcheck(t, check, "--url", base+"/healthz"); code != 0 {
			t.Errorf("healthcheck against the running relay: exit %d, want 0\n%s", code, out)
		}
		if code, out := runHealthcheck(t, check, "--url", base+"/no-such-path"); code != 1 {
			t.Errorf("healthcheck against a 404: exit %d, want 1\n%s", code, out)
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		closed := ln.Addr().String()
		_ = ln.Close()
		if code, out := runHealthcheck(t, check, "--url", "http://"+closed+"/healthz", "--timeout", "5s"); code != 1 {
			t.Errorf("healthcheck against a closed port: exit %d, want 1\n%s", code, out)
		}
	})

	t.Run("probes", func(t *testing.T) {
		for _, pth := range append(slices.Clone(readiness), liveness...) {
			if status, err := httpStatus(base + pth); err != nil || status != http.StatusOK {
				t.Errorf("GET %s (probed by the deployment files) = %d, %v; want 200", pth, status, err)
			}
		}
	})

	// The drain the operations guide describes: SIGTERM turns the readiness
	// probe to 503 while connections are closed with 1001, new upgrades are
	// refused with 503, and the process exits 0.
	t.Run("drain", func(t *testing.T) {
		tok, err := exec.Command(relay, "token", "--secret", secret, "--sub", "ops", "--ttl", "5m").Output()
		if err != nil {
			t.Fatalf("relay token: %v", err)
		}
		token := strings.TrimSpace(string(tok))
		c := s.DialRawToken(t, token, "ops")
		c.Bind()
		p.Signal(syscall.SIGTERM)
		for _, pth := range readiness {
			deadline := time.Now().Add(10 * time.Second)
			for {
				status, err := httpStatus(base + pth)
				if err == nil && status == http.StatusServiceUnavailable {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("GET %s after SIGTERM: %d, %v; want 503 while draining\n%s", pth, status, err, p.Stderr())
				}
				select {
				case <-p.Exited():
					t.Fatalf("relay exited before GET %s answered 503\n%s", pth, p.Stderr())
				case <-time.After(20 * time.Millisecond):
				}
			}
		}
		if _, resp, err := s.DialWith(t, s.URL+"?token="+token, nil); err == nil || resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
			t.Errorf("upgrade while draining: %v (response %v), want status 503", err, resp)
		}
		c.ExpectClose(ws.StatusGoingAway)
		if code := p.Wait(20 * time.Second); code != 0 {
			t.Errorf("relay exit after SIGTERM: %d, want 0\n%s", code, p.Stderr())
		}
	})
}

// ---- YAML helpers ------------------------------------------------------------

func get(v any, keys ...string) any {
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

func str(v any) string {
	s, _ := v.(string)
	return s
}

func list(v any) []any {
	l, _ := v.([]any)
	return l
}

// knownVariables is every RELAY_ variable the relay reads.
func knownVariables(t *testing.T) map[string]helpFlag {
	t.Helper()
	relay, _ := staticBinaries(t)
	vars := map[string]helpFlag{}
	for name, f := range parseHelp(t, runHelp(t, relay, "--help")) {
		vars[envName(name)] = f
	}
	return vars
}

// drainTimeout is the drain timeout a deployment file sets, or the default.
func drainTimeout(t *testing.T, vars map[string]helpFlag, env map[string]string) time.Duration {
	t.Helper()
	v, ok := env["RELAY_DRAIN_TIMEOUT"]
	if !ok {
		v = vars["RELAY_DRAIN_TIMEOUT"].def
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		t.Fatalf("drain timeout %q: %v", v, err)
	}
	return d
}

func checkEnv(t *testing.T, file string, vars map[string]helpFlag, env map[string]string) {
	t.Helper()
	for k, v := range env {
		if !strings.HasPrefix(k, "RELAY_") {
			continue
		}
		if _, ok := vars[k]; !ok {
			t.Errorf("%s: sets %s, which the relay does not read", file, k)
		}
		if k == "RELAY_ADDR" {
			if _, port, err := net.SplitHostPort(v); err != nil || port != strconv.Itoa(relayPort) {
				t.Errorf("%s: RELAY_ADDR=%q, want port %d", file, v, relayPort)
			}
		}
	}
}

// ---- docker-compose.yml --------------------------------------------------------

func composeRelay(t *testing.T) map[string]any {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, composePath))
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatalf("%s: %v", composePath, err)
	}
	relay, ok := get(doc, "services", "relay").(map[string]any)
	if !ok {
		t.Fatalf("%s: no services.relay", composePath)
	}
	return relay
}

func composeHealthcheck(t *testing.T, relay map[string]any) []string {
	t.Helper()
	var argv []string
	for _, a := range list(get(relay, "healthcheck", "test")) {
		argv = append(argv, fmt.Sprint(a))
	}
	if len(argv) < 2 || argv[0] != "CMD" {
		t.Fatalf("%s: healthcheck.test %v, want [\"CMD\", …] (the image has no shell)", composePath, argv)
	}
	return argv[1:]
}

func TestCompose(t *testing.T) {
	relay := composeRelay(t)
	vars := knownVariables(t)

	ctx := str(get(relay, "build", "context"))
	df := str(get(relay, "build", "dockerfile"))
	if got, want := filepath.Clean(filepath.Join(filepath.Dir(composePath), ctx, df)), filepath.Clean(dockerfilePath); got != want {
		t.Errorf("%s: build uses %s, want %s", composePath, got, want)
	}
	if ctxDir := filepath.Clean(filepath.Join(filepath.Dir(composePath), ctx)); ctxDir != "." {
		t.Errorf("%s: build context %s is not the repository root", composePath, ctx)
	}

	published := false
	for _, p := range list(relay["ports"]) {
		s := fmt.Sprint(p)
		if strings.HasSuffix(s, ":"+strconv.Itoa(relayPort)) || s == strconv.Itoa(relayPort) {
			published = true
		}
	}
	if !published {
		t.Errorf("%s: no port mapping to container port %d", composePath, relayPort)
	}

	env := map[string]string{}
	em, ok := relay["environment"].(map[string]any)
	if !ok {
		t.Fatalf("%s: environment must be a map", composePath)
	}
	for k, v := range em {
		env[k] = fmt.Sprint(v)
	}
	checkEnv(t, composePath, vars, env)
	if env["RELAY_JWT_SECRET"] == "" && env["RELAY_JWT_SECRET_FILE"] == "" && env["RELAY_JWKS_FILE"] == "" && env["RELAY_JWT_PUBLIC_KEY_FILE"] == "" {
		t.Errorf("%s: no key source configured; the relay would refuse to start", composePath)
	}

	argv := composeHealthcheck(t, relay)
	ins := readDockerfile(t)
	builds := dockerGoBuilds(t, ins)
	dest := copyDest(t, stages(ins)[len(stages(ins))-1])
	for _, b := range builds {
		if b.pkg == "./cmd/healthcheck" && argv[0] != dest[b.out] {
			t.Errorf("%s: healthcheck runs %s, the image has cmd/healthcheck at %s", composePath, argv[0], dest[b.out])
		}
	}
	checkProbeURL(t, composePath+" healthcheck", argv, "/healthz")

	soft, _ := get(relay, "ulimits", "nofile", "soft").(int)
	hard, _ := get(relay, "ulimits", "nofile", "hard").(int)
	if soft < 65536 || hard < soft {
		t.Errorf("%s: ulimits.nofile soft %d hard %d, want soft >= 65536 and hard >= soft", composePath, soft, hard)
	}

	grace, err := time.ParseDuration(str(relay["stop_grace_period"]))
	if err != nil {
		t.Fatalf("%s: stop_grace_period: %v", composePath, err)
	}
	if d := drainTimeout(t, vars, env); grace <= d {
		t.Errorf("%s: stop_grace_period %s must exceed the drain timeout %s", composePath, grace, d)
	}
	if u := str(relay["user"]); u == "" || strings.HasPrefix(u, "0") || strings.HasPrefix(u, "root") {
		t.Errorf("%s: user %q, want a non-root user", composePath, u)
	}
}

// ---- kubernetes.yaml -------------------------------------------------------------

// yamlDocs reads the documents of a YAML file of the repository, empty
// ones left out.
func yamlDocs(t *testing.T, file string) []map[string]any {
	t.Helper()
	f, err := os.Open(filepath.Join(repoRoot, file))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var docs []map[string]any
	dec := yaml.NewDecoder(f)
	for {
		var doc map[string]any
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			return docs
		}
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		if doc != nil {
			docs = append(docs, doc)
		}
	}
}

func kubeDocs(t *testing.T) map[string]map[string]any {
	t.Helper()
	byKind := map[string]map[string]any{}
	for _, doc := range yamlDocs(t, kubernetesPath) {
		kind := str(doc["kind"])
		if _, dup := byKind[kind]; dup {
			t.Fatalf("%s: two %s objects", kubernetesPath, kind)
		}
		byKind[kind] = doc
	}
	for _, kind := range []string{"Secret", "Deployment", "Service"} {
		if byKind[kind] == nil {
			t.Fatalf("%s: no %s", kubernetesPath, kind)
		}
	}
	return byKind
}

func kubeRelay(t *testing.T) (deployment, container map[string]any) {
	t.Helper()
	d := kubeDocs(t)["Deployment"]
	for _, c := range list(get(d, "spec", "template", "spec", "containers")) {
		if m, ok := c.(map[string]any); ok && str(m["name"]) == "relay" {
			return d, m
		}
	}
	t.Fatalf("%s: the Deployment has no container named relay", kubernetesPath)
	return nil, nil
}

// resolvePort turns a probe or target port (number or name) into a number.
func resolvePort(container map[string]any, port any) int {
	switch p := port.(type) {
	case int:
		return p
	case string:
		for _, cp := range list(container["ports"]) {
			if str(get(cp, "name")) == p {
				n, _ := get(cp, "containerPort").(int)
				return n
			}
		}
	}
	return 0
}

func subset(small, big any) bool {
	s, ok1 := small.(map[string]any)
	b, ok2 := big.(map[string]any)
	if !ok1 || !ok2 || len(s) == 0 {
		return false
	}
	for k, v := range s {
		if b[k] != v {
			return false
		}
	}
	return true
}

func TestKubernetes(t *testing.T) {
	docs := kubeDocs(t)
	dep, c := kubeRelay(t)
	vars := knownVariables(t)
	pod := get(dep, "spec", "template")

	if !subset(get(dep, "spec", "selector", "matchLabels"), get(pod, "metadata", "labels")) {
		t.Errorf("%s: the Deployment's selector does not match its pod labels", kubernetesPath)
	}
	if !subset(get(docs["Service"], "spec", "selector"), get(pod, "metadata", "labels")) {
		t.Errorf("%s: the Service's selector does not match the pod labels", kubernetesPath)
	}
	for _, sp := range list(get(docs["Service"], "spec", "ports")) {
		if n := resolvePort(c, get(sp, "targetPort")); n != relayPort {
			t.Errorf("%s: Service targetPort resolves to %d, want %d", kubernetesPath, n, relayPort)
		}
	}
	checkRelayPod(t, kubernetesPath, docs["Secret"], pod, c, vars)
}

// containerEnv is a container's env list: literal values, and the Secret
// each secretKeyRef variable reads.
func containerEnv(c map[string]any) (env, secretEnv map[string]string) {
	env, secretEnv = map[string]string{}, map[string]string{}
	for _, e := range list(c["env"]) {
		name := str(get(e, "name"))
		env[name] = str(get(e, "value"))
		if s := str(get(e, "valueFrom", "secretKeyRef", "name")); s != "" {
			secretEnv[name] = s
		}
	}
	return env, secretEnv
}

// checkRelayPod checks what every relay pod template of a manifest must
// get right: probes, variables the relay reads, the JWT secret from the
// Secret, a drain that fits the grace period, and a locked-down container.
func checkRelayPod(t *testing.T, file string, secret map[string]any, pod any, c map[string]any, vars map[string]helpFlag) {
	t.Helper()
	if n := resolvePort(c, get(c, "readinessProbe", "httpGet", "port")); n != relayPort {
		t.Errorf("%s: readiness probe port resolves to %d, want %d", file, n, relayPort)
	}
	if p := str(get(c, "readinessProbe", "httpGet", "path")); p != "/readyz" {
		t.Errorf("%s: readiness probe path %q, want /readyz", file, p)
	}
	if n := resolvePort(c, get(c, "livenessProbe", "httpGet", "port")); n != relayPort {
		t.Errorf("%s: liveness probe port resolves to %d, want %d", file, n, relayPort)
	}
	if p := str(get(c, "livenessProbe", "httpGet", "path")); p != "/healthz" {
		t.Errorf("%s: liveness probe path %q, want /healthz", file, p)
	}

	env, secretEnv := containerEnv(c)
	checkEnv(t, file, vars, env)

	// The JWT secret comes from the Secret: as a variable, or as a file on
	// a volume of that Secret.
	secretName := str(get(secret, "metadata", "name"))
	used := slices.Contains(slices.Collect(maps.Values(secretEnv)), secretName)
	if jwtFile := env["RELAY_JWT_SECRET_FILE"]; jwtFile != "" {
		for _, v := range list(get(pod, "spec", "volumes")) {
			if str(get(v, "secret", "secretName")) != secretName {
				continue
			}
			for _, m := range list(c["volumeMounts"]) {
				if str(get(m, "name")) == str(get(v, "name")) && path.Dir(jwtFile) == path.Clean(str(get(m, "mountPath"))) {
					key := path.Base(jwtFile)
					for _, it := range list(get(v, "secret", "items")) {
						if str(get(it, "path")) == key {
							key = str(get(it, "key"))
						}
					}
					if get(secret, "stringData", key) == nil && get(secret, "data", key) == nil {
						t.Errorf("%s: RELAY_JWT_SECRET_FILE=%s reads key %q, which the Secret lacks", file, jwtFile, key)
					}
					used = true
				}
			}
		}
	}
	if !used {
		t.Errorf("%s: the container does not take its JWT secret from Secret %s", file, secretName)
	}

	preStop, _ := get(c, "lifecycle", "preStop", "sleep", "seconds").(int)
	if preStop <= 0 {
		t.Errorf("%s: want a preStop sleep so that endpoints are updated before SIGTERM", file)
	}
	grace, _ := get(pod, "spec", "terminationGracePeriodSeconds").(int)
	if d := drainTimeout(t, vars, env); time.Duration(grace)*time.Second <= time.Duration(preStop)*time.Second+d {
		t.Errorf("%s: terminationGracePeriodSeconds %d must exceed the preStop sleep (%ds) plus the drain timeout (%s)", file, grace, preStop, d)
	}

	if get(pod, "spec", "securityContext", "runAsNonRoot") != true {
		t.Errorf("%s: pod securityContext.runAsNonRoot is not true", file)
	}
	if uid, ok := get(pod, "spec", "securityContext", "runAsUser").(int); !ok || uid == 0 {
		t.Errorf("%s: pod securityContext.runAsUser %v, want a numeric non-root user", file, get(pod, "spec", "securityContext", "runAsUser"))
	}
	if get(c, "securityContext", "readOnlyRootFilesystem") != true {
		t.Errorf("%s: container securityContext.readOnlyRootFilesystem is not true", file)
	}
	if get(c, "securityContext", "allowPrivilegeEscalation") != false {
		t.Errorf("%s: container securityContext.allowPrivilegeEscalation is not false", file)
	}
	for _, k := range []string{"requests", "limits"} {
		if m, _ := get(c, "resources", k).(map[string]any); len(m) == 0 {
			t.Errorf("%s: container has no resources.%s", file, k)
		}
	}
}

// ---- kubernetes-cluster.yaml ---------------------------------------------------------

// pendingClusterVariables are the variables of the relay's cluster flags
// (--cluster-addr, --cluster-peers, --cluster-provider, --cluster-etcd,
// --cluster-name). They are accepted here only while the relay does not
// list --cluster-addr in its --help; once it does, the cluster manifest is
// checked against --help alone, like every other file.
var pendingClusterVariables = []string{
	"RELAY_CLUSTER_ADDR", "RELAY_CLUSTER_PEERS", "RELAY_CLUSTER_PROVIDER", "RELAY_CLUSTER_ETCD", "RELAY_CLUSTER_NAME",
}

// clusterPort is the port the cluster manifest gives the nodes for each other.
const clusterPort = 8090

// kubeObjects reads every object of a manifest, by kind and then name.
func kubeObjects(t *testing.T, file string) map[string]map[string]map[string]any {
	t.Helper()
	objs := map[string]map[string]map[string]any{}
	for _, doc := range yamlDocs(t, file) {
		kind, name := str(doc["kind"]), str(get(doc, "metadata", "name"))
		if kind == "" || name == "" || str(doc["apiVersion"]) == "" {
			t.Fatalf("%s: an object without apiVersion, kind or metadata.name: %v", file, doc)
		}
		if objs[kind] == nil {
			objs[kind] = map[string]map[string]any{}
		}
		if objs[kind][name] != nil {
			t.Fatalf("%s: two %s objects named %s", file, kind, name)
		}
		objs[kind][name] = doc
	}
	return objs
}

// only is the single object of a kind in a manifest.
func only(t *testing.T, file string, objs map[string]map[string]map[string]any, kind string) map[string]any {
	t.Helper()
	if len(objs[kind]) != 1 {
		t.Fatalf("%s: want one %s, found %d", file, kind, len(objs[kind]))
	}
	for _, o := range objs[kind] {
		return o
	}
	return nil
}

func TestKubernetesCluster(t *testing.T) {
	const file = kubeClusterPath
	objs := kubeObjects(t, file)
	vars := knownVariables(t)
	if _, ok := vars["RELAY_CLUSTER_ADDR"]; !ok {
		t.Logf("relay --help does not list --cluster-addr yet: accepting %v", pendingClusterVariables)
		for _, v := range pendingClusterVariables {
			vars[v] = helpFlag{name: v}
		}
	}

	sts := only(t, file, objs, "StatefulSet")
	pod := get(sts, "spec", "template")
	podLabels := get(pod, "metadata", "labels")
	var c map[string]any
	for _, cc := range list(get(pod, "spec", "containers")) {
		if m, ok := cc.(map[string]any); ok && str(m["name"]) == "relay" {
			c = m
		}
	}
	if c == nil {
		t.Fatalf("%s: the StatefulSet has no container named relay", file)
	}
	if !subset(get(sts, "spec", "selector", "matchLabels"), podLabels) {
		t.Errorf("%s: the StatefulSet's selector does not match its pod labels", file)
	}
	if r, _ := get(sts, "spec", "replicas").(int); r < 2 {
		t.Errorf("%s: replicas %d: a cluster example wants at least 2", file, r)
	}
	if n := resolvePort(c, "cluster"); n != clusterPort {
		t.Errorf("%s: container port named cluster is %d, want %d", file, n, clusterPort)
	}

	// Services: a headless one for the cluster port, governing the
	// StatefulSet, and one for WebSocket traffic.
	var headless, public map[string]any
	for name, svc := range objs["Service"] {
		if !subset(get(svc, "spec", "selector"), podLabels) {
			t.Errorf("%s: Service %s's selector does not match the pod labels", file, name)
		}
		if str(get(svc, "spec", "clusterIP")) == "None" {
			headless = svc
		} else {
			public = svc
		}
	}
	if headless == nil || public == nil || len(objs["Service"]) != 2 {
		t.Fatalf("%s: want a headless Service and a public one, have %d Services", file, len(objs["Service"]))
	}
	if got, want := str(get(sts, "spec", "serviceName")), str(get(headless, "metadata", "name")); got != want {
		t.Errorf("%s: StatefulSet serviceName %q, want the headless Service %q", file, got, want)
	}
	for _, sp := range list(get(headless, "spec", "ports")) {
		if n := resolvePort(c, get(sp, "targetPort")); n != clusterPort {
			t.Errorf("%s: headless Service targetPort resolves to %d, want the cluster port %d", file, n, clusterPort)
		}
	}
	for _, sp := range list(get(public, "spec", "ports")) {
		if n := resolvePort(c, get(sp, "targetPort")); n != relayPort {
			t.Errorf("%s: public Service targetPort resolves to %d, want %d", file, n, relayPort)
		}
	}

	checkRelayPod(t, file, only(t, file, objs, "Secret"), pod, c, vars)

	// The cluster flags: the pod's own IP from the downward API, declared
	// before the variable that refers to it, on the cluster port.
	env, _ := containerEnv(c)
	if env["RELAY_CLUSTER_PROVIDER"] != "kubernetes" {
		t.Errorf("%s: RELAY_CLUSTER_PROVIDER=%q, want kubernetes", file, env["RELAY_CLUSTER_PROVIDER"])
	}
	ipVar := ""
	for _, e := range list(c["env"]) {
		name := str(get(e, "name"))
		if str(get(e, "valueFrom", "fieldRef", "fieldPath")) == "status.podIP" {
			ipVar = name
		}
		if name == "RELAY_CLUSTER_ADDR" {
			host, port, err := net.SplitHostPort(str(get(e, "value")))
			if ipVar == "" || err != nil || host != "$("+ipVar+")" || port != strconv.Itoa(clusterPort) {
				t.Errorf("%s: RELAY_CLUSTER_ADDR=%q, want $(VAR):%d after VAR from fieldRef status.podIP (%q)", file, str(get(e, "value")), clusterPort, ipVar)
			}
		}
	}
	if _, ok := env["RELAY_CLUSTER_ADDR"]; !ok {
		t.Errorf("%s: no RELAY_CLUSTER_ADDR", file)
	}

	// RBAC: the pods run as a service account whose token is mounted, bound
	// to a Role that lets the provider get and patch its pod and list and
	// watch the others.
	sa := only(t, file, objs, "ServiceAccount")
	saName := str(get(sa, "metadata", "name"))
	if got := str(get(pod, "spec", "serviceAccountName")); got != saName {
		t.Errorf("%s: pods run as service account %q, want %q", file, got, saName)
	}
	if get(pod, "spec", "automountServiceAccountToken") == false || get(sa, "automountServiceAccountToken") == false {
		t.Errorf("%s: the service account token must be mounted: the provider reads it", file)
	}
	role := only(t, file, objs, "Role")
	rb := only(t, file, objs, "RoleBinding")
	if str(get(rb, "roleRef", "kind")) != "Role" || str(get(rb, "roleRef", "name")) != str(get(role, "metadata", "name")) {
		t.Errorf("%s: the RoleBinding does not refer to the Role", file)
	}
	bound := false
	for _, s := range list(get(rb, "subjects")) {
		if str(get(s, "kind")) == "ServiceAccount" && str(get(s, "name")) == saName {
			bound = true
		}
	}
	if !bound {
		t.Errorf("%s: the RoleBinding does not bind service account %s", file, saName)
	}
	verbs := map[string]bool{}
	for _, r := range list(get(role, "rules")) {
		groups, resources := list(get(r, "apiGroups")), list(get(r, "resources"))
		if slices.Contains(groups, any("")) && slices.Contains(resources, any("pods")) {
			for _, v := range list(get(r, "verbs")) {
				verbs[str(v)] = true
			}
		}
	}
	for _, v := range []string{"get", "list", "watch", "patch"} {
		if !verbs[v] {
			t.Errorf("%s: the Role does not allow %s on pods, which the cluster provider needs", file, v)
		}
	}
}
