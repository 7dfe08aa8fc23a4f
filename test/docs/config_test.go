// Package docs checks the operator documentation against the relay itself:
// the flags and defaults in docs/CONFIGURATION.md and README.md against
// `relay --help`, and the deployment files in docs/deploy against the static
// build, the binary's behaviour and its HTTP surface.
package docs

import (
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/livestore-relay/livestore-relay/test/relaytest"
)

// repoRoot is the repository's root, relative to this package.
const repoRoot = "../.."

// envName is the variable that backs a flag: --foo-bar is RELAY_FOO_BAR.
func envName(flag string) string {
	return "RELAY_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// helpFlag is one flag as `--help` prints it.
type helpFlag struct {
	name   string
	kind   string // "string", "int", "duration", …; "" for a boolean
	def    string // the printed default, unquoted; "" when none is printed
	hasDef bool
	usage  string
}

var (
	flagLine    = regexp.MustCompile(`^  -([a-z0-9][a-z0-9-]*)(?: ([a-z0-9]+))?$`)
	defaultText = regexp.MustCompile(`\(default (.+)\)$`)
)

// parseHelp reads the flag list that Go's flag package prints.
func parseHelp(t *testing.T, out string) map[string]helpFlag {
	t.Helper()
	flags := map[string]helpFlag{}
	var cur *helpFlag
	flush := func() {
		if cur == nil {
			return
		}
		if m := defaultText.FindStringSubmatch(cur.usage); m != nil {
			cur.def, cur.hasDef = m[1], true
			if s, err := strconv.Unquote(m[1]); err == nil {
				cur.def = s
			}
		}
		if _, dup := flags[cur.name]; dup {
			t.Fatalf("--help lists -%s twice", cur.name)
		}
		flags[cur.name] = *cur
		cur = nil
	}
	for _, line := range strings.Split(out, "\n") {
		if m := flagLine.FindStringSubmatch(line); m != nil {
			flush()
			cur = &helpFlag{name: m[1], kind: m[2]}
			continue
		}
		if cur != nil && strings.HasPrefix(line, "    \t") {
			cur.usage = strings.TrimSpace(strings.Join([]string{cur.usage, strings.TrimSpace(line)}, " "))
			continue
		}
		flush()
	}
	flush()
	return flags
}

// runHelp runs bin with args, which must print help and exit 0.
func runHelp(t *testing.T, bin string, args ...string) string {
	t.Helper()
	p := relaytest.ExecPath(t, bin, relaytest.CleanEnv(), nil, args...)
	if code := p.Wait(30 * time.Second); code != 0 {
		t.Fatalf("%s %s: exit %d\n%s%s", filepath.Base(bin), strings.Join(args, " "), code, p.Stdout(), p.Stderr())
	}
	return p.Stdout() + p.Stderr()
}

// docRow is one row of a flag table in a Markdown document.
type docRow struct {
	line     int
	flag     string
	variable string // "" in tables without a variable column
	defCell  string
	hasVar   bool
}

var (
	backtickSpan = regexp.MustCompile("`([^`]*)`")
	dashFlag     = regexp.MustCompile(`^--([a-z0-9][a-z0-9-]*)(?:=.*)?$`)
)

func cells(line string) []string {
	line = strings.TrimSpace(line)
	line = strings.TrimPrefix(line, "|")
	line = strings.TrimSuffix(line, "|")
	parts := strings.Split(line, "|")
	for i := range parts {
		parts[i] = strings.TrimSpace(parts[i])
	}
	return parts
}

// flagTables returns the rows of every table whose header starts with
// "flag | variable | default" or "flag | default" (subcommand tables).
func flagTables(t *testing.T, doc string) (main, sub []docRow) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, doc))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(b), "\n")
	for i := 0; i < len(lines); i++ {
		h := cells(lines[i])
		if !strings.HasPrefix(strings.TrimSpace(lines[i]), "|") || len(h) < 2 || h[0] != "flag" {
			continue
		}
		hasVar := len(h) >= 3 && h[1] == "variable" && h[2] == "default"
		if !hasVar && h[1] != "default" {
			continue
		}
		for i += 2; i < len(lines) && strings.HasPrefix(strings.TrimSpace(lines[i]), "|"); i++ {
			c := cells(lines[i])
			m := backtickSpan.FindStringSubmatch(c[0])
			if m == nil {
				t.Errorf("%s:%d: first cell %q holds no `--flag`", doc, i+1, c[0])
				continue
			}
			f := dashFlag.FindStringSubmatch(m[1])
			if f == nil {
				t.Errorf("%s:%d: %q is not a --flag", doc, i+1, m[1])
				continue
			}
			row := docRow{line: i + 1, flag: f[1], hasVar: hasVar}
			if hasVar {
				if len(c) < 4 {
					t.Errorf("%s:%d: want flag, variable, default and meaning cells", doc, i+1)
					continue
				}
				row.variable = strings.Trim(c[1], "`")
				row.defCell = c[2]
			} else if len(c) >= 2 {
				row.defCell = c[1]
			}
			if hasVar {
				main = append(main, row)
			} else {
				sub = append(sub, row)
			}
		}
	}
	return main, sub
}

// perOS is a default cell that depends on the operating system, such as
// "`epoll` on Linux, else `goroutine`".
var perOS = regexp.MustCompile("^`([^`]*)` on ([A-Za-z]+), else `([^`]*)`")

// documentedDefault is the first `code span` of a default cell, "" when
// the cell has none (empty, "off", "unset: not checked", …). A default
// documented per operating system is the one for this system.
func documentedDefault(cell string) string {
	if m := perOS.FindStringSubmatch(cell); m != nil {
		if strings.EqualFold(m[2], runtime.GOOS) {
			return m[1]
		}
		return m[3]
	}
	if m := backtickSpan.FindStringSubmatch(cell); m != nil {
		return m[1]
	}
	return ""
}

// sameDefault compares a documented default with the help's, as values of
// the flag's type.
func sameDefault(f helpFlag, doc string) bool {
	help := f.def
	switch f.kind {
	case "duration":
		parse := func(s string) (time.Duration, bool) {
			if s == "" {
				return 0, true
			}
			d, err := time.ParseDuration(s)
			return d, err == nil
		}
		a, ok1 := parse(help)
		b, ok2 := parse(doc)
		return ok1 && ok2 && a == b
	case "int", "int64", "uint", "uint64", "float":
		parse := func(s string) (float64, bool) {
			if s == "" {
				return 0, true
			}
			v, err := strconv.ParseFloat(s, 64)
			return v, err == nil
		}
		a, ok1 := parse(help)
		b, ok2 := parse(doc)
		return ok1 && ok2 && a == b
	case "":
		parse := func(s string) (bool, bool) {
			if s == "" {
				return false, true
			}
			v, err := strconv.ParseBool(s)
			return v, err == nil
		}
		a, ok1 := parse(help)
		b, ok2 := parse(doc)
		return ok1 && ok2 && a == b
	}
	return help == doc
}

// proseFlags returns every `--name` code span in doc, with its line.
func proseFlags(t *testing.T, doc string) map[string]int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, doc))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for i, line := range strings.Split(string(b), "\n") {
		for _, m := range backtickSpan.FindAllStringSubmatch(line, -1) {
			if f := dashFlag.FindStringSubmatch(m[1]); f != nil {
				if _, seen := out[f[1]]; !seen {
					out[f[1]] = i + 1
				}
			}
		}
	}
	return out
}

// placeholderFlag stands for "any flag" where the docs explain the
// variable naming rule.
const placeholderFlag = "foo-bar"

func TestConfigurationDocs(t *testing.T) {
	bin := relaytest.Binary(t)
	flags := parseHelp(t, runHelp(t, bin, "--help"))
	if len(flags) < 20 {
		t.Fatalf("parsed only %d flags from relay --help; has its format changed?", len(flags))
	}
	for _, want := range []string{"addr", "jwt-secret", "dev", "drain-timeout", "max-message-bytes"} {
		if _, ok := flags[want]; !ok {
			t.Fatalf("relay --help does not list -%s (parsed %d flags)", want, len(flags))
		}
	}
	subFlags := map[string]bool{}
	for _, sub := range []string{"token", "connect"} {
		parsed := parseHelp(t, runHelp(t, bin, sub, "--help"))
		if len(parsed) == 0 {
			t.Fatalf("relay %s --help lists no flags", sub)
		}
		for name := range parsed {
			subFlags[name] = true
		}
	}

	for _, doc := range []string{"docs/CONFIGURATION.md", "README.md"} {
		t.Run(strings.ReplaceAll(doc, "/", "_"), func(t *testing.T) {
			rows, subRows := flagTables(t, doc)
			seen := map[string]docRow{}
			for _, r := range rows {
				f, ok := flags[r.flag]
				if !ok {
					t.Errorf("%s:%d: --%s is documented but relay --help has no such flag", doc, r.line, r.flag)
					continue
				}
				if prev, dup := seen[r.flag]; dup {
					t.Errorf("%s:%d: --%s is documented again (first at line %d)", doc, r.line, r.flag, prev.line)
				}
				seen[r.flag] = r
				if r.variable != envName(r.flag) {
					t.Errorf("%s:%d: --%s: variable %q, want %s", doc, r.line, r.flag, r.variable, envName(r.flag))
				}
				if d := documentedDefault(r.defCell); !sameDefault(f, d) {
					help := "none"
					if f.hasDef {
						help = strconv.Quote(f.def)
					}
					t.Errorf("%s:%d: --%s: documented default %q, relay --help says %s", doc, r.line, r.flag, d, help)
				}
			}
			var missing []string
			for name := range flags {
				if _, ok := seen[name]; !ok {
					missing = append(missing, "--"+name)
				}
			}
			slices.Sort(missing)
			if len(missing) > 0 {
				t.Errorf("%s: flags of relay --help missing from its flag tables: %s", doc, strings.Join(missing, ", "))
			}
			for _, r := range subRows {
				if !subFlags[r.flag] {
					t.Errorf("%s:%d: --%s is documented for a subcommand, but neither relay token nor relay connect has it", doc, r.line, r.flag)
				}
			}
			for name, line := range proseFlags(t, doc) {
				if name == placeholderFlag {
					continue
				}
				if _, ok := flags[name]; !ok && !subFlags[name] {
					t.Errorf("%s:%d: `--%s` is mentioned, but the relay has no such flag", doc, line, name)
				}
			}
		})
	}
}

func TestConfigurationDocsSubcommands(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(repoRoot, "docs/CONFIGURATION.md"))
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	for _, want := range []string{"relay token", "relay connect", "SIGHUP", "--dev"} {
		if !strings.Contains(doc, want) {
			t.Errorf("docs/CONFIGURATION.md does not mention %s", want)
		}
	}
}
