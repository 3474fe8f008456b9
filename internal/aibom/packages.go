package aibom

import (
	"debug/buildinfo"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// The AI SDKs and frameworks the BOM lists. An AI-BOM is about the AI supply chain: the model
// clients, agent frameworks and MCP libraries, not every dependency (a software BOM of the
// image does that). A name is matched exactly or as a prefix followed by "/" (Go, npm scopes).
const (
	kindFramework = "framework"
	kindLibrary   = "library"
)

// knownGo maps Go module paths to their kind.
var knownGo = map[string]string{
	"github.com/openai/openai-go":                         kindLibrary,
	"github.com/sashabaranov/go-openai":                   kindLibrary,
	"github.com/anthropics/anthropic-sdk-go":              kindLibrary,
	"github.com/liushuangls/go-anthropic":                 kindLibrary,
	"google.golang.org/genai":                             kindLibrary,
	"github.com/google/generative-ai-go":                  kindLibrary,
	"github.com/cohere-ai/cohere-go":                      kindLibrary,
	"github.com/ollama/ollama":                            kindLibrary,
	"github.com/aws/aws-sdk-go-v2/service/bedrockruntime": kindLibrary,
	"github.com/mark3labs/mcp-go":                         kindLibrary,
	"github.com/modelcontextprotocol/go-sdk":              kindLibrary,
	"github.com/tmc/langchaingo":                          kindFramework,
	"github.com/cloudwego/eino":                           kindFramework,
	"github.com/cloudwego/eino-ext":                       kindFramework,
	"github.com/firebase/genkit/go":                       kindFramework,
}

// knownPython maps import names (the folder under site-packages) to distribution name and kind.
var knownPython = map[string][2]string{
	"openai":              {"openai", kindLibrary},
	"anthropic":           {"anthropic", kindLibrary},
	"google.genai":        {"google-genai", kindLibrary},
	"google.generativeai": {"google-generativeai", kindLibrary},
	"mistralai":           {"mistralai", kindLibrary},
	"cohere":              {"cohere", kindLibrary},
	"ollama":              {"ollama", kindLibrary},
	"groq":                {"groq", kindLibrary},
	"litellm":             {"litellm", kindLibrary},
	"tiktoken":            {"tiktoken", kindLibrary},
	"transformers":        {"transformers", kindLibrary},
	"instructor":          {"instructor", kindLibrary},
	"mcp":                 {"mcp", kindLibrary},
	"fastmcp":             {"fastmcp", kindLibrary},
	"langchain":           {"langchain", kindFramework},
	"langgraph":           {"langgraph", kindFramework},
	"llama_index":         {"llama-index", kindFramework},
	"crewai":              {"crewai", kindFramework},
	"autogen":             {"autogen", kindFramework},
	"agents":              {"openai-agents", kindFramework},
	"semantic_kernel":     {"semantic-kernel", kindFramework},
	"haystack":            {"haystack-ai", kindFramework},
	"dspy":                {"dspy", kindFramework},
	"pydantic_ai":         {"pydantic-ai", kindFramework},
	"smolagents":          {"smolagents", kindFramework},
}

// pythonPrefixes are import-name families: langchain_openai is the distribution langchain-openai.
var pythonPrefixes = []string{"langchain_", "langgraph_", "autogen_"}

// knownNode maps npm package names (or "@scope/" for a whole scope) to their kind.
var knownNode = map[string]string{
	"openai":                          kindLibrary,
	"@anthropic-ai/sdk":               kindLibrary,
	"@google/genai":                   kindLibrary,
	"@google/generative-ai":           kindLibrary,
	"@mistralai/mistralai":            kindLibrary,
	"cohere-ai":                       kindLibrary,
	"ollama":                          kindLibrary,
	"groq-sdk":                        kindLibrary,
	"@aws-sdk/client-bedrock-runtime": kindLibrary,
	"@modelcontextprotocol/sdk":       kindLibrary,
	"@ai-sdk/":                        kindLibrary,
	"ai":                              kindFramework,
	"langchain":                       kindFramework,
	"@langchain/":                     kindFramework,
	"@openai/agents":                  kindFramework,
	"llamaindex":                      kindFramework,
}

// goKind is the kind of a Go module path, "" when it is not on the list.
func goKind(path string) string {
	for p := path; p != ""; {
		if k, ok := knownGo[p]; ok {
			return k
		}
		i := strings.LastIndexByte(p, '/')
		if i < 0 {
			break
		}
		p = p[:i]
	}
	return ""
}

func pythonDist(importName string) (dist, kind string, ok bool) {
	if e, ok := knownPython[importName]; ok {
		return e[0], e[1], true
	}
	for _, p := range pythonPrefixes {
		if strings.HasPrefix(importName, p) && len(importName) > len(p) {
			return strings.ReplaceAll(importName, "_", "-"), kindFramework, true
		}
	}
	return "", "", false
}

// normalizeDist is a Python distribution name as PEP 503 compares them.
func normalizeDist(s string) string {
	s = strings.ToLower(s)
	return strings.NewReplacer("_", "-", ".", "-").Replace(s)
}

// pythonDistKind finds a distribution name (from a .dist-info folder) on the list.
func pythonDistKind(dist string) (string, bool) {
	d := normalizeDist(dist)
	for _, e := range knownPython {
		if e[0] == d {
			return e[1], true
		}
	}
	for _, p := range pythonPrefixes {
		if strings.HasPrefix(d, strings.ReplaceAll(p, "_", "-")) {
			return kindFramework, true
		}
	}
	return "", false
}

func nodeKind(name string) string {
	if k, ok := knownNode[name]; ok {
		return k
	}
	if i := strings.IndexByte(name, '/'); i > 0 && name[0] == '@' {
		return knownNode[name[:i+1]]
	}
	return ""
}

// How a package was found, the additionalContext of its evidence occurrence.
const (
	evidencePath         = "a file the process opened, or a frame of its stack, is in the package"
	evidenceDistInfo     = "the process opened the package's .dist-info folder, named with its version"
	evidenceHostDistInfo = "the package's .dist-info folder on the host that wrote the BOM"
	evidencePackageJSON  = "the package's package.json on the host that wrote the BOM"
	evidenceGoBuildInfo  = "the Go build info of the executable"
)

// pathDelims end a path inside a stack trace or a command line.
const pathDelims = " \t\r\n()\"',;"

var pyMarkers = []string{"/site-packages/", "/dist-packages/"}

// packagesInText finds the AI packages whose files a text names: Python packages under
// site-packages or dist-packages (a .dist-info folder also gives the version), npm packages
// under node_modules. Only packages on the lists are returned.
func packagesInText(s string) []Package {
	var out []Package
	for _, m := range pyMarkers {
		for off := 0; ; {
			i := strings.Index(s[off:], m)
			if i < 0 {
				break
			}
			i += off
			off = i + len(m)
			root := pathAt(s, i) + m[:len(m)-1]
			if p, ok := pythonPackage(root, s[off:]); ok {
				out = append(out, p)
			}
		}
	}
	const nm = "/node_modules/"
	for off := 0; ; {
		i := strings.Index(s[off:], nm)
		if i < 0 {
			break
		}
		i += off
		off = i + len(nm)
		root := pathAt(s, i) + nm[:len(nm)-1]
		if p, ok := nodePackage(root, s[off:]); ok {
			out = append(out, p)
		}
	}
	return out
}

// pathAt is the beginning of the path that contains s[i], up to i: a stack frame of Node names
// its file as a file:// URL.
func pathAt(s string, i int) string {
	start := 0
	if j := strings.LastIndexAny(s[:i], pathDelims); j >= 0 {
		start = j + 1
	}
	return strings.TrimPrefix(s[start:i], "file://")
}

// segment is the next path element of rest.
func segment(rest string) (string, string) {
	end := strings.IndexAny(rest, pathDelims+"/:")
	if end < 0 {
		return rest, ""
	}
	if rest[end] == '/' {
		return rest[:end], rest[end+1:]
	}
	return rest[:end], ""
}

func pythonPackage(root, rest string) (Package, bool) {
	name, after := segment(rest)
	if name == "" {
		return Package{}, false
	}
	if base, ok := strings.CutSuffix(name, ".dist-info"); ok {
		dist, version, ok := strings.Cut(base, "-")
		if !ok || dist == "" || version == "" {
			return Package{}, false
		}
		kind, ok := pythonDistKind(dist)
		if !ok {
			return Package{}, false
		}
		return Package{Ecosystem: "pypi", Name: normalizeDist(dist), Version: version, Kind: kind,
			Evidence: evidenceDistInfo, Location: root + "/" + name, Root: root}, true
	}
	name = strings.TrimSuffix(name, ".py")
	if name == "google" {
		// google is a namespace package: google.genai and google.generativeai are different SDKs.
		sub, _ := segment(after)
		name += "." + strings.TrimSuffix(sub, ".py")
	}
	dist, kind, ok := pythonDist(name)
	if !ok {
		return Package{}, false
	}
	return Package{Ecosystem: "pypi", Name: dist, Kind: kind, Evidence: evidencePath, Location: root + "/" + strings.ReplaceAll(name, ".", "/"), Root: root}, true
}

func nodePackage(root, rest string) (Package, bool) {
	name, after := segment(rest)
	if name == "" {
		return Package{}, false
	}
	if name[0] == '@' {
		sub, _ := segment(after)
		if sub == "" {
			return Package{}, false
		}
		name += "/" + sub
	}
	kind := nodeKind(name)
	if kind == "" {
		return Package{}, false
	}
	return Package{Ecosystem: "npm", Name: name, Kind: kind, Evidence: evidencePath, Location: root + "/" + name, Root: root}, true
}

// Bounds of what Resolve reads from this host's files.
const (
	maxExecutable  = 1 << 30 // bytes of an executable read for its Go build info
	maxPackageJSON = 1 << 20
	maxDirEntries  = 100000 // entries of a site-packages folder listed for .dist-info
)

// GoModule is a module linked into a Go binary.
type GoModule struct {
	Path, Version string
	Replaced      string // the directory a replace directive put in its place
}

// GoBinary is the Go build info of an executable.
type GoBinary struct {
	Path        string
	GoVersion   string
	MainPath    string
	MainVersion string
	Deps        []GoModule // the AI modules on the list, after replace directives
}

// Resolve adds what this host's files show to the inventory: the Go build info of each
// workload's executables (debug/buildinfo) and the versions of Python and npm packages found
// without one (a .dist-info folder in their site-packages, their package.json). It reads files
// at the paths the traced processes had: run it on the node (or a copy of its files); a path
// that is not there, or not readable, is noted on the workload, never guessed.
func (inv *Inventory) Resolve() {
	for _, w := range inv.Workloads() {
		o := observer{inv: inv, w: w}
		for _, exe := range sortedKeys(w.Executables) {
			bin, err := readGoBinary(exe)
			switch {
			case err == nil:
				o.goBinary(bin)
			case errors.Is(err, errNotGo):
				// Not a Go program: its SDKs show in the files it opens, not in build info.
			default:
				o.flag(w.Notes, fmt.Sprintf("go build info of %s not read here: %v", exe, err))
			}
		}
		for _, p := range w.Packages {
			if p.Version != "" || p.Root == "" {
				continue
			}
			var v string
			var err error
			switch p.Ecosystem {
			case "pypi":
				v, err = distInfoVersion(p.Root, p.Name)
			case "npm":
				v, err = packageJSONVersion(filepath.Join(p.Root, filepath.FromSlash(p.Name), "package.json"))
			default:
				continue
			}
			if err != nil {
				o.flag(w.Notes, fmt.Sprintf("version of %s %s not read here: %v", p.Ecosystem, p.Name, err))
				continue
			}
			if v, ok := inv.bounded(v); ok {
				p.Version = v
				if p.Ecosystem == "npm" {
					p.Evidence, p.Location = evidencePackageJSON, p.Root+"/"+p.Name+"/package.json"
				} else {
					p.Evidence, p.Location = evidenceHostDistInfo, p.Root
				}
			}
		}
	}
}

var errNotGo = errors.New("not a go executable")

func readGoBinary(path string) (*GoBinary, error) {
	info, err := os.Stat(path)
	if err != nil {
		return nil, errors.Unwrap(err) // the path is in the note already
	}
	if !info.Mode().IsRegular() {
		return nil, errors.New("not a regular file")
	}
	if info.Size() > maxExecutable {
		return nil, fmt.Errorf("larger than %d bytes", maxExecutable)
	}
	bi, err := buildinfo.ReadFile(path)
	if err != nil {
		if strings.Contains(err.Error(), "not a Go executable") || strings.Contains(err.Error(), "unrecognized file format") {
			return nil, errNotGo
		}
		return nil, err
	}
	b := &GoBinary{Path: path, GoVersion: bi.GoVersion, MainPath: bi.Main.Path, MainVersion: bi.Main.Version}
	for _, d := range bi.Deps {
		m := GoModule{Path: d.Path, Version: d.Version}
		if r := d.Replace; r != nil {
			if strings.HasPrefix(r.Path, ".") || strings.HasPrefix(r.Path, "/") {
				m.Replaced = r.Path // a local copy: the code may differ from the version
			} else {
				m.Path, m.Version = r.Path, r.Version // another module took its place
			}
		}
		if goKind(m.Path) != "" {
			b.Deps = append(b.Deps, m)
		}
	}
	return b, nil
}

func (o *observer) goBinary(b *GoBinary) {
	w := o.w
	if gv, ok := o.inv.bounded(b.GoVersion); ok && w.Identity["process.runtime.version"] == "" {
		w.Identity["process.runtime.version"] = gv
	}
	if mp, ok := o.inv.bounded(b.MainPath); ok {
		w.Identity["agenttrail.go.main"] = mp
		if mv, ok := o.inv.bounded(b.MainVersion); ok {
			w.Identity["agenttrail.go.main.version"] = mv
		}
	}
	for _, d := range b.Deps {
		ev := evidenceGoBuildInfo
		if d.Replaced != "" {
			ev += ", replaced by the directory " + d.Replaced + ": the code may differ from the version"
		}
		o.addPackage(Package{Ecosystem: "golang", Name: d.Path, Version: d.Version, Kind: goKind(d.Path), Evidence: ev, Location: b.Path})
	}
}

// distInfoVersion finds <dist>-<version>.dist-info in a site-packages folder.
func distInfoVersion(root, dist string) (string, error) {
	f, err := os.Open(root)
	if err != nil {
		return "", errors.Unwrap(err)
	}
	defer f.Close()
	want := normalizeDist(dist)
	seen := 0
	for seen < maxDirEntries {
		names, err := f.Readdirnames(1024)
		for _, n := range names {
			// <name>-<version>.dist-info, the name's own dashes written as underscores.
			base, ok := strings.CutSuffix(n, ".dist-info")
			if !ok {
				continue
			}
			if d, v, ok := strings.Cut(base, "-"); ok && v != "" && normalizeDist(d) == want {
				return v, nil
			}
		}
		seen += len(names)
		if errors.Is(err, io.EOF) || len(names) == 0 {
			return "", fs.ErrNotExist
		}
		if err != nil {
			return "", err
		}
	}
	return "", fmt.Errorf("more than %d entries in %s", maxDirEntries, root)
}

func packageJSONVersion(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", errors.Unwrap(err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxPackageJSON+1))
	if err != nil {
		return "", err
	}
	if len(b) > maxPackageJSON {
		return "", fmt.Errorf("package.json larger than %d bytes", maxPackageJSON)
	}
	var pj struct {
		Version string `json:"version"`
	}
	if err := json.Unmarshal(b, &pj); err != nil {
		return "", fmt.Errorf("package.json: %w", err)
	}
	if pj.Version == "" {
		return "", errors.New("package.json has no version")
	}
	return pj.Version, nil
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
